"""Starts, replaces, expires and stops the stress processes of one app.

One run per kind (cpu, memory, network): a new stress of a kind replaces the old one,
so two requests never stack up. Every run ends at its deadline three ways over: the
processes exit on their own (workers.py), a timer here reaps them, and stop()/SIGTERM
end them at once.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field

from stress.jobs import Plan

log = logging.getLogger(__name__)

# The processes exit at the deadline by themselves; the reaper comes a little later
# and only has to collect them (or kill a straggler).
REAP_GRACE_S = 0.5

_controllers: "weakref.WeakSet[StressController]" = weakref.WeakSet()


def stop_all() -> None:
    """Stop every stress of every controller in this process: for SIGTERM/exit hooks
    (gunicorn's worker_exit, atexit)."""
    for controller in list(_controllers):
        controller.stop()


def _preload() -> list[str]:
    """Modules the fork server imports once, before forking any child.

    Each child re-imports the parent's main script (multiprocessing's rule) unless the
    server already did: under `gunicorn` or `pytest` run as scripts that is an import
    per child. Preloading "__main__" makes it once. Under `python -m gunicorn` there
    is nothing to do (a package __main__ is never re-imported).
    """
    modules = ["stress.workers"]
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is None and main_file and os.path.isfile(main_file):
        modules.insert(0, "__main__")
    return modules


@dataclass
class _Run:
    id: int
    plan: Plan
    processes: list
    progress: list
    errors: list
    started_at: float  # wall clock, for humans
    deadline: float  # monotonic
    timer: threading.Timer | None = field(default=None, repr=False)


class StressController:
    def __init__(self, start_method: str = "forkserver", stop_timeout_s: float = 2.0):
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The server imports the workers once; each child is a cheap fork of it.
            self._context.set_forkserver_preload(_preload())
        self._stop_timeout_s = stop_timeout_s
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._ids = itertools.count(1)
        _controllers.add(self)

    def start(self, plan: Plan) -> dict:
        """Start a plan, replacing a running stress of the same kind."""
        with self._lock:
            replaced = self._runs.pop(plan.kind, None)
            if replaced is not None:
                log.info("Replacing the running %s stress with a new one", plan.kind)
                self._halt(replaced)
            run = self._launch(plan)
            self._runs[plan.kind] = run
        log.info(
            "Started %s stress for %g s: %s", plan.kind, plan.duration_s, plan.description
        )
        return {**self._describe(run), "replaced": replaced is not None}

    def stop(self, kinds=None) -> list[str]:
        """Stop the given kinds (default: all) now; returns the kinds that were running."""
        with self._lock:
            chosen = [k for k in (kinds or list(self._runs)) if k in self._runs]
            runs = [self._runs.pop(k) for k in chosen]
            for run in runs:
                self._halt(run)
        if chosen:
            log.info("Stopped %s stress", ", ".join(chosen))
        return chosen

    def status(self) -> dict:
        with self._lock:
            return {kind: self._describe(run) for kind, run in self._runs.items()}

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for run in self._runs.values() for p in run.processes]

    def _launch(self, plan: Plan) -> _Run:
        deadline = time.monotonic() + plan.duration_s
        run = _Run(
            id=next(self._ids), plan=plan, processes=[], progress=[], errors=[],
            started_at=time.time(), deadline=deadline,
        )
        try:
            for index, job in enumerate(plan.jobs):
                # lock=False: one writer (the child), and an aligned double is read whole.
                progress = self._context.Value("d", 0.0, lock=False)
                errors = self._context.Value("d", 0.0, lock=False)
                process = self._context.Process(
                    target=job.target,
                    name=f"stress-{plan.kind}-{index}",
                    kwargs=dict(
                        job.kwargs, deadline=deadline, owner_pid=os.getpid(),
                        progress=progress, errors=errors,
                    ),
                    # daemon: multiprocessing terminates them if this process exits.
                    daemon=True,
                )
                process.start()
                run.processes.append(process)
                run.progress.append(progress)
                run.errors.append(errors)
        except BaseException:
            self._halt(run)
            raise
        run.timer = threading.Timer(
            plan.duration_s + REAP_GRACE_S, self._expire, args=(plan.kind, run.id)
        )
        run.timer.daemon = True
        run.timer.start()
        return run

    def _expire(self, kind: str, run_id: int) -> None:
        with self._lock:
            run = self._runs.get(kind)
            if run is None or run.id != run_id:
                return  # already stopped or replaced
            del self._runs[kind]
            self._halt(run)
        log.info("The %s stress reached its duration and ended", kind)

    def _halt(self, run: _Run) -> None:
        if run.timer is not None and run.timer is not threading.current_thread():
            run.timer.cancel()
        for process in run.processes:
            if process.is_alive():
                process.terminate()
        for process in run.processes:
            process.join(self._stop_timeout_s)
            if process.is_alive():
                log.warning("Stress process %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.join(self._stop_timeout_s)

    def _describe(self, run: _Run) -> dict:
        return {
            "kind": run.plan.kind,
            "params": run.plan.description,
            "started_at": run.started_at,
            "remaining_s": round(max(0.0, run.deadline - time.monotonic()), 3),
            "pids": [p.pid for p in run.processes],
            "alive": sum(1 for p in run.processes if p.is_alive()),
            "progress": {
                run.plan.progress_unit: round(sum(v.value for v in run.progress), 4)
            },
            "errors": int(sum(v.value for v in run.errors)),
        }
