"""From a validated request to the processes that carry it out (stress/jobs.py): what each
plan runs, for how long, and how it describes itself; nothing is started."""

import socket

from stress import jobs, workers
from stress.config import StressConfig
from stress.params import CpuRequest, MemoryRequest, NetworkRequest, Timing

CONFIG = StressConfig(worker_nice=7, cpu_slice_s=0.1, datagram_bytes=1200)
TIMING = Timing(duration_s=30, ramp_s=5)


def plans():
    return {
        "cpu": jobs.cpu(CpuRequest(80, TIMING), 2.0, CONFIG),
        "memory": jobs.memory(MemoryRequest(64, TIMING), CONFIG),
        "network": jobs.network(NetworkRequest(10, TIMING, None), socket.AF_INET,
                                ("10.0.0.1", 9), "10.0.0.1:9", "default gateway", CONFIG),
    }


def test_every_plan_lasts_its_request_s_duration_and_its_processes_ramp_and_run_niced():
    for kind, plan in plans().items():
        assert (plan.kind, plan.duration_s) == (kind, 30)
        assert plan.jobs and all(job.kwargs["ramp_s"] == 5 and job.kwargs["nice"] == 7
                                 for job in plan.jobs)


def test_each_plan_describes_what_its_kind_asked_for_then_its_duration_and_ramp():
    described = {kind: plan.description for kind, plan in plans().items()}
    assert list(described["cpu"].items()) == [
        ("target_percent", 80), ("allowance_cores", 2.0), ("processes", 2),
        ("duty_per_process", 0.8), ("duration_s", 30), ("ramp_s", 5)]
    assert list(described["memory"].items()) == [("mb", 64), ("duration_s", 30), ("ramp_s", 5)]
    assert list(described["network"].items()) == [
        ("mbps", 10), ("sink", "10.0.0.1:9"), ("sink_source", "default gateway"),
        ("protocol", "udp"), ("datagram_bytes", 1200), ("duration_s", 30), ("ramp_s", 5)]


def test_each_kind_runs_its_own_worker_with_its_own_arguments():
    cpu, memory, network = plans().values()
    assert [(j.target, j.kwargs["duty"], j.kwargs["slice_s"]) for j in cpu.jobs] == \
        [(workers.burn_cpu, 0.8, 0.1)] * 2
    assert [(j.target, j.kwargs["mb"]) for j in memory.jobs] == [(workers.hold_memory, 64)]
    [job] = network.jobs
    assert (job.target, job.kwargs["address"], job.kwargs["rate_bytes_per_s"],
            job.kwargs["datagram_bytes"]) == (workers.send_udp, ("10.0.0.1", 9), 1_250_000, 1200)
