"""From a validated request to the processes that carry it out (described, not started).

A Job names a worker function and its arguments; the runner adds the deadline, the
owner and the progress counters when it starts it. Keeping this step pure lets tests
check "80 % of 2 cores is two processes at 0.8" without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from stress import workers
from stress.config import StressConfig
from stress.params import CpuRequest, MemoryRequest, NetworkRequest, Timing
from stress.shaping import cpu_plan, mbps_to_bytes_per_s


@dataclass(frozen=True)
class Job:
    target: Callable[..., None]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    kind: str  # "cpu", "memory" or "network"
    jobs: tuple[Job, ...]
    duration_s: float
    progress_unit: str  # what the summed progress counters mean, for /stress/status
    description: dict[str, Any]  # the request as JSON, for responses and status


def cpu(request: CpuRequest, allowance_cores: float, config: StressConfig) -> Plan:
    plan = cpu_plan(request.target_percent, allowance_cores)
    job = _job(workers.burn_cpu, request.timing, config, duty=plan.duty,
               slice_s=config.cpu_slice_s)
    return _plan(
        "cpu", (job,) * plan.processes, request.timing, "cores_commanded",
        target_percent=request.target_percent,
        allowance_cores=allowance_cores,
        processes=plan.processes,
        duty_per_process=round(plan.duty, 4),
    )


def memory(request: MemoryRequest, config: StressConfig) -> Plan:
    job = _job(workers.hold_memory, request.timing, config, mb=request.mb)
    return _plan("memory", (job,), request.timing, "mb_allocated", mb=request.mb)


def network(
    request: NetworkRequest, family: int, address: tuple, sink_label: str,
    sink_source: str, config: StressConfig,
) -> Plan:
    job = _job(
        workers.send_udp, request.timing, config,
        family=family,
        address=address,
        rate_bytes_per_s=mbps_to_bytes_per_s(request.mbps),
        datagram_bytes=config.datagram_bytes,
    )
    return _plan(
        "network", (job,), request.timing, "bytes_sent",
        mbps=request.mbps,
        sink=sink_label,
        sink_source=sink_source,
        protocol="udp",
        datagram_bytes=config.datagram_bytes,
    )


def _job(target: Callable[..., None], timing: Timing, config: StressConfig, **kwargs) -> Job:
    """Every stress process ramps up over the request's ramp and runs niced."""
    return Job(target, dict(kwargs, ramp_s=timing.ramp_s, nice=config.worker_nice))


def _plan(kind: str, jobs: tuple[Job, ...], timing: Timing, progress_unit: str,
          **description: Any) -> Plan:
    """Every plan runs for its request's duration, and describes it with its ramp, after
    what the kind asked for."""
    return Plan(
        kind=kind,
        jobs=jobs,
        duration_s=timing.duration_s,
        progress_unit=progress_unit,
        description={**description, "duration_s": timing.duration_s, "ramp_s": timing.ramp_s},
    )
