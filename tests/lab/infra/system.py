"""Running commands and daemons for the lab, with progress a person can follow."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import procfs

_START = time.monotonic()


def say(message: str) -> None:
    """One progress line: elapsed seconds since the controller started, then the step."""
    print(f"[lab {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


class LabError(RuntimeError):
    """The lab could not do what it was asked; the message says what and why."""


def run(cmd: list[str], *, check: bool = True, capture: bool = True, env: dict | None = None,
        input: bytes | None = None, timeout: float | None = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=capture, env=env, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip()
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return proc


def output(cmd: list[str], **kw) -> str:
    return run(cmd, **kw).stdout.decode().strip()


def in_netns(netns: str, cmd: list[str]) -> list[str]:
    # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup
    # mounts, and dockerd then dies with "Devices cgroup isn't mounted".
    return ["nsenter", f"--net=/run/netns/{netns}", *cmd]


def start_daemon(cmd: list[str], *, pidfile: Path, logfile: Path, env: dict | None = None) -> int:
    """Start a long-running process in its own session, record its PID, return it."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None, expect_in_cmdline: str | None = None) -> bool:
    """True if the PID runs and (when given) its command line mentions the expected word,
    so that a recycled PID is never mistaken for ours."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if procfs.state(pid) == "Z":
            return False
    except FileNotFoundError:
        return False
    return expect_in_cmdline is None or expect_in_cmdline in cmdline


def _threads_exiting(pid: int) -> bool:
    """A multi-threaded process's leader turns zombie before its other threads are gone,
    and until they are its sockets stay open: a restart on the same port then fails with
    "address already in use" (seen with cAdvisor)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def stop_pid(pid: int | None, expect_in_cmdline: str, timeout: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL; only if the PID is still the process we started."""
    if not alive(pid, expect_in_cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid) and not _threads_exiting(pid):
            return
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if alive(pid, expect_in_cmdline):
        os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, predicate, timeout: float = 60.0, interval: float = 0.25):
    """Poll until predicate() returns something truthy; raise LabError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing is still coming up
            last_error = exc
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}"
                   + (f" (last error: {last_error})" if last_error else ""))
