"""Futile moves: a migration that did not help is not made again for a while. Pure.

SwarmGuardMigrate means "hot, yet quiet on the network: starved by its node". A task whose
heat is its own work (a CPU or memory limit too small for it) is hot on every node, and
moving it only restarts it elsewhere, once per migrate cooldown, for ever (measured: four
moves in 240 s, worker-1 -> worker-2 -> worker-1 ...). So when a SwarmGuardMigrate names
the replacement of the service's last migration, hot on the node it was moved to, within
`futile_window` seconds of that migration, the move did not help, and the service is not
migrated again for `futile_window` seconds. The hold is kept in the service's
`swarmguard.futile-until` label (labels.py): it survives a restart of the receiver and
every receiver sees it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from receiver.kinds import MIGRATE
from receiver.labels import History
from receiver.model import Task


def held_until(history: History, now: datetime) -> datetime | None:
    """Until when the service's migrations are held, or None when they are not."""
    until = history.futile_until
    return until if until is not None and now < until else None


def replacement_hot_again(task: Task | None, history: History, window: float,
                          now: datetime) -> bool:
    """Whether a migrate alert about `task` (running on the alert's node: decisions.py
    checked that) shows that the service's last migration did not help: its last action
    was that migration, at most `window` seconds ago, and the task was created after it,
    so it is the moved task's replacement, hot on its new node.

    A task that ran before the migration (another replica, on another node) is not: its
    heat says nothing about the move. The creation time is the Swarm manager's clock and
    the migration's stamp the receiver's; the receiver runs on a manager, and the
    replacement is created after the update call returns, so clock skew between managers
    would have to exceed that call's duration to hide a replacement (then the next move
    is made, as without this check).
    """
    moved_at = history.kind_at.get(MIGRATE.name)
    if history.last_kind != MIGRATE.name or moved_at is None:
        return False
    if (now - moved_at).total_seconds() >= window:
        return False
    return task is not None and task.created_at is not None and task.created_at > moved_at


def hold_until(now: datetime, window: float) -> datetime:
    # Counted from the finding, not from the migration: a task hot wherever it runs is
    # then moved at most once per window (move, found hot again, held a whole window,
    # moved once more), and an operator reading the label gets the full window to act
    # before SwarmGuard tries again.
    return now + timedelta(seconds=window)
