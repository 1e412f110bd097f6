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
from stress.params import CpuRequest, MemoryRequest, NetworkRequest
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
    job = Job(
        workers.burn_cpu,
        dict(
            duty=plan.duty,
            ramp_s=request.timing.ramp_s,
            slice_s=config.cpu_slice_s,
            nice=config.worker_nice,
        ),
    )
    return Plan(
        kind="cpu",
        jobs=(job,) * plan.processes,
        duration_s=request.timing.duration_s,
        progress_unit="cores_commanded",
        description={
            "target_percent": request.target_percent,
            "allowance_cores": allowance_cores,
            "processes": plan.processes,
            "duty_per_process": round(plan.duty, 4),
            "duration_s": request.timing.duration_s,
            "ramp_s": request.timing.ramp_s,
        },
    )


def memory(request: MemoryRequest, config: StressConfig) -> Plan:
    job = Job(
        workers.hold_memory,
        dict(mb=request.mb, ramp_s=request.timing.ramp_s, nice=config.worker_nice),
    )
    return Plan(
        kind="memory",
        jobs=(job,),
        duration_s=request.timing.duration_s,
        progress_unit="mb_allocated",
        description={
            "mb": request.mb,
            "duration_s": request.timing.duration_s,
            "ramp_s": request.timing.ramp_s,
        },
    )


def network(
    request: NetworkRequest, family: int, address: tuple, sink_label: str,
    sink_source: str, config: StressConfig,
) -> Plan:
    job = Job(
        workers.send_udp,
        dict(
            family=family,
            address=address,
            rate_bytes_per_s=mbps_to_bytes_per_s(request.mbps),
            ramp_s=request.timing.ramp_s,
            datagram_bytes=config.datagram_bytes,
            nice=config.worker_nice,
        ),
    )
    return Plan(
        kind="network",
        jobs=(job,),
        duration_s=request.timing.duration_s,
        progress_unit="bytes_sent",
        description={
            "mbps": request.mbps,
            "sink": sink_label,
            "sink_source": sink_source,
            "protocol": "udp",
            "datagram_bytes": config.datagram_bytes,
            "duration_s": request.timing.duration_s,
            "ramp_s": request.timing.ramp_s,
        },
    )
