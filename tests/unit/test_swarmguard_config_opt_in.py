"""The opt-in label (swarmguard_config/opt_in.py): one definition, read the same way by the
receiver (which acts only on opted-in services) and the exporter (which lists them)."""
from pathlib import Path

import pytest

from receiver import labels
from swarmguard_config.opt_in import ENABLE, opted_in

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()


@pytest.mark.parametrize("value", ["true", "TRUE", "True", " true ", "true\n"])
def test_a_service_is_opted_in_by_the_label_saying_true_in_any_case(value):
    assert opted_in({ENABLE: value}) is True


@pytest.mark.parametrize("value", ["", "false", "yes", "1", "on", "truee", "t rue"])
def test_any_other_value_of_the_label_does_not_opt_a_service_in(value):
    assert opted_in({ENABLE: value}) is False


def test_a_service_without_the_label_is_not_opted_in_whatever_else_it_carries():
    assert opted_in({"com.example.enable": "true", "swarmguard.replicas.max": "4"}) is False


def test_the_label_is_the_one_the_contract_tells_users_to_set():
    assert f"`{ENABLE}=true` (opt-in" in CONTRACT


def test_the_receiver_reads_opt_in_with_the_shared_definition():
    assert (labels.ENABLE, labels.opted_in) == (ENABLE, opted_in)
