"""make bench-drain's pure parts (tests/bench/drain.py): what a probe's run becomes in
the JSON, tasks counted per worker, the table and the verdict, the picture."""
from tests.bench import drain
from tests.lab.instruments.probe import ProbeResult, Sample


def sample(at, ok=True, node="worker-1", status=200, error=None):
    return Sample(at, ok, status, node if ok else None, error, 0.01)


def test_a_probe_s_run_keeps_each_answer_by_node_and_each_failure_in_the_step_s_seconds():
    result = ProbeResult([sample(0.0), sample(0.05), sample(0.1, ok=False, status=503),
                          sample(0.15, ok=False, status=None, error="ReadTimeout"), sample(2.0, node="worker-2")])
    summary = drain.probe_summary(result, offset=1.0)
    assert summary == {"requests": 5, "failed": 2, "longest_gap_s": 1.95,
                       "answers": {"worker-1": [1.0, 1.05], "worker-2": [3.0]},
                       "failures": [[1.1, "503"], [1.15, "ReadTimeout"]]}


NODES = {"n1": "worker-1", "n2": "worker-2", "m": "manager"}


def task(service, node, desired="running", state="running"):
    return {"ServiceID": service, "NodeID": node, "DesiredState": desired, "Status": {"State": state}}


def test_only_running_tasks_of_the_benchmark_s_services_count_per_worker():
    tasks = [task("a", "n1"), task("b", "n2"), task("c", "n2"),
             task("a", "n2", desired="shutdown"), task("d", "n1", state="starting"),
             task("other", "n1"), task("a", "m"), {"ServiceID": "a", "DesiredState": "running"}]
    assert drain.count_running(tasks, NODES, ["worker-1", "worker-2"], {"a", "b", "c", "d"}) == {
        "worker-1": 1, "worker-2": 2}


def probed(failed, gap):
    return {"requests": 100, "failed": failed, "longest_gap_s": gap, "answers": {"worker-1": [0.0, 0.05]},
            "failures": [[0.1, "503"]] * failed}


def command(code=0, seconds=12.0):
    return {"args": ["drain", "worker-1"], "exit_code": code, "seconds": seconds, "output": []}


def run(**steps):
    data = {"node": "worker-1", "rate_per_s": 20.0, "services": {
        "drain-a": {"published_port": 8081, "entry_url": "http://127.0.0.1:8080", "startup_delay_s": 0.0},
        "drain-d": {"published_port": 8084, "entry_url": "http://127.0.0.1:8184", "startup_delay_s": 8.0}}}
    data.update(steps)
    return data


PLAIN = {"empty_s": 14.2, "marks": [[3.0, "drain"], [17.2, "worker-1 empty"]],
         "services": {"drain-a": probed(40, 2.5), "drain-d": probed(210, 11.0)}}
GUARD = {"empty_s": 21.5, "off_at_exit": True, "command": command(0, 21.5),
         "marks": [[3.0, "swarmguard drain"], [24.5, "exited"]],
         "services": {"drain-a": probed(0, 0.1), "drain-d": probed(0, 0.12)}}
REBALANCE = {"undrain": command(0, 0.4), "rebalance": command(0, 9.0),
             "tasks_before": {"worker-1": 0, "worker-2": 4}, "tasks_after": {"worker-1": 2, "worker-2": 2},
             "marks": [[3.0, "undrain"], [3.4, "rebalance"], [12.4, "exited"]],
             "services": {"drain-a": probed(0, 0.1), "drain-d": probed(1, 0.3)}}


def test_the_table_puts_each_service_s_failures_and_gap_side_by_side_for_every_step():
    assert drain.rows(run(plain=PLAIN, swarmguard=GUARD, rebalance=REBALANCE)) == [
        ["drain-a", 8081, "-", 40, 2.5, 0, 0.1, 0, 0.1],
        ["drain-d", 8084, "8 s", 210, 11.0, 0, 0.12, 1, 0.3]]


def test_the_report_gives_both_times_to_empty_the_node_and_the_spread():
    text = drain.report(run(plain=PLAIN, swarmguard=GUARD, rebalance=REBALANCE))
    assert "time to empty worker-1: Swarm's drain 14.2 s; swarmguard drain 21.5 s" in text
    assert "before the rebalance worker-1 0, worker-2 4; after worker-1 2, worker-2 2" in text
    assert "stopped early" not in text and "still ran" not in text
    assert drain.finished(run(plain=PLAIN, swarmguard=GUARD, rebalance=REBALANCE))


def test_a_drain_that_did_not_finish_says_so_and_fails_the_run():
    failed = {**GUARD, "empty_s": None, "off_at_exit": False, "command": command(1, 30.0)}
    data = run(plain=PLAIN, swarmguard=failed, rebalance=REBALANCE)
    text = drain.report(data)
    assert "swarmguard drain exit 1 after 30.0 s" in text
    assert "some service still ran on worker-1" in text
    assert not drain.finished(data)


def test_a_run_stopped_early_reports_what_it_measured_and_fails():
    data = run(plain=PLAIN, error="timed out after 120s waiting for every service running healthy only on worker-1")
    text = drain.report(data)
    assert "Swarm's drain 14.2 s; swarmguard drain not run" in text
    assert "stopped early: timed out" in text
    assert drain.rows(data)[1][3:] == [210, 11.0, None, None, None, None]
    assert not drain.finished(data)


def test_the_picture_draws_a_full_run_and_a_partial_one(tmp_path):
    full = drain.plot(run(plain=PLAIN, swarmguard=GUARD, rebalance=REBALANCE), tmp_path / "full.png")
    partial = drain.plot(run(plain=PLAIN), tmp_path / "partial.png")
    assert full.stat().st_size > 10_000 and partial.stat().st_size > 10_000


def test_each_service_gets_its_own_entry_point_and_the_receiver_a_port_no_alert_reaches():
    from tests.lab.config import DEFAULT
    ports = drain.service_ports(DEFAULT)
    assert list(ports) == list(drain.SERVICES) and len(set(ports.values())) == len(ports)
    assert all(DEFAULT.entry_url(port) for port in ports.values())
    assert drain.receiver_port(DEFAULT) not in {DEFAULT.receiver_port, DEFAULT.receiver_port + 1,
                                                *(e.port for e in DEFAULT.entry_points)}
