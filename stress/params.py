"""Validation of stress requests: query/form/JSON values in, frozen requests out.

Pure: no processes, no sockets, no Flask. Every rejection is a ParamError naming the
parameter and the reason, which the app turns into a 400. Unknown parameters are
rejected too: a typo such as `duraton=5` would otherwise silently run the default 60 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from stress.cgroup import Allowance
from stress.config import StressLimits

MIB = 1024 * 1024


class ParamError(ValueError):
    def __init__(self, parameter: str | None, reason: str):
        super().__init__(reason)
        self.parameter = parameter
        self.reason = reason


@dataclass(frozen=True)
class Bounds:
    """What a request may ask for right now: the config caps, tightened by the
    container's live memory limit."""

    max_duration_s: float
    default_duration_s: float
    max_cpu_percent: float
    max_memory_mb: int
    memory_cap_reason: str
    max_network_mbps: float

    @classmethod
    def from_limits(cls, limits: StressLimits, allowance: Allowance) -> "Bounds":
        max_mb, reason = limits.max_memory_mb, "the configured cap"
        if allowance.memory_bytes is not None:
            room = allowance.memory_bytes // MIB - limits.memory_headroom_mb
            if room < max_mb:
                max_mb = max(0, room)
                reason = (
                    f"{allowance.memory_source} {allowance.memory_bytes // MIB} MB "
                    f"minus {limits.memory_headroom_mb} MB headroom"
                )
        return cls(
            max_duration_s=limits.max_duration_s,
            default_duration_s=min(limits.default_duration_s, limits.max_duration_s),
            max_cpu_percent=limits.max_cpu_percent,
            max_memory_mb=max_mb,
            memory_cap_reason=reason,
            max_network_mbps=limits.max_network_mbps,
        )


@dataclass(frozen=True)
class Timing:
    duration_s: float
    ramp_s: float


@dataclass(frozen=True)
class CpuRequest:
    target_percent: float
    timing: Timing


@dataclass(frozen=True)
class MemoryRequest:
    mb: int
    timing: Timing


@dataclass(frozen=True)
class NetworkRequest:
    mbps: float
    timing: Timing
    sink: str | None  # "host:port" as given; None = configured sink or gateway


@dataclass(frozen=True)
class CombinedRequest:
    cpu: CpuRequest | None
    memory: MemoryRequest | None
    network: NetworkRequest | None


TIMING_PARAMS = {"duration", "ramp"}
SINK_PARAMS = {"target", "sink"}  # "sink" is an alias; clearer next to cpu= in combined
KINDS = ("cpu", "memory", "network")


def parse_cpu(values: Mapping[str, Any], bounds: Bounds) -> CpuRequest:
    _only(values, {"target"} | TIMING_PARAMS)
    target = _number(values, "target", required=True)
    _in_range("target", target, 0, bounds.max_cpu_percent, "percent of the CPU allowance")
    return CpuRequest(target_percent=target, timing=_timing(values, bounds))


def parse_memory(values: Mapping[str, Any], bounds: Bounds) -> MemoryRequest:
    _only(values, {"mb"} | TIMING_PARAMS)
    return MemoryRequest(mb=_memory_mb(values, "mb", bounds), timing=_timing(values, bounds))


def parse_network(values: Mapping[str, Any], bounds: Bounds) -> NetworkRequest:
    _only(values, {"mbps"} | TIMING_PARAMS | SINK_PARAMS)
    mbps = _number(values, "mbps", required=True)
    _in_range("mbps", mbps, 0, bounds.max_network_mbps, "Mbit/s")
    return NetworkRequest(mbps=mbps, timing=_timing(values, bounds), sink=_sink(values))


def parse_combined(values: Mapping[str, Any], bounds: Bounds) -> CombinedRequest:
    _only(values, set(KINDS) | TIMING_PARAMS | SINK_PARAMS)
    timing = _timing(values, bounds)
    cpu = memory = network = None
    if _present(values, "cpu"):
        target = _number(values, "cpu", required=True)
        _in_range("cpu", target, 0, bounds.max_cpu_percent, "percent of the CPU allowance")
        cpu = CpuRequest(target_percent=target, timing=timing)
    if _present(values, "memory"):
        memory = MemoryRequest(mb=_memory_mb(values, "memory", bounds), timing=timing)
    if _present(values, "network"):
        mbps = _number(values, "network", required=True)
        _in_range("network", mbps, 0, bounds.max_network_mbps, "Mbit/s")
        network = NetworkRequest(mbps=mbps, timing=timing, sink=_sink(values))
    elif _sink(values) is not None:
        raise ParamError("target", "target is only meaningful with network=")
    if cpu is None and memory is None and network is None:
        raise ParamError(None, "combined stress needs at least one of cpu=, memory=, network=")
    return CombinedRequest(cpu=cpu, memory=memory, network=network)


def parse_stop(values: Mapping[str, Any]) -> tuple[str, ...]:
    """Which kinds /stress/stop stops: `kind=cpu` (or memory, network), default all."""
    _only(values, {"kind"})
    kind = values.get("kind")
    if kind is None or kind == "" or kind == "all":
        return KINDS
    if kind not in KINDS:
        raise ParamError("kind", f"kind must be one of {', '.join(KINDS)} or all, got {kind!r}")
    return (kind,)


def _timing(values: Mapping[str, Any], bounds: Bounds) -> Timing:
    duration = _number(values, "duration", default=bounds.default_duration_s)
    _in_range("duration", duration, 0, bounds.max_duration_s, "seconds")
    ramp = _number(values, "ramp", default=0.0)
    if ramp < 0:
        raise ParamError("ramp", f"ramp must be >= 0 seconds, got {_fmt(ramp)}")
    if ramp > duration:
        raise ParamError(
            "ramp", f"ramp ({_fmt(ramp)} s) must not exceed duration ({_fmt(duration)} s)"
        )
    return Timing(duration_s=duration, ramp_s=ramp)


def _memory_mb(values: Mapping[str, Any], name: str, bounds: Bounds) -> int:
    mb = _number(values, name, required=True)
    if mb != int(mb):
        raise ParamError(name, f"{name} must be a whole number of MB, got {_fmt(mb)}")
    if mb <= 0:
        raise ParamError(name, f"{name} must be > 0 MB, got {_fmt(mb)}")
    if mb > bounds.max_memory_mb:
        raise ParamError(
            name,
            f"{name} must be at most {bounds.max_memory_mb} MB "
            f"({bounds.memory_cap_reason}), got {_fmt(mb)}",
        )
    return int(mb)


def _sink(values: Mapping[str, Any]) -> str | None:
    target, sink = values.get("target"), values.get("sink")
    if target not in (None, "") and sink not in (None, "") and target != sink:
        raise ParamError("target", "give the sink once: target= or sink=, not both")
    chosen = target if target not in (None, "") else sink
    if chosen in (None, ""):
        return None
    if not isinstance(chosen, str):
        raise ParamError("target", f"target must be 'host:port', got {chosen!r}")
    return chosen


def _only(values: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ParamError(
            unknown[0],
            f"unknown parameter(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}",
        )


def _present(values: Mapping[str, Any], name: str) -> bool:
    return values.get(name) not in (None, "")


def _number(
    values: Mapping[str, Any], name: str, *, required: bool = False, default: float = 0.0
) -> float:
    raw = values.get(name)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if required:
            raise ParamError(name, f"{name} is required")
        return default
    # JSON bodies give numbers directly; true/false are not numbers here.
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ParamError(name, f"{name} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ParamError(name, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        # float() accepts "nan" and "inf"; neither is a sane amount of stress.
        raise ParamError(name, f"{name} must be a finite number, got {raw!r}")
    return value


def _in_range(name: str, value: float, low_exclusive: float, high: float, unit: str) -> None:
    if value <= low_exclusive:
        raise ParamError(name, f"{name} must be > {_fmt(low_exclusive)} {unit}, got {_fmt(value)}")
    if value > high:
        raise ParamError(name, f"{name} must be at most {_fmt(high)} {unit}, got {_fmt(value)}")


def _fmt(value: float) -> str:
    return f"{value:g}"
