"""The shutdown gate (receiver/gate.py): open until closed, once; what passed before it
closed is known at the instant it closes, and nothing passes after."""
import pytest

from receiver.gate import ShuttingDown, WriteGate


def test_an_open_gate_lets_work_through_and_remembers_who_passed():
    gate = WriteGate()
    assert gate.closed is False
    gate.through("web")
    gate.through()  # an anonymous write: let through, not remembered
    gate.through("db")
    gate.release("db")
    assert gate.close() == frozenset({"web"})
    assert gate.closed is True


def test_once_closed_nothing_passes_and_the_refusal_says_why():
    gate = WriteGate()
    gate.close()
    with pytest.raises(ShuttingDown, match="^shutting down: no more writes to Docker$"):
        gate.through("web")
    assert gate.close() == frozenset()  # "web" did not pass
