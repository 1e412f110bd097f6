import pytest

from receiver import placement
from receiver.cluster import node_from_dict
from tests.fake_docker_api_client import node_dict

WORKER = node_from_dict(node_dict("w1", "worker-1", labels={"zone": "a", "Disk": "ssd"}))
MANAGER = node_from_dict(node_dict("m1", "manager-1", role="manager"))
EXCLUSION = "swarmguard.placement-exclusion"


@pytest.mark.parametrize("constraint, matches", [
    ("node.role==worker", True),
    ("node.role == manager", False),
    ("node.role!=manager", True),
    ("node.hostname==WORKER-1", True),  # values compare case-insensitively, like swarmkit
    ("node.hostname!=worker-1", False),
    ("Node.ID==w1", True),  # so do keys
    ("node.id!=w1", False),
    ("node.labels.zone==a", True),
    ("node.labels.zone!=a", False),
    ("node.labels.Disk==ssd", True),
    ("node.labels.disk==ssd", False),  # label names are case-sensitive
    ("node.labels.gpu!=true", True),  # a missing label compares as ""
    ("node.labels.gpu==true", False),
    ("node.platform.os==linux", True),
    ("node.platform.arch==x86_64", True),
    ("engine.labels.tier==db", False),
    ("node.labels.gpu==", True),  # "is unset" can be written as "equals nothing"
    ("engine.labels.tier==", True),
])
def test_constraints_match_nodes_like_swarmkit(constraint, matches):
    assert placement.satisfies(WORKER, [constraint]) is matches


def test_every_constraint_must_hold():
    assert placement.satisfies(WORKER, ["node.role==worker", "node.labels.zone==a"])
    assert not placement.satisfies(WORKER, ["node.role==worker", "node.labels.zone==b"])
    assert placement.satisfies(WORKER, [])


@pytest.mark.parametrize("constraint", ["node.cpu>=2", "node.weird==x", "garbage"])
def test_constraints_we_cannot_evaluate_are_reported_not_guessed(constraint):
    with pytest.raises(placement.UnknownConstraint):
        placement.satisfies(WORKER, [constraint])


def test_the_exclusion_names_the_hostname_when_it_is_unique():
    assert placement.exclusion_for(WORKER, [WORKER, MANAGER]) == "node.hostname!=worker-1"


def test_the_exclusion_falls_back_to_the_node_id_when_hostnames_collide():
    twin = node_from_dict(node_dict("w9", "worker-1"))
    assert placement.exclusion_for(WORKER, [WORKER, twin, MANAGER]) == "node.id!=w1"


def test_a_migration_keeps_user_constraints_and_adds_one_exclusion():
    constraints, recorded = placement.migrate_constraints(
        ["node.role==worker", "node.labels.zone!=b"], {}, ["node.hostname!=worker-1"])
    assert constraints == ["node.role==worker", "node.labels.zone!=b",
                           "node.hostname!=worker-1"]
    assert recorded == "node.hostname!=worker-1"


def test_a_migration_replaces_swarmguards_earlier_exclusion():
    constraints, recorded = placement.migrate_constraints(
        ["node.role==worker", "node.hostname != worker-1"],
        {EXCLUSION: "node.hostname!=worker-1"}, ["node.hostname!=worker-2"])
    assert constraints == ["node.role==worker", "node.hostname!=worker-2"]
    assert recorded == "node.hostname!=worker-2"


def test_a_migration_off_one_node_also_excludes_the_hot_ones_as_one_recorded_set():
    constraints, recorded = placement.migrate_constraints(
        ["node.role==worker"], {}, ["node.hostname!=worker-1", "node.hostname!=worker-3"])
    assert constraints == ["node.role==worker", "node.hostname!=worker-1",
                           "node.hostname!=worker-3"]
    assert placement.recorded_exclusions({EXCLUSION: recorded}) == [
        "node.hostname!=worker-1", "node.hostname!=worker-3"]


def test_the_next_migration_replaces_the_whole_earlier_set_so_exclusions_never_pile_up():
    earlier = {EXCLUSION: "node.hostname!=worker-1,node.hostname!=worker-3"}
    constraints, recorded = placement.migrate_constraints(
        ["node.role==worker", "node.hostname!=worker-1", "node.hostname!=worker-3"], earlier,
        ["node.hostname!=worker-2"])
    assert constraints == ["node.role==worker", "node.hostname!=worker-2"]
    assert recorded == "node.hostname!=worker-2"


def test_a_user_constraint_that_looks_like_ours_is_left_alone():
    # No label says SwarmGuard added it: it is the user's.
    constraints, _ = placement.migrate_constraints(
        ["node.hostname!=worker-3"], {}, ["node.hostname!=worker-1"])
    assert constraints == ["node.hostname!=worker-3", "node.hostname!=worker-1"]


def test_an_exclusion_the_user_already_has_is_not_claimed():
    constraints, recorded = placement.migrate_constraints(
        ["node.hostname!=worker-1"], {}, ["node.hostname!=worker-1", "node.hostname!=worker-3"])
    assert constraints == ["node.hostname!=worker-1", "node.hostname!=worker-3"]
    assert recorded == "node.hostname!=worker-3"  # so the next migration will not remove the user's constraint


def test_swarmguards_exclusion_is_recognised_however_it_is_spaced():
    labels = {EXCLUSION: "node.hostname != worker-1"}
    assert placement.user_constraints(["node.role==worker", "node.hostname!=worker-1"],
                                      labels) == ["node.role==worker"]


def test_a_constraint_that_cannot_be_parsed_is_named():
    with pytest.raises(placement.UnknownConstraint, match="cannot parse constraint 'node.role'"):
        placement.parse("node.role")


def test_engine_labels_are_matched_like_node_labels():
    data = node_dict("w2", "worker-2")
    data["Description"]["Engine"]["Labels"] = {"tier": "db"}
    node = node_from_dict(data)
    assert placement.satisfies(node, ["engine.labels.tier==db"])
    assert not placement.satisfies(node, ["engine.labels.tier!=db"])
