"""RFC 3339 times as the receiver reads them (webhook startsAt, service labels) and writes
them (events, service labels), and as the exporter reads Docker's: swarmguard_config/rfc3339.py."""
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver import labels as L
from swarmguard_config.rfc3339 import NotATime, format_time, parse_time

ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664"
                                           "\u0665\u0666\u0667\u0668\u0669")
FULLWIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14"
                                        "\uff15\uff16\uff17\uff18\uff19")


@pytest.mark.parametrize("text", [
    "2026".translate(ARABIC_INDIC) + "-11-27T10:00:01Z",
    "2026-11-27T10:00:01." + "123".translate(ARABIC_INDIC) + "Z",
    "2026-11-27T10:00:01+" + "01".translate(ARABIC_INDIC) + ":00",
    "2026-11-27T10:00:01Z".translate(FULLWIDTH),
    "2026-11-27T10:00:01Z\n",
])
def test_a_time_written_with_digits_other_than_ascii_or_anything_after_it_is_not_a_time(text):
    with pytest.raises(NotATime):
        parse_time(text, "startsAt")


def test_the_same_time_in_ascii_digits_is_one():
    assert parse_time("2026-11-27T10:00:01.123+01:00", "startsAt") == datetime(
        2026, 11, 27, 9, 0, 1, 123000, tzinfo=timezone.utc)


def test_a_time_label_in_unix_seconds_takes_ascii_digits_only():
    assert L.read_time({L.LAST_ACTION_AT: "1700000000"}, L.LAST_ACTION_AT) == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    with pytest.raises(L.LabelError):
        L.read_time({L.LAST_ACTION_AT: "1700000000".translate(ARABIC_INDIC)}, L.LAST_ACTION_AT)


# -- writing -----------------------------------------------------------------------------

@pytest.mark.parametrize("moment, text", [
    (datetime(1, 1, 1, tzinfo=timezone.utc), "0001-01-01T00:00:00.000000Z"),
    (datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=timezone.utc), "0999-12-31T23:59:59.000005Z"),
    (datetime(2026, 11, 27, 10, 0, 1, 123456, tzinfo=timezone.utc),
     "2026-11-27T10:00:01.123456Z"),
])
def test_times_are_written_with_four_digit_years_and_microseconds_in_utc(moment, text):
    assert format_time(moment) == text


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(timezone.utc)))
def test_every_time_written_reads_back_as_itself(moment):
    assert parse_time(format_time(moment), "at") == moment
