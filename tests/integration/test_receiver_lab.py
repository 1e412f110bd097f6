"""The receiver against the real swarm: it moves and scales services as Alertmanager asks,
with zero failed requests, and only when the alert is still true, once, and allowed."""
from __future__ import annotations

import copy
import json
import os
import signal
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests import webhooks
from tests.lab.infra import services
from tests.lab.infra.services import inspect, replicas
from tests.lab.infra.nodes import client
from tests.lab.instruments.probe import Probe
from tests.lab.infra.receiver_proc import ReceiverProcess, webhook
from tests.lab.infra.system import wait_for

pytestmark = pytest.mark.lab

SWARMGUARD_EXCLUSION = "node.hostname!="


@pytest.fixture
def web(lab):
    services.deploy_web(lab, "web", replicas=1)
    yield "web"
    services.remove_service(lab, "web")


def own_receiver(lab, port_offset: int = 0, **settings) -> ReceiverProcess:
    """A receiver that gets only the webhooks its test sends, not Alertmanager's."""
    return ReceiverProcess(lab, port=lab.private_receiver_port + port_offset, confirm_with_prometheus=0, **settings)


def placement(lab, name: str) -> list[str]:
    return inspect(lab, name)["Spec"]["TaskTemplate"].get("Placement", {}).get("Constraints", [])


def the_task(lab, name: str) -> tuple[str, str, str]:
    """(task id, node id, hostname) of the service's only running task."""
    [task] = services.running_tasks(lab, name)
    return task["ID"], task["NodeID"], services.node_name(lab, task["NodeID"])


def migrate_alert(lab, name: str, starts_at: datetime | None = None) -> dict:
    task_id, node_id, _ = the_task(lab, name)
    return webhook("SwarmGuardMigrate", {"service": name, "task_id": task_id, "node_id": node_id},
                   starts_at=starts_at, annotations={"cpu_percent": "95", "network_percent": "2"})


def resolved(body: dict) -> dict:
    """The resolution Alertmanager sends for the alerts of a webhook body."""
    body = copy.deepcopy(body)
    body["status"] = "resolved"
    for alert in body["alerts"]:
        alert["status"], alert["endsAt"] = "resolved", webhooks.stamp()
    return body


def settled(lab, name: str) -> None:
    """Wait until Swarm has finished its own update of the service (the receiver rightly
    refuses to act while one is under way)."""
    wait_for(f"Swarm's update of {name} to finish",
             lambda: inspect(lab, name).get("UpdateStatus", {}).get("State", "completed") != "updating",
             timeout=120)


def all_tasks(lab, name: str) -> list[dict]:
    return client(lab, lab.manager).services.get(name).tasks()


def test_a_migrate_alert_moves_the_task_to_another_worker_with_zero_failed_requests(lab, web):
    _, _, old = the_task(lab, web)
    with own_receiver(lab) as receiver, Probe(lab.entrypoint_url, rate=20) as probe:
        probe.wait_answered(by=old)
        assert receiver.send(migrate_alert(lab, web)).status_code == 202
        new = services.wait_moved_off(lab, web, old)
        receiver.wait_idle()
        probe.wait_answered(by=new, last=20)  # the entry point has settled on the new node
        result = probe.stop()
        print(f"receiver migration {old} -> {new}: {result.summary()}")
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 1
    assert result.failed == 0, result.summary()
    assert result.nodes == [old, new]
    spec = inspect(lab, web)["Spec"]
    assert spec["Labels"]["swarmguard.last-action"] == "migrate"
    assert spec["UpdateConfig"]["Order"] == "start-first"
    assert sorted(placement(lab, web)) == sorted(["node.role==worker", f"node.hostname!={old}"])


def test_a_stale_alert_for_a_task_that_already_moved_changes_nothing(lab, web):
    stale = migrate_alert(lab, web)
    _, _, old = the_task(lab, web)

    def move_by_hand(spec):
        spec["TaskTemplate"]["Placement"]["Constraints"].append(f"node.hostname!={old}")
        spec["UpdateConfig"]["Order"] = "start-first"
    services.update_service(lab, web, move_by_hand)
    services.wait_moved_off(lab, web, old)
    # Swarm's update monitor writes the service (UpdateStatus, a new Version) when it
    # marks the manual update completed, seconds after the task moved: read the service
    # only once Swarm has settled it, or Swarm's own write reads as the receiver's.
    settled(lab, web)
    before = inspect(lab, web)
    with own_receiver(lab) as receiver:
        assert receiver.send(stale).status_code == 202
        receiver.wait_idle()
        assert receiver.metric("swarmguard_stale_alerts_total", alertname="SwarmGuardMigrate") == 1
        assert receiver.metric("swarmguard_actions_total") == 0
    after = inspect(lab, web)
    assert after["Spec"] == before["Spec"]
    assert after["Version"] == before["Version"]
    assert "swarmguard.last-action" not in inspect(lab, web)["Spec"].get("Labels", {})


@pytest.mark.compat
def test_the_same_alert_delivered_twice_to_two_racing_receivers_makes_exactly_one_move(lab, web):
    alert = migrate_alert(lab, web)
    _, _, old = the_task(lab, web)
    with own_receiver(lab) as first, own_receiver(lab, port_offset=1) as second:
        senders = [threading.Thread(target=r.send, args=(alert,)) for r in (first, second, first, second)]
        for s in senders:
            s.start()
        for s in senders:
            s.join()
        services.wait_moved_off(lab, web, old)
        first.wait_idle()
        second.wait_idle()
        done = sum(r.metric("swarmguard_actions_total", kind="migrate", result="success") for r in (first, second))
        assert done == 1
    # One replacement in the task history: the original task and exactly one new one.
    assert len(all_tasks(lab, web)) == 2
    assert [c for c in placement(lab, web) if c.startswith(SWARMGUARD_EXCLUSION)] == [f"node.hostname!={old}"]


def test_five_migrations_in_a_row_leave_exactly_one_swarmguard_constraint(lab, web):
    with own_receiver(lab, cooldown_migrate=0) as receiver:
        for step in range(5):
            _, _, old = the_task(lab, web)
            alert = migrate_alert(lab, web)
            assert receiver.send(alert).status_code == 202
            services.wait_moved_off(lab, web, old)
            receiver.wait_idle()
            # As Alertmanager does once the old task's series are gone. Unresolved, the
            # alert would keep its node hot, and the next move back onto it refused.
            assert receiver.send(resolved(alert)).status_code == 202
            settled(lab, web)  # a real alert for the new task could not fire sooner anyway
            constraints = placement(lab, web)
            assert [c for c in constraints if c.startswith(SWARMGUARD_EXCLUSION)] == [f"node.hostname!={old}"], step
            assert "node.role==worker" in constraints
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="success") == 5


def test_scaling_up_stops_at_the_maximum_and_scaling_down_at_the_minimum(lab):
    name = "scaled"
    services.deploy_web(lab, name, labels={"swarmguard.replicas.min": "1", "swarmguard.replicas.max": "2"})
    try:
        with own_receiver(lab, cooldown_scale_up=0, cooldown_scale_down=0) as receiver:
            for expected in (2, 2):
                receiver.send(webhook("SwarmGuardScaleUp", {"service": name}))
                receiver.wait_idle()
                settled(lab, name)
                assert replicas(lab, name) == expected
            wait_for("two healthy replicas", lambda: len(services.running_tasks(lab, name)) == 2)
            for expected in (1, 1):
                receiver.send(webhook("SwarmGuardScaleDown", {"service": name}))
                receiver.wait_idle()
                settled(lab, name)
                assert replicas(lab, name) == expected
            assert receiver.metric("swarmguard_actions_total", kind="scale_up", result="success") == 1
            assert receiver.metric("swarmguard_actions_total", kind="scale_down", result="success") == 1
            assert receiver.metric("swarmguard_alerts_skipped_total", reason="at_limit") == 2
    finally:
        services.remove_service(lab, name)


def test_a_receiver_killed_mid_migration_leaves_the_service_moved_or_rolled_back_and_the_cooldown_holds(lab, web):
    _, _, old = the_task(lab, web)
    receiver = own_receiver(lab).start()
    try:
        receiver.send(migrate_alert(lab, web))
        wait_for("the migration to be under way",
                 lambda: inspect(lab, web)["Spec"].get("Labels", {}).get("swarmguard.last-action") == "migrate")
        receiver.kill()
    finally:
        receiver.kill()
    # Swarm carries the rolling update on without the receiver; it ends moved or rolled back.
    wait_for("the update to finish", lambda: inspect(lab, web).get("UpdateStatus", {}).get("State")
             in ("completed", "rollback_completed"), timeout=60)
    wait_for("one healthy task", lambda: len(services.running_tasks(lab, web)) == 1)
    state = inspect(lab, web)["UpdateStatus"]["State"]
    _, _, now_on = the_task(lab, web)
    assert (state, now_on != old) in (("completed", True), ("rollback_completed", False))
    before = inspect(lab, web)["Version"]
    with own_receiver(lab) as restarted:  # default 60 s cooldown, remembered in the labels
        restarted.send(migrate_alert(lab, web))
        restarted.wait_idle()
        assert restarted.metric("swarmguard_alerts_skipped_total", reason="cooldown") == 1
    assert inspect(lab, web)["Version"] == before


def settled_update_state(lab, web) -> str:
    """Swarm's update state once its rolling update has ended. The receiver counts a
    migration done when the new task serves and the old one is out of rotation; Swarm
    marks the update completed only after its monitor period."""
    return wait_for("Swarm's update to settle", lambda: (
        inspect(lab, web).get("UpdateStatus", {}).get("State") not in (None, "updating", "rollback_started")
        and inspect(lab, web)["UpdateStatus"]["State"]), timeout=60)


def test_a_receiver_stopped_by_sigterm_mid_migration_finishes_it_and_the_next_one_handles_the_resent_alert(lab, web):
    _, _, old = the_task(lab, web)
    alert = migrate_alert(lab, web)
    receiver = own_receiver(lab)
    receiver.start()
    try:
        assert receiver.send(alert).status_code == 202
        wait_for("the migration to be under way",
                 lambda: inspect(lab, web)["Spec"].get("Labels", {}).get("swarmguard.last-action") == "migrate")
        os.killpg(receiver.proc.pid, signal.SIGTERM)
        # From SIGTERM on, no webhook is taken: refused (503) or not even connected (the
        # arbiter closes the listening socket at once).
        try:
            assert receiver.send(alert).status_code == 503
        except requests.RequestException:
            pass
        # It waits for the migration (within SWARMGUARD_SHUTDOWN_DEADLINE, 20 s) and exits.
        assert receiver.proc.wait(timeout=40) == 0
    finally:
        receiver.kill()
    events = receiver.events()  # read from its log: the receiver has exited
    outcomes = [e for e in events if e["type"] == "outcome"]
    assert [(e["kind"], e["result"]) for e in outcomes] in (
        [("migrate", "success")], [("migrate", "rolled_back")]), events
    assert [e for e in events if e["type"] == "dropped"] == []
    state = settled_update_state(lab, web)
    _, _, now_on = the_task(lab, web)
    assert (state, now_on != old) in (("completed", True), ("rollback_completed", False))
    before = inspect(lab, web)["Version"]
    # Alertmanager resends the alert (it was acknowledged, and it repeats firing alerts):
    # the next receiver decides on it once, and leaves the service as it is.
    with own_receiver(lab) as successor:
        assert successor.send(alert).status_code == 202
        successor.wait_idle()
        [decision] = [e for e in successor.events() if e["type"] == "decision"]
        assert (decision["type"], decision["result"], decision["reason"]) in (
            ("decision", "skip", "stale"), ("decision", "skip", "cooldown")), decision
    assert inspect(lab, web)["Version"] == before


def test_a_service_without_the_opt_in_label_is_never_touched(lab):
    name = "private"
    services.deploy_web(lab, name, opt_in=False)
    try:
        before = inspect(lab, name)["Version"]
        with own_receiver(lab, cooldown_scale_up=0) as receiver:
            receiver.send(migrate_alert(lab, name))
            receiver.wait_idle()  # one action per service at a time: let the first finish
            receiver.send(webhook("SwarmGuardScaleUp", {"service": name}))
            receiver.wait_idle()
            assert receiver.metric("swarmguard_alerts_skipped_total", reason="not_opted_in") == 2
        assert inspect(lab, name)["Version"] == before
    finally:
        services.remove_service(lab, name)


def test_dry_run_decides_and_changes_nothing(lab, web):
    before = inspect(lab, web)["Version"]
    with own_receiver(lab, dry_run=1) as receiver:
        receiver.send(migrate_alert(lab, web, starts_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        receiver.wait_idle()
        assert receiver.metric("swarmguard_actions_total", kind="migrate", result="dry_run") == 1
        events = receiver.events()
    assert inspect(lab, web)["Version"] == before
    assert [(e["type"], e["result"]) for e in events] == [
        ("started", "dry_run"), ("decision", "act"), ("outcome", "dry_run")]


def hostile_bodies(lab, name: str) -> list[tuple[str, bytes, int]]:
    """(what, body, the answer it must get): the bad inputs of receiver/README.md ("Hostile
    or broken senders"), as such a sender would send them to the real receiver."""
    good = migrate_alert(lab, name)
    alert = good["alerts"][0]

    def with_labels(**labels):
        return json.dumps({**good, "alerts": [{**alert, "labels": {**alert["labels"], **labels}}]})
    far = json.dumps({**good, "alerts": [{**alert, "startsAt": "9999-01-01T00:00:00Z"}]})
    flood = {**good, "alerts": [{**alert, "labels": {**alert["labels"], "service": f"flood-{i}"}}
                                for i in range(300)]}
    return [
        ("a service name that is a path", with_labels(service="../images/alpine/get").encode(), 400),
        ("a task ID that is not one", with_labels(task_id="../../containers/json").encode(), 400),
        ("a forged log line in a label", with_labels(team="x\nINFO receiver.actuator: Scaling up web").encode(), 400),
        ("a lone surrogate", with_labels(team="@").encode().replace(b'"@"', b'"\\ud800"'), 400),
        ("a startsAt in the year 9999", far.encode(), 400),
        ("more services than may wait", json.dumps(flood).encode(), 503),
    ]


def test_bad_input_to_the_real_receiver_gets_a_clear_answer_and_changes_nothing(lab, web):
    before = inspect(lab, web)["Version"]
    with own_receiver(lab, cooldown_migrate=0) as receiver:
        for what, body, code in hostile_bodies(lab, web):
            answer = requests.post(f"{receiver.url}/alerts", data=body, timeout=10, headers={
                "Authorization": f"Bearer {receiver.token}", "Content-Type": "application/json"})
            assert answer.status_code == code, (what, answer.text)
            assert answer.json()["error"], what
        receiver.wait_idle()
        # Nothing was even decided: the receiver's start is its only event.
        assert [e["type"] for e in receiver.events()] == ["started"]
        assert receiver.metric("swarmguard_rejected_requests_total", code="400") == 5
    assert inspect(lab, web)["Version"] == before
    log = receiver.log_path.read_bytes()[receiver.log_offset:].decode()
    assert "\nINFO receiver.actuator: Scaling up web" not in log
