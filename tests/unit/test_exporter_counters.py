"""A number read from a cgroup or /proc file is used only if a kernel counter can hold it."""
import pytest

from exporter.counters import U64_MAX, RefusedValue, kernel_counter


@pytest.mark.parametrize("raw, value", [(b"0", 0), (b"42\n", 42), (str(U64_MAX).encode(), 2**64 - 1)])
def test_every_unsigned_64_bit_value_is_taken(raw, value):
    assert kernel_counter(raw, "usage_usec") == value


@pytest.mark.parametrize("raw", [b"-1", str(U64_MAX + 1).encode()])
def test_a_value_outside_an_unsigned_64_bit_counter_is_refused_naming_it(raw):
    with pytest.raises(RefusedValue, match=f"^usage_usec {raw.decode()} is not an unsigned 64-bit counter$"):
        kernel_counter(raw, "usage_usec")


def test_a_refused_value_too_long_to_log_is_shown_by_its_start():
    with pytest.raises(RefusedValue, match=f"^memory.current {'9' * 24}\\.\\.\\. is not an unsigned"):
        kernel_counter(b"9" * 400 + b"\n", "memory.current")


@pytest.mark.parametrize(("digits", "shown"), [(24, "9" * 24), (25, "9" * 24 + "...")])
def test_a_refused_value_of_24_digits_is_shown_whole_and_a_longer_one_marked_as_cut(digits, shown):
    with pytest.raises(RefusedValue, match=f"^memory.current {shown} is not an unsigned"):
        kernel_counter(b"9" * digits, "memory.current")


def test_text_that_is_no_number_is_an_error_but_not_a_refused_value():
    with pytest.raises(ValueError) as raised:
        kernel_counter(b"max\n", "memory.current")
    assert not isinstance(raised.value, RefusedValue)
