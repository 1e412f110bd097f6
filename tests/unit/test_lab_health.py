"""The demo's first line: what the dashboard's row "Can SwarmGuard see and act?" says."""
from __future__ import annotations

from tests.lab.instruments import health
from tests.lab.config import DEFAULT
from tests.lab.instruments.health import Health, describe

ALL_WELL = Health(nodes_seen=3, nodes_ready=3, tasks_seen=2, tasks_running=2,
                  webhook_failures=0, receiver_up=True)


def test_all_well_in_one_sentence():
    assert describe(ALL_WELL) == (
        "SwarmGuard sees 3 of 3 nodes, 2 of 2 opted-in tasks; Alertmanager delivers to the receiver")
    assert health.healthy(ALL_WELL)


def test_a_blind_node_and_failing_deliveries_are_said_with_the_firing_alerts():
    h = Health(nodes_seen=2, nodes_ready=3, tasks_seen=1, tasks_running=2, webhook_failures=1,
               receiver_up=True, firing=(
                   {"alertname": "SwarmGuardBlind", "reason": "tasks_unseen", "node": "worker-2", "service": "demo"},
                   {"alertname": "SwarmGuardBlind", "reason": "target_down", "node": "worker-2"}))
    assert describe(h) == (
        "SwarmGuard sees 2 of 3 nodes, 1 of 2 opted-in tasks; Alertmanager failed 1 webhook delivery "
        "to the receiver in the last 15 minutes\n"
        "  FIRING SwarmGuardBlind (target_down): node worker-2\n"
        "  FIRING SwarmGuardBlind (tasks_unseen): node worker-2, service demo")
    assert not health.healthy(h)


def test_a_receiver_that_is_down_is_said_first():
    h = Health(nodes_seen=3, nodes_ready=0, tasks_seen=0, tasks_running=0, webhook_failures=4,
               receiver_up=False)
    assert describe(h) == ("SwarmGuard sees 3 of 0 nodes, 0 of 0 opted-in tasks; "
                           "the receiver is down: nothing would be acted on")


def test_read_asks_the_dashboards_own_queries():
    asked = []

    def query(cfg, expr):
        asked.append(expr)
        return [] if "ALERTS" in expr else [{"metric": {}, "value": [0, "3"]}]

    h = health.read(DEFAULT, query)
    assert (h.nodes_seen, h.nodes_ready, h.receiver_up, h.firing) == (3, 3, False, ())
    assert asked[:2] == health.panel_queries("Nodes seen")
    assert health.panel_queries("Opted-in tasks seen")[0] in asked


def _series(reason: str, *times: float) -> dict:
    return {"metric": {"__name__": "ALERTS", "alertname": "SwarmGuardBlind", "alertstate": "firing",
                       "reason": reason, "node": "worker-1"},
            "values": [[t, "1"] for t in times]}


def test_health_alerts_outside_the_declared_faults_are_false_alarms_and_by_design_reasons_are_not():
    series = [_series("target_down", 100, 105, 200), _series("receiver_down", 300),
              _series("docker_unreachable", 150)]
    assert health.unexplained(series, [(90, 160)]) == [
        "alertname=SwarmGuardBlind, node=worker-1, reason=target_down firing at 00:03:20 UTC (1 samples)"]
    assert health.unexplained(series, [(90, 210)]) == []
