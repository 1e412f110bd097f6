"""Following a drain or a rebalance that the receiver carries out: GET /status every
`poll` seconds, one line per task moved, each distinct problem once, and a progress bar.

The receiver is the one that acts; following only watches. A receiver that cannot be
reached (restarted mid-drain, 5xx) is said once and polled until it answers again: it
resumes a drain from the node's labels, with an empty `moved` list, so moved tasks are
remembered here by what they are rather than by their place in that list.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TextIO

from swarmguard_cli import render
from swarmguard_cli.client import Client, Unreachable

Doc = Mapping[str, Any]

MOVING = "moving"
DRAINED = "drained"
TIMED_OUT = "timed out"
# The receiver reports no rebalance at all (one that a restart forgot, say).
VANISHED = "vanished"


@dataclass(frozen=True)
class Pace:
    poll: float          # seconds between two GET /status
    wait_timeout: float  # seconds after which following gives up (the receiver carries on)


@dataclass(frozen=True)
class View:
    """What one /status says about the work followed."""
    moved: Sequence[Doc]
    problem: str | None
    remaining: int
    activity: str
    over: str | None  # the final state once the work is over, else None


class Screen:
    """Messages, and the progress bar below them. On a terminal the bar is one line
    redrawn in place with \\r; elsewhere (a pipe, a CI log) it is printed as a line of
    its own whenever it changes."""

    def __init__(self, out: TextIO, tty: bool):
        self.out, self.tty = out, tty
        self._last: str | None = None
        self._drawn = 0  # characters on the terminal's current line (tty only)

    def say(self, text: str) -> None:
        if self.tty and self._drawn:
            self.out.write("\r" + " " * self._drawn + "\r" + text + "\n" + (self._last or ""))
            self._drawn = len(self._last or "")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def bar(self, line: str) -> None:
        if line == self._last:
            return
        self._last = line
        if self.tty:
            self.out.write("\r" + line.ljust(self._drawn))
            self._drawn = max(self._drawn, len(line))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        """End the bar's line, so that what is printed next starts on a line of its own."""
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
        self._drawn = 0
        self._last = None


def drain(client: Client, plan: Doc, screen: Screen, pace: Pace, *,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Follow the drain `plan` describes until its node is no longer moving: DRAINED, the
    state it ended in (any other; the API notes name none), or TIMED_OUT."""
    node_id, hostname = plan["node"].get("id"), plan["node"].get("hostname")
    planned = sum(len(move["tasks"]) for move in plan["moves"])

    def read(status: Doc) -> View:
        node = next((n for n in status.get("nodes") or [] if n.get("id") == node_id), None)
        drain_state = (node or {}).get("drain")
        if not drain_state:
            # /status may lag behind the 202 for a moment; a drain is never given up here.
            return View((), None, planned, f"the receiver shows no drain of {hostname} yet",
                        None)
        state = drain_state.get("state")
        problem = drain_state.get("problem")
        return View(drain_state.get("moved") or [],
                    f"{problem} (the receiver retries)" if problem else None,
                    render.remaining_tasks(drain_state.get("remaining")),
                    render.drain_activity(drain_state), None if state == MOVING else str(state))

    return _follow(client, planned, read, screen, pace, clock, sleep)


def rebalance(client: Client, plan: Doc, screen: Screen, pace: Pace, *,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> str:
    """Follow a rebalance until it is no longer running: its last state ("finished",
    "stopped"), VANISHED or TIMED_OUT."""
    planned = len(plan.get("moves") or [])

    def read(status: Doc) -> View:
        state = status.get("rebalance")
        if not state:
            return View((), None, 0, "no rebalance", VANISHED)
        running = state.get("state") == "running"
        return View(state.get("moved") or [], state.get("problem"),
                    render.remaining_tasks(state.get("remaining")),
                    "rebalancing" if running else str(state.get("state")),
                    None if running else str(state.get("state")))

    return _follow(client, planned, read, screen, pace, clock, sleep)


def _follow(client: Client, planned: int, read: Callable[[Doc], View], screen: Screen,
            pace: Pace, clock: Callable[[], float], sleep: Callable[[float], None]) -> str:
    deadline = clock() + pace.wait_timeout
    printed: set[tuple] = set()
    problems: set[str] = set()
    lost = False
    while True:
        try:
            status = client.status()
        except Unreachable as error:
            if not lost:
                screen.say(f"Cannot reach the receiver ({error}); polling until it answers "
                           f"again.")
                lost = True
        else:
            if lost:
                screen.say("The receiver answers again.")
                lost = False
            view = read(status)
            for entry in view.moved:
                # Known by what it says, not by its place: every poll repeats the list, and
                # a restarted receiver starts it empty. Another attempt at the same task
                # that ends otherwise is a line of its own.
                key = (entry.get("service"), entry.get("task"), entry.get("to"),
                       entry.get("result"))
                if key not in printed:
                    printed.add(key)
                    screen.say(render.moved_line(entry))
            if view.problem and view.problem not in problems:
                problems.add(view.problem)
                screen.say(f"Problem: {view.problem}")
            total = max(planned, view.remaining)
            screen.bar(render.progress_line(total - view.remaining, total, view.activity))
            if view.over:
                screen.close()
                return view.over
        if clock() >= deadline:
            screen.close()
            return TIMED_OUT
        sleep(pace.poll)
