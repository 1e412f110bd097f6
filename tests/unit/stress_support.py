"""Shared helpers for the stress app tests: a config pointed at fixture trees."""

from pathlib import Path

from stress.config import StressConfig, StressLimits
from stress.identity import Identity

MIB = 1024 * 1024
IDENTITY = Identity(
    hostname="c0ffee", task="demo_stress.1.abc", node="worker-1", service="demo_stress",
    task_id="abc", node_id="n1",
)
ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "lo\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
)


def config_for(tmp_path: Path, cpu_max: str = "100000 100000", memory_mb: int = 512, **kw):
    """A container with one core and `memory_mb` of memory, by cgroup v2 fixture files.
    Its "default gateway" is 127.0.0.1, so even the default sink stays on loopback."""
    root = tmp_path / "cgroup"
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cpu.max").write_text(cpu_max + "\n")
    (root / "memory.max").write_text(f"{memory_mb * MIB}\n")
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    options = dict(
        limits=StressLimits(max_duration_s=600, max_memory_mb=1024, max_network_mbps=100),
        identity=IDENTITY,
        cgroup_root=str(root),
        self_cgroup_path="",
        route_path=str(routes),
    )
    options.update(kw)
    return StressConfig(**options)


class RefusingController:
    """Stands in for the process runner where a test expects nothing to start:
    any call to it fails the test."""

    def start(self, plan):
        raise AssertionError(f"unexpected start of {plan.kind} stress")

    def stop(self, kinds=None):
        raise AssertionError("unexpected stop")

    def status(self):
        return {}
