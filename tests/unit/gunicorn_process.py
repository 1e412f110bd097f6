"""A gunicorn started for a test, in its own session with its log in a file, and stopped
as Docker stops a container: SIGTERM, and SIGKILL only if it outstays `stop_within`
(then the test fails, with the end of the log)."""
from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def gunicorn(config: str, app: str, env: Mapping[str, str], log_path: Path,
             *args: str, stop_within: float = 40) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", config, *args, app],
                                cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc, log_path, stop_within)


def _stop(proc: subprocess.Popen, log_path: Path, stop_within: float) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return  # it exited by itself (the test says why)
    try:
        proc.wait(timeout=stop_within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"gunicorn did not stop on SIGTERM: {log_path.read_text()[-3000:]}")


def settings_module(monkeypatch, config: str, prefix: str, environ: Mapping[str, str]) -> dict:
    """What gunicorn reads from `config` (its module's globals) when the only variables
    starting with `prefix` are `environ`."""
    for name in [n for n in os.environ if n.startswith(prefix)]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / config))
