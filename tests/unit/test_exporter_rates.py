import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.rates import (
    NetworkSample,
    bits_per_second,
    megabits_to_bits,
    percent_of_capacity,
)


def test_rate_is_received_plus_transmitted_bits_over_the_interval():
    older = NetworkSample(timestamp=100.0, rx_bytes=1_000, tx_bytes=500)
    newer = NetworkSample(timestamp=102.0, rx_bytes=1_000 + 750_000, tx_bytes=500 + 250_000)

    assert bits_per_second(older, newer) == pytest.approx(4_000_000)


def test_rate_is_unknown_when_a_counter_goes_backwards():
    older = NetworkSample(timestamp=100.0, rx_bytes=5_000, tx_bytes=5_000)
    newer = NetworkSample(timestamp=101.0, rx_bytes=10, tx_bytes=9_000)

    assert bits_per_second(older, newer) is None


@pytest.mark.parametrize("newer_timestamp", [100.0, 99.0])
def test_rate_is_unknown_without_a_positive_interval(newer_timestamp):
    older = NetworkSample(timestamp=100.0, rx_bytes=0, tx_bytes=0)
    newer = NetworkSample(timestamp=newer_timestamp, rx_bytes=10, tx_bytes=10)

    assert bits_per_second(older, newer) is None


def test_an_idle_container_has_a_rate_of_zero():
    sample = NetworkSample(timestamp=100.0, rx_bytes=42, tx_bytes=42)
    later = NetworkSample(timestamp=101.5, rx_bytes=42, tx_bytes=42)

    assert bits_per_second(sample, later) == 0


def test_percent_is_the_rate_over_the_capacity():
    assert percent_of_capacity(35_000_000, megabits_to_bits(100)) == pytest.approx(35.0)


def test_percent_is_not_capped_at_one_hundred():
    # Receive plus transmit on a full-duplex link can exceed the one-way capacity.
    assert percent_of_capacity(150_000_000, megabits_to_bits(100)) == pytest.approx(150.0)


def test_percent_of_a_zero_capacity_is_refused_saying_what_it_was():
    with pytest.raises(ValueError, match="^capacity must be positive, not 0$"):
        percent_of_capacity(1.0, 0)


@given(
    seconds=st.floats(min_value=0.001, max_value=3600),
    rx=st.integers(min_value=0, max_value=10**13),
    tx=st.integers(min_value=0, max_value=10**13),
)
def test_rate_times_interval_gives_back_the_bits_moved(seconds, rx, tx):
    older = NetworkSample(1_700_000_000.0, 123, 456)
    newer = NetworkSample(1_700_000_000.0 + seconds, 123 + rx, 456 + tx)

    rate = bits_per_second(older, newer)

    elapsed = newer.timestamp - older.timestamp  # what float time arithmetic really gives
    assert rate is not None and rate >= 0
    assert math.isclose(rate * elapsed, (rx + tx) * 8, rel_tol=1e-9, abs_tol=1e-6)
