"""What every benchmark shares: its command line and the lab it runs on, statistics, the
results folder, tables, figures, progress."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# The lab owns where results go and how a process's CPU time is read; the benchmarks use
# them (and the lab never imports the benchmarks).
from tests.lab.artifacts import ARTIFACTS
from tests.lab.config import DEFAULT, LabConfig
from tests.lab.infra import controller
from tests.lab.infra.procfs import cpu_seconds

__all__ = ["ARTIFACTS", "cpu_seconds", "command_line", "lab_up", "rss_mb", "raise_open_files", "progress",
           "percentile", "summarise", "machine", "write_json", "publish", "table", "pyplot", "save_figure"]


def command_line(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's options, its module docstring (as written) for --help."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def lab_up() -> LabConfig:
    """The default lab, brought up unless it already runs healthy."""
    if not controller.healthy(DEFAULT):
        controller.up(DEFAULT)
    return DEFAULT


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory in MiB (/proc/<pid>/status): now (VmRSS), or the
    highest it has been (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def raise_open_files(needed: int) -> None:
    """Raise this process's soft limit on open files to `needed`, as far as the hard limit
    allows (a process it starts inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(values: list[float]) -> dict:
    return {"n": len(values), "p50": statistics.median(values) if values else None,
            "p95": percentile(values, 95), "min": min(values, default=None), "max": max(values, default=None),
            "mean": statistics.fmean(values) if values else None}


def machine() -> dict:
    return {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def write_json(name: str, data: dict) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    data = {"benchmark": name, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2))
    return path


def publish(name: str, data: dict, draw) -> tuple[Path, Path]:
    """Write artifacts/<name>.json and, with draw(png_path), artifacts/<name>.png; say so."""
    path = write_json(name, data)
    png = ARTIFACTS / f"{name}.png"
    draw(png)
    print(f"\nwrote {path} and {png}")
    return path, png


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else ("-" if v is None else str(v))
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def pyplot():
    """matplotlib's pyplot drawing to files only (no display), imported when a benchmark
    draws: the rest of a benchmark runs without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> None:
    """Lay the figure out, write it as a PNG at `path` and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
