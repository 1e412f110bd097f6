"""The lab's one reader of /proc/<pid>/stat (tests/lab/infra/procfs.py) and of a
service's replica count (tests/lab/infra/service_spec.py)."""
import os

import pytest

from tests.lab.infra import procfs
from tests.lab.infra.service_spec import desired_replicas


def test_fields_are_counted_after_the_command_name_even_when_it_holds_spaces_and_parentheses():
    line = "4242 (gunicorn: ) worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0"
    fields = procfs.stat_fields(line)
    assert fields[0] == "S"
    assert (fields[11], fields[12]) == ("250", "50")


def test_this_process_is_running_and_has_used_some_cpu():
    assert procfs.state(os.getpid()) in {"R", "S"}
    assert procfs.cpu_seconds(os.getpid()) > 0


def test_a_process_that_does_not_exist_raises():
    with pytest.raises(FileNotFoundError):
        procfs.state(2**22 + 1)  # above the kernel's largest pid


def test_the_replica_count_of_a_replicated_service_and_none_for_a_global_one():
    assert desired_replicas({"Spec": {"Mode": {"Replicated": {"Replicas": 2}}}}) == 2
    assert desired_replicas({"Spec": {"Mode": {"Global": {}}}}) is None
