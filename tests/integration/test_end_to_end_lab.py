"""End to end in the lab, every part real: the stress app's task gets hot, cAdvisor and
the exporter see it, Prometheus fires, Alertmanager calls the receiver under gunicorn,
and the receiver moves the task, while a probe through the entry point counts failures."""
from __future__ import annotations

import time

import pytest
import requests

from receiver.config import Settings

from tests import webhooks
from tests.lab.instruments import alertmanager, prometheus
from tests.lab.scenarios import run
from tests.lab.infra import services
from tests.lab.instruments.probe import Probe
from tests.lab.reports.timeline import parse_time
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.services import stop_stress_everywhere
from tests.lab.infra.system import wait_for

pytestmark = pytest.mark.lab


@pytest.fixture
def victim(lab):
    services.deploy_stress(lab, "victim", labels={"swarmguard.replicas.max": "2"})
    yield "victim"
    try:
        stop_stress_everywhere(lab)
    finally:
        services.remove_service(lab, "victim")


@pytest.mark.compat
def test_scenario_1_a_cpu_starved_task_is_migrated_with_zero_failed_requests(lab, victim):
    with ReceiverProcess(lab) as receiver, Probe(lab.entrypoint_url + "/health", rate=20) as probe:
        probe.wait_answered()
        moved = run.migrate(lab, victim, receiver, stress_seconds=60, timeout=60)
        if moved.moved:
            probe.wait_answered(by=moved.to_node, last=20)  # the entry point has settled on it
        result = probe.stop()
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
    old, new = moved.from_node, moved.to_node
    print(f"Scenario 1: stress on {old}, moved to {new} {moved.mttr_s:.1f} s after the stress started; "
          f"{result.summary()}")
    assert moved.stressed_node == old  # the stress reached the task under test
    assert new is not None and new != old
    assert result.failed == 0, result.summary()
    assert result.nodes == [old, new]
    # The new task is not hot: the stress ran in the old task's processes, gone with it.
    answer = requests.get(f"{lab.entrypoint_url}/stress/status", timeout=5)
    assert answer.headers["X-Swarm-Node"] == new


def test_scenario_2_real_demand_scales_up_to_the_maximum_then_back_down_after_the_window(lab, victim):
    """Shortened windows (scale-down window 20 s, Alertmanager repeat 10s, cooldowns 10 s)
    so the cycle fits in a test; the logic is the shipped one."""
    with run.shortened_receiver(lab) as receiver, \
            Probe(lab.entrypoint_url + "/health", rate=20, max_seconds=240) as probe:
        def at_the_maximum():
            # The alert keeps firing, nothing more happens.
            wait_for("a skip at the maximum",
                     lambda: receiver.metric("swarmguard_alerts_skipped_total", reason="at_limit") >= 1, timeout=40)
            assert services.replicas(lab, victim) == 2
            assert not prometheus.firing(lab, "SwarmGuardScaleDown", victim)  # held back while demand is real
        cycle = run.scale_cycle(lab, victim, receiver, stress_seconds=90, up_timeout=60, down_timeout=90,
                                at_maximum=at_the_maximum)
        # The N-1 rule: with 2 replicas idle, total CPU is far below 75 % x 1; and only once
        # the demand had gone: the alert it scaled down on began after the load ended (its
        # window's length is promtool's to check, prometheus/tests/).
        [down] = acts(receiver, "scale_down")
        assert down["alert"] == "SwarmGuardScaleDown", down
        assert parse_time(down["starts_at"]) > cycle.load_ended_at, (down["starts_at"], cycle.load_ended_at)
        # Repeats of the alert at the minimum change nothing: its resolution is the last
        # that can come about it.
        wait_for("SwarmGuardScaleDown's resolution to be delivered",
                 lambda: resolution_delivered(receiver, "SwarmGuardScaleDown", victim), timeout=120)
        assert services.replicas(lab, victim) == 1
        receiver.wait_idle()
        result = probe.stop()
        assert receiver.metric("swarmguard_actions_total", kind="scale_up", result="success") == 1
        assert receiver.metric("swarmguard_actions_total", kind="scale_down", result="success") == 1
    steps = [("up to 2", cycle.scaled_up_s), ("down to 1", cycle.down_after_load_end_s)]
    print(f"Scenario 2: {steps}; {result.summary()}")
    assert result.failed == 0, result.summary()


def acts(receiver: ReceiverProcess, kind: str) -> list[dict]:
    """The receiver's decisions to act with `kind`, in order."""
    return [e for e in receiver.events() if e["type"] == "decision" and e["result"] == "act" and e["kind"] == kind]


def resolution_delivered(receiver: ReceiverProcess, alertname: str, service: str) -> bool:
    return any(e["type"] == "notification" and e["alert"] == alertname and e["service"] == service
               for e in receiver.events())


def stress_until_migrate_fires(lab, victim: str) -> None:
    """CPU stress on the victim's task (after the rules' start-up grace, which ignores a
    task's start-up heat) until SwarmGuardMigrate fires for it."""
    services.wait_settled(lab)
    # On a busy machine the task's reading can dip under the threshold and restart the
    # rule's `for:` several times (21.5 s to fire beside a mutation run): the stress
    # outlasts a generous wait for the alert.
    requests.get(f"{lab.entrypoint_url}/stress/cpu", params={"target": 100, "duration": 150}, timeout=5)
    wait_for("the alert to fire", lambda: prometheus.firing(lab, "SwarmGuardMigrate", victim), timeout=120)


def test_an_alert_that_fires_while_the_receiver_is_down_is_retried_and_acted_on_exactly_once(lab, victim):
    [task] = services.running_tasks(lab, victim)
    old = services.node_name(lab, task["NodeID"])
    failures = alertmanager.webhook_failures(lab)
    stress_until_migrate_fires(lab, victim)
    # Alertmanager holds the alert and fails to deliver: nothing listens on the receiver's port.
    wait_for("Alertmanager to hold the alert", lambda: alertmanager.alerts(lab, "SwarmGuardMigrate", victim),
             timeout=30)
    wait_for("a webhook delivery to fail", lambda: alertmanager.webhook_failures(lab) > failures, timeout=90)
    with ReceiverProcess(lab) as receiver:
        new = services.wait_moved_off(lab, victim, old, timeout=30)
        receiver.wait_idle()
        # Further retries and repeats must not act again: the alert's resolution (its task
        # is gone) is the last that can come about it.
        wait_for("the alert's resolution to be delivered",
                 lambda: resolution_delivered(receiver, "SwarmGuardMigrate", victim), timeout=120)
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
        assert receiver.metric("swarmguard_actions_total") == 1
    assert new != old


def test_an_alert_for_a_task_that_moved_before_delivery_changes_nothing(lab, victim):
    [task] = services.running_tasks(lab, victim)
    old = services.node_name(lab, task["NodeID"])
    stress_until_migrate_fires(lab, victim)

    def move_by_hand(spec):
        spec["TaskTemplate"]["Placement"]["Constraints"].append(f"node.hostname!={old}")
    services.update_service(lab, victim, move_by_hand)
    services.wait_moved_off(lab, victim, old)
    wait_for("Swarm's update to finish", lambda: services.inspect(lab, victim)
             .get("UpdateStatus", {}).get("State") != "updating")
    before = services.inspect(lab, victim)["Version"]
    with ReceiverProcess(lab) as receiver:  # now Alertmanager delivers the old alert
        # Alertmanager redelivers on its retry back-off or at the group's repeat interval
        # (1 m): 0.25 was usually back within seconds, 0.33 can take the whole minute.
        # Skipped stale (the task is gone) or unconfirmed (Prometheus no longer fires it:
        # its task's series ended), whichever the receiver learns first.
        wait_for("the old alert to arrive and be skipped",
                 lambda: receiver.metric("swarmguard_stale_alerts_total", alertname="SwarmGuardMigrate")
                 + receiver.metric("swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate",
                                   reason="unconfirmed") >= 1,
                 timeout=150)
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total") == 0
    assert services.inspect(lab, victim)["Version"] == before


def test_an_alert_posted_straight_to_alertmanager_with_real_ids_moves_nothing(lab, victim):
    # Anyone who reaches Alertmanager's API can post an alert, and the exporter's and the
    # receiver's /metrics publish real task and node IDs. Alertmanager forwards it with
    # the token; the receiver asks Prometheus, which does not fire it.
    [task] = services.running_tasks(lab, victim)
    before = services.inspect(lab, victim)["Version"]
    alert = webhooks.posted_alert(
        {"alertname": "SwarmGuardMigrate", "service": victim, "task_id": task["ID"],
         "node_id": task["NodeID"], "scenario": "migrate", "severity": "warning"},
        annotations={"summary": "forged", "description": "posted by the lab tests",
                     "cpu_percent": "99", "network_percent": "1"})
    with ReceiverProcess(lab) as receiver:
        try:
            assert requests.post(f"{lab.alertmanager_url}/api/v2/alerts", json=[alert],
                                 timeout=10).status_code == 200
            # Alertmanager's group_wait, then the webhook; its retries and repeats too.
            wait_for("the forged alert to be skipped unconfirmed", lambda: receiver.metric(
                "swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate",
                reason="unconfirmed") >= 1, timeout=90)
            receiver.wait_idle()
        finally:
            requests.post(f"{lab.alertmanager_url}/api/v2/alerts", json=[webhooks.resolved(alert)],
                          timeout=10)
        # Its resolution is delivered here, not to the next test's receiver (which may
        # count on receiving nothing).
        wait_for("the forged alert's resolution to be delivered", lambda: receiver.metric(
            "swarmguard_alerts_received_total", alertname="SwarmGuardMigrate",
            status="resolved") >= 1, timeout=60)
        assert receiver.metric("swarmguard_actions_total") == 0
        decisions = [e for e in receiver.events() if e["type"] == "decision"]
        assert decisions and all((e["result"], e["reason"]) == ("skip", "unconfirmed")
                                 for e in decisions), decisions
    assert services.inspect(lab, victim)["Version"] == before
    assert [t["ID"] for t in services.running_tasks(lab, victim)] == [task["ID"]]


def test_a_silenced_service_is_not_acted_on_while_the_silence_holds(lab, victim):
    [task] = services.running_tasks(lab, victim)
    with alertmanager.silence_service(lab, victim) as silence, ReceiverProcess(lab) as receiver:
        stress_until_migrate_fires(lab, victim)
        wait_for("Alertmanager to hold the alert silenced", lambda: alertmanager.silenced_by(
            lab, "SwarmGuardMigrate", victim, silence), timeout=30)
        labels = {"alertname": "SwarmGuardMigrate", "service": victim, "node_id": task["NodeID"],
                  "scenario": "migrate", "severity": "warning"}
        with alertmanager.marker(lab, labels) as marker_task:
            # The first delivery of an alert is always an event (a decision, or a
            # notification when resolved): the marker's, of the same group, arrived.
            wait_for("the marker alert to reach the receiver", lambda: any(
                e["task"] == marker_task for e in receiver.events()), timeout=60)
            receiver.wait_idle()
        # Nothing about this task arrived with it. Judged by the task, not by the
        # receiver's counters nor the service's name: this receiver listens where the
        # lab's Alertmanagers deliver, and they may still be delivering what earlier specs
        # left, about earlier tasks of a service also called "victim".
        assert [e for e in receiver.events() if e["task"] == task["ID"]] == []
        assert [t["ID"] for t in services.running_tasks(lab, victim)] == [task["ID"]]


@pytest.fixture
def self_heating(lab):
    """A service whose every task burns its whole CPU allowance from the moment it starts,
    for ten minutes, on whatever node it runs: its heat is its own work."""
    services.deploy_stress(lab, "selfheat", env=("STRESS_STARTUP_CPU_SECONDS=600",))
    yield "selfheat"
    services.remove_service(lab, "selfheat")  # the burn ends with its tasks


def test_a_task_hot_wherever_it_runs_is_moved_at_most_once_in_five_minutes(lab, self_heating):
    """The first move is made, its replacement is hot again on its new node, the service
    is held (`futile`, its label, the alert), and no second move follows for five
    minutes. The receiver runs with the shipped futile window."""
    service = self_heating
    with ReceiverProcess(lab, futile_window=Settings(token="-").futile_window) as receiver:
        def migrations() -> float:
            return receiver.metric("swarmguard_actions_total", kind="migrate", result="success")

        # Past the 20 s start-up grace the task is hot: moved once, as any starved task.
        wait_for("the first move", lambda: migrations() >= 1, timeout=180)
        moved = time.monotonic()
        # Its replacement burns as much on its new node, past its own grace.
        wait_for("the move to be found futile", lambda: receiver.metric(
            "swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate", reason="futile") >= 1,
            timeout=180)
        labels = services.inspect(lab, service)["Spec"]["Labels"]
        assert "swarmguard.futile-until" in labels, labels
        wait_for("SwarmGuardMoveFutile to fire",
                 lambda: prometheus.firing(lab, "SwarmGuardMoveFutile", service), timeout=90)
        wait_for("the gauge", lambda: receiver.metric("swarmguard_service_futile",
                                                      service=service) == 1, timeout=30)
        # Watch the rest of the five minutes: Alertmanager resends the still-firing alert
        # every 15 s and each is skipped; a second move fails the test as soon as it is made.
        while time.monotonic() < moved + 300:
            assert migrations() == 1, "moved again within five minutes"
            time.sleep(5)
        assert receiver.metric("swarmguard_alerts_skipped_total", alertname="SwarmGuardMigrate",
                               reason="futile") >= 2
        receiver.wait_idle()
        assert migrations() == 1


@pytest.fixture
def sized(lab):
    """The stress app allowed on all three nodes (the manager too), at most 3 replicas:
    with one host-mode port a node, three replicas need three nodes."""
    services.deploy_stress(lab, "sized", labels={"swarmguard.replicas.max": "3"}, constraints=())
    yield "sized"
    services.remove_service(lab, "sized")  # its stress ends with its tasks


def test_a_demand_that_needs_three_replicas_gets_them_in_one_step(lab, sized):
    """CPU at its limit and 160 % of a node's network capacity on the only task: the
    rules size the demand at three replicas (network 160/65, rounded up), and the receiver
    (shipped settings: one scale-up per 60 s cooldown) goes from 1 to 3 in one action."""
    [task] = services.running_tasks(lab, sized)
    services.wait_settled(lab, sized)
    with ReceiverProcess(lab) as receiver:
        services.stress_task(lab, task, "combined", cpu=100, network=round(lab.node_capacity_mbps * 1.6, 1),
                             duration=90)
        wait_for("3 replicas asked for", lambda: services.replicas(lab, sized) == 3, timeout=90)
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total", kind="scale_up", result="success") == 1
        [step] = [e for e in receiver.events() if e["type"] == "decision" and e["result"] == "act"]
        assert "from 1 to 3 replicas" in step["message"], step["message"]
