"""A task's network counters: every interface of its namespace except loopback."""
import pytest

from exporter.counters import RefusedValue
from exporter.netdev import parse_net_dev
from tests.unit.exporter_host import net_dev


def test_receive_and_transmit_are_summed_over_every_interface_but_loopback():
    text = net_dev({"lo": (1000, 1000), "eth0": (10, 20), "eth1": (300, 400)}).encode()

    assert parse_net_dev(text) == (310, 420)


def test_a_namespace_with_only_loopback_moved_nothing():
    assert parse_net_dev(net_dev({"lo": (7, 7)}).encode()) == (0, 0)


def test_an_interface_line_with_fewer_than_nine_counters_is_an_error_saying_so():
    text = (net_dev({"eth0": (10, 20)}) + "  eth1: 300 1 0 0 0\n").encode()

    with pytest.raises(ValueError, match="^net/dev line of eth1 has 5 counters, fewer than the 9 read$"):
        parse_net_dev(text)


def test_a_negative_byte_counter_is_refused():
    with pytest.raises(RefusedValue, match="^net/dev transmitted bytes -20 is not"):
        parse_net_dev(net_dev({"eth0": (10, -20)}).encode())


def test_an_interface_line_one_counter_short_of_the_transmitted_bytes_is_an_error_saying_so():
    text = (net_dev({"eth0": (10, 20)}) + "  eth1: 300 1 0 0 0 0 0 0\n").encode()

    with pytest.raises(ValueError, match="^net/dev line of eth1 has 8 counters, fewer than the 9 read$"):
        parse_net_dev(text)


def test_an_interface_name_that_is_not_utf_8_is_shown_with_a_replacement_character():
    text = net_dev({}).encode() + b"  \xffeth1: 300 1 0\n"

    with pytest.raises(ValueError, match="^net/dev line of \ufffdeth1 has 3 counters"):
        parse_net_dev(text)


def test_a_received_byte_counter_past_64_bits_is_refused_naming_it():
    with pytest.raises(RefusedValue, match=f"^net/dev received bytes {2**64} is not"):
        parse_net_dev(net_dev({"eth0": (2**64, 20)}).encode())
