"""The soak's faults, made with the lab's own parts and undone in `finally`.

Each function breaks one thing at once, keeps it broken for the fault's duration, repairs
it, and returns (when it broke, when it was repaired). Nothing here aims traffic outside
the lab: a network cut is the node's own veth set down on the lab's bridge.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

from ..lab.config import LabConfig
from ..lab.infra import cli, monitoring, nodes
from ..lab.infra.receiver_proc import ReceiverProcess
from ..lab.infra.system import read_pid, run, say, wait_for
from ..lab.instruments.events import read_events
from . import model as M
from .model import Fault

SIGTERM_WAIT_FOR_ACTION_S = 150.0  # how long a SIGTERM fault waits for an action to hit
# A drain is followed this long at most (a move that failed leaves it waiting for an undrain).
FOLLOW = ("--wait-timeout", "240")


class ReceiverSlot:
    """The soak's one live receiver, replaced by the receiver faults."""

    def __init__(self, cfg: LabConfig, **settings):
        self.cfg, self.settings = cfg, settings
        self.current: ReceiverProcess | None = None
        self.log_offset = 0  # where the soak's runs begin in the shared log

    def start(self) -> ReceiverProcess:
        self.current = ReceiverProcess(self.cfg, **self.settings).start()
        return self.current

    def begin(self) -> ReceiverProcess:
        receiver = self.start()
        self.log_offset = receiver.log_offset
        return receiver

    def events(self) -> list[dict]:
        """Every event of every receiver run of the soak, in order."""
        assert self.current is not None
        return read_events(self.current.log_path, self.log_offset)

    def acting(self) -> bool:
        """An action of the live run is under way: decided, no outcome yet."""
        assert self.current is not None
        events = read_events(self.current.log_path, self.current.log_offset)
        open_ = 0
        for e in events:
            if e["type"] == "decision" and e["result"] == "act":
                open_ += 1
            elif e["type"] == "outcome":
                open_ = max(0, open_ - 1)
        return open_ > 0


def _hold(duration_s: float) -> None:
    time.sleep(duration_s)


def _pid_kill(cfg: LabConfig, name: str) -> None:
    pid = read_pid(cfg.run_dir / f"{name}.pid")
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(f"{name} gone", lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=30)
    (cfg.run_dir / f"{name}.pid").unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def apply(cfg: LabConfig, fault: Fault, receiver: ReceiverSlot) -> tuple[float, float, str]:
    """Make `fault` happen now; (broken at, repaired at, a note) in Unix seconds."""
    node = cfg.node(fault.node) if fault.node else None
    kind = fault.kind
    if kind == M.RECEIVER_KILL:
        return _span(lambda: receiver.current.kill(), receiver.start, fault.duration_s)
    if kind == M.RECEIVER_SIGTERM:
        # During an action: what a rolling upgrade of the receiver does to one in flight.
        note = "during an action"
        try:
            wait_for("an action under way, to stop the receiver in", receiver.acting,
                     timeout=SIGTERM_WAIT_FOR_ACTION_S, interval=0.1)
        except Exception:
            note = f"no action came within {SIGTERM_WAIT_FOR_ACTION_S:g} s: stopped idle"
            say(note)
        broken = time.time()
        proc = receiver.current.proc
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        receiver.start()
        return broken, time.time(), note
    if kind == M.PROMETHEUS_RESTART:
        return _span(lambda: monitoring.stop(cfg, f"prometheus-{node.name}"),
                     lambda: monitoring.start_prometheus(cfg), fault.duration_s)
    if kind == M.CENTRAL_PROMETHEUS_RESTART:
        return _span(lambda: monitoring.stop(cfg, "prometheus"),
                     lambda: monitoring.start_prometheus(cfg), fault.duration_s)
    if kind == M.ALERTMANAGER_RESTART:
        return _span(lambda: monitoring.stop(cfg, "alertmanager-peer"),
                     lambda: monitoring.start_alertmanager(cfg), fault.duration_s)
    if kind == M.DOCKERD_STOP:
        def repair() -> None:
            nodes.start_dockerd(cfg, node)
            nodes.wait_dockerd(cfg, node)
            # In the bundle cAdvisor is a container of this dockerd: it comes back with it,
            # and settles its Docker factory afresh (monitoring.restart_cadvisor).
            monitoring.restart_cadvisor(cfg, node)
        return _span(lambda: nodes.stop_dockerd(cfg, node), repair, fault.duration_s)
    if kind == M.NETWORK_CUT:
        return _span(lambda: run(["ip", "link", "set", node.host_veth, "down"]),
                     lambda: run(["ip", "link", "set", node.host_veth, "up"]), fault.duration_s)
    if kind == M.DRAIN:
        def drain() -> None:
            url = receiver.current.url
            result = cli.swarmguard(cfg, url, "drain", node.name, *FOLLOW, timeout=600)
            if result.exit_code == 1:
                # Refused: tasks there nothing else may take (the hog pinned to its node, a
                # local volume). An operator who must empty the node says --force; Swarm
                # then stops those itself.
                result = cli.swarmguard(cfg, url, "drain", node.name, "--force", *FOLLOW, timeout=600)
            if result.exit_code != 0:
                say(f"swarmguard drain {node.name} exited {result.exit_code}")

        def undrain() -> None:
            result = cli.swarmguard(cfg, receiver.current.url, "undrain", node.name, timeout=600)
            if result.exit_code != 0:
                say(f"swarmguard undrain {node.name} exited {result.exit_code}")
        return _span(drain, undrain, fault.duration_s)
    if kind == M.EXPORTER_KILL:
        return _span(lambda: _pid_kill(cfg, f"exporter-{node.name}"),
                     lambda: monitoring.start_exporter(cfg, node), fault.duration_s)
    raise ValueError(f"unknown fault kind {kind!r}")


def _span(break_it: Callable[[], object], repair: Callable[[], object],
          duration_s: float) -> tuple[float, float, str]:
    broken = time.time()
    try:
        break_it()
        _hold(duration_s)
    finally:
        repair()
    return broken, time.time(), ""
