"""Node maintenance in the lab (docs/contract.md, "Maintenance"): `swarmguard drain` empties a
node start-first with no failed request, even for an app that needs 8 s to start, and even
when the receiver is killed mid-drain; it refuses what it cannot do and changes nothing;
`undrain` and `rebalance` bring work back, again without a failed request.

Two single-replica, health-checked stress services run on worker-1, each behind its own
entry point with a probe: maint-a starts in 8 s (STRESS_STARTUP_DELAY_SECONDS), maint-b
at once. Swarm's own drain fails the slow one's requests for seconds (make bench-drain
measures it); SwarmGuard keeps each old task until its successor is healthy."""
from __future__ import annotations

import pytest
import requests

from tests.lab.infra import services
from tests.lab.infra.cli import swarmguard
from tests.lab.infra.receiver_proc import ReceiverProcess
from tests.lab.infra.system import wait_for
from tests.lab.instruments import prometheus
from tests.lab.instruments.probe import Probe

pytestmark = pytest.mark.lab

NODE, OTHER = "worker-1", "worker-2"
SLOW, FAST = "maint-a", "maint-b"  # a drain moves them in name order: the slow one first
SLOW_START_S = 8


@pytest.fixture
def on_worker_1(lab):
    """SLOW and FAST on worker-1 (worker-2 paused while they are created), their entry
    point URLs; afterwards both removed and every node active without drain labels."""
    services.reset_nodes(lab)
    services.set_availability(lab, OTHER, "pause")
    try:
        services.deploy_stress(lab, SLOW, published_port=lab.app_published_port,
                               env=(f"STRESS_STARTUP_DELAY_SECONDS={SLOW_START_S}",),
                               health_start_period_s=SLOW_START_S + 20, health_retries=3)
        services.deploy_stress(lab, FAST, published_port=lab.extra_apps[0].published_port)
    finally:
        services.set_availability(lab, OTHER, "active")
    urls = {name: services.entry_url(lab, name) for name in (SLOW, FAST)}
    for name, url in urls.items():
        wait_for(f"{name} answering at {url}", lambda u=url: _answers(u), timeout=60)
    yield urls
    try:
        services.reset_nodes(lab)
    finally:
        for name in (SLOW, FAST):
            services.remove_service(lab, name)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _probes(urls: dict[str, str]) -> dict[str, Probe]:
    return {name: Probe(f"{url}/health", rate=20) for name, url in urls.items()}


def _failed(probes: dict[str, Probe]) -> dict[str, str]:
    """Each probe stopped; the summary of those that saw a failure."""
    results = {name: p.stop() for name, p in probes.items()}
    return {name: r.summary for name, r in results.items() if r.failed or not r.total}


def _quiet(lab) -> bool:
    updating = [n for n in (SLOW, FAST)
                if (services.inspect(lab, n).get("UpdateStatus") or {}).get("State") == "updating"]
    hot = prometheus.query_detection(lab, 'ALERTS{alertname="SwarmGuardMigrate", alertstate="firing"}')
    return not updating and not hot


def _drained(lab, node: str) -> bool:
    spec = services.node_spec(lab, node)["Spec"]
    return spec["Availability"] == "drain" and spec["Labels"].get("swarmguard.drain") == "drained"


def _placement_restored(lab, name: str) -> bool:
    spec = services.inspect(lab, name)["Spec"]
    return (spec["TaskTemplate"]["Placement"].get("Constraints") == list(services.WORKERS_ONLY)
            and "swarmguard.placement-exclusion" not in spec["Labels"])


def _tasks_per_worker(lab) -> dict[str, int]:
    counts = {w.name: 0 for w in lab.workers}
    for name in (SLOW, FAST):
        for task in services.running_tasks(lab, name):
            counts[services.node_name(lab, task["NodeID"])] += 1
    return counts


@pytest.mark.compat
def test_drain_then_undrain_and_rebalance_move_every_task_start_first_with_no_failed_request(
        lab, on_worker_1):
    with ReceiverProcess(lab) as receiver:
        probes = {name: p.start() for name, p in _probes(on_worker_1).items()}
        run = swarmguard(lab, receiver.url, "drain", NODE)
        assert run.exit_code == 0, run.text
        # Exit 0 means drained; everything already runs healthy on the other worker.
        assert _drained(lab, NODE)
        for name in (SLOW, FAST):
            assert services.moved_off(lab, name, NODE) == OTHER, name
            assert _placement_restored(lab, name), services.inspect(lab, name)["Spec"]
        # The CLI printed one line per moved service.
        assert sum(1 for line in run.output if SLOW in line and "success" in line) >= 1, run.text
        assert sum(1 for line in run.output if FAST in line and "success" in line) >= 1, run.text
        assert _failed(probes) == {}

        probes = {name: p.start() for name, p in _probes(on_worker_1).items()}
        undrain = swarmguard(lab, receiver.url, "undrain", NODE)
        assert undrain.exit_code == 0, undrain.text
        spec = services.node_spec(lab, NODE)["Spec"]
        assert spec["Availability"] == "active" and "swarmguard.drain" not in spec["Labels"]
        assert _tasks_per_worker(lab) == {NODE: 0, OTHER: 2}
        # A rebalance leaves alone a service Swarm is still updating (the drain's last
        # placement change may still be settling) and moves nothing onto a hot node (a
        # Migrate of an earlier spec's task may still fire): wait for neither, as an
        # operator reading `swarmguard status` would, so the plan below has its moves.
        wait_for("Swarm's updates settled and no node hot", lambda: _quiet(lab), timeout=180)
        rebalance = swarmguard(lab, receiver.url, "rebalance")
        assert rebalance.exit_code == 0, rebalance.text
        assert "Nothing to rebalance" not in rebalance.text, swarmguard(lab, receiver.url, "status").text
        wait_for("one task per worker, placement restored",
                 lambda: _tasks_per_worker(lab) == {NODE: 1, OTHER: 1}
                 and all(_placement_restored(lab, n) for n in (SLOW, FAST)), timeout=120)
        assert _failed(probes) == {}
        kinds = {(e["type"], e["kind"], e["result"]) for e in receiver.events()}
    assert {("outcome", "drain", "success"), ("maintenance", "drain", "finished"),
            ("maintenance", "undrain", "finished"), ("outcome", "rebalance", "success"),
            ("maintenance", "rebalance", "finished")} <= kinds


def test_a_receiver_killed_mid_drain_is_succeeded_by_one_that_finishes_it(lab, on_worker_1):
    probes = {name: p.start() for name, p in _probes(on_worker_1).items()}
    first = ReceiverProcess(lab).start()
    try:
        answer = requests.post(f"{first.url}/maintenance/drain", json={"node": NODE}, timeout=30,
                               headers={"Authorization": f"Bearer {first.token}"})
        assert answer.status_code == 202, answer.text
        # Killed while Swarm starts the slow service's new task (8 s before it serves).
        wait_for(f"the drain's move of {SLOW} begun", lambda: [
            e for e in first.events() if e["type"] == "decision" and e["kind"] == "drain"
            and e["service"] == SLOW], timeout=60)
    finally:
        first.kill()
    assert services.node_spec(lab, NODE)["Spec"]["Labels"]["swarmguard.drain"] == "moving"
    with ReceiverProcess(lab) as successor:
        wait_for(f"{NODE} drained by the successor", lambda: _drained(lab, NODE), timeout=240)
        events = successor.events()
    for name in (SLOW, FAST):
        assert services.moved_off(lab, name, NODE) == OTHER, name
        # The move the first receiver began, too: drained means every exclusion lifted.
        assert _placement_restored(lab, name), services.inspect(lab, name)["Spec"]
    results = [(e["type"], e["result"]) for e in events if e["type"] == "maintenance"]
    assert results[0] == ("maintenance", "resumed") and ("maintenance", "finished") in results
    assert _failed(probes) == {}


def test_what_cannot_be_done_is_refused_with_the_reason_and_changes_nothing(lab, on_worker_1):
    services.deploy_stress(lab, "maint-pinned", published_port=lab.extra_apps[1].published_port,
                           constraints=("node.hostname==worker-1",))
    try:
        before = {n: services.node_spec(lab, n)["Version"]["Index"] for n in ("manager", NODE)}
        versions = {n: services.inspect(lab, n)["Version"]["Index"] for n in (SLOW, FAST)}
        with ReceiverProcess(lab) as receiver:
            refused = swarmguard(lab, receiver.url, "drain", NODE)
            assert refused.exit_code == 1, refused.text
            assert "no other node can take" in refused.text and "maint-pinned" in refused.text
            dry = swarmguard(lab, receiver.url, "drain", NODE, "--force", "--dry-run")
            assert dry.exit_code == 0, dry.text
            assert SLOW in dry.text and FAST in dry.text and "maint-pinned" in dry.text
            manager = swarmguard(lab, receiver.url, "drain", "manager")
            assert manager.exit_code == 1 and "quorum" in manager.text, manager.text
            unknown = swarmguard(lab, receiver.url, "drain", "worker-9")
            assert unknown.exit_code == 1 and "no node is called worker-9" in unknown.text
            no_token = swarmguard(lab, receiver.url, "--token-file", "/nonexistent", "drain", NODE)
            assert no_token.exit_code == 2, no_token.text
        assert {n: services.node_spec(lab, n)["Version"]["Index"] for n in ("manager", NODE)} == before
        assert {n: services.inspect(lab, n)["Version"]["Index"] for n in (SLOW, FAST)} == versions
    finally:
        services.remove_service(lab, "maint-pinned")
