"""The `swarmguard` command line as an operator runs it: the venv's console script, against
a receiver on the host, its output streamed as the lab's progress and kept."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import PROJECT_ROOT, LabConfig
from .system import LabError, say


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    exit_code: int | None  # None: still running after the timeout (then stopped)
    seconds: float
    output: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def command() -> list[str]:
    """The installed console script (pyproject's [project.scripts]): what `pip install`
    gives an operator."""
    script = Path(sys.executable).with_name("swarmguard")
    if not script.exists():
        raise LabError(f"{script} is not installed: `make venv` installs the project")
    return [str(script)]


def start(cfg: LabConfig, url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*command(), "--url", url, "--token-file", str(cfg.token_file), *args],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace",
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def swarmguard(cfg: LabConfig, url: str, *args: str, timeout: float = 600.0) -> Run:
    """Run `swarmguard --url URL --token-file <the lab's> ARGS` to its end."""
    say("$ swarmguard " + " ".join(args))
    started = time.monotonic()
    proc = start(cfg, url, *args)
    lines: list[str] = []
    echo = threading.Thread(target=_echo, args=(proc.stdout, lines), daemon=True)
    echo.start()
    code: int | None = None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    echo.join(timeout=5)
    return Run(tuple(args), code, time.monotonic() - started, tuple(lines))


def _echo(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))
        say(f"  | {lines[-1]}")
