"""The arguments of the one `APIClient.update_service` call an action makes. Pure.

We pass the whole spec, built from the very read whose Version.Index we send, instead of
`fetch_current_spec=True`: that option reads the spec a second time, so the spec and the
version could come from two different reads. Here they cannot. Every top-level field is
passed because the SDK resets whatever is left out.
"""
from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Mapping

from receiver import labels as L
from receiver import placement
from receiver.actions import Action, Migration, ScaleStep


def update_arguments(action: Action, at: datetime) -> dict[str, Any]:
    """kwargs for update_service(service_id, version, **kwargs) carrying out `action`.

    The labels recording the action go in the same update as the change, so the cooldown
    memory is exactly as atomic as the change itself.
    """
    args = _as_read(action.service.spec)
    args["labels"] = L.action_labels(args["labels"], action.kind, at, action.sentence)
    if isinstance(action, Migration):
        _migrate(args, action)
    elif isinstance(action, ScaleStep):
        _scale(args, action)
    else:
        raise TypeError(f"no update carries out a {type(action).__name__}")
    return args


def _migrate(args: dict[str, Any], migration: Migration) -> None:
    _start_first_elsewhere(args, migration.constraints, migration.exclusion)


def move_arguments(spec: Mapping[str, Any], kind: str, constraints: tuple[str, ...],
                   exclusion: str, at: datetime, reason: str) -> dict[str, Any]:
    """kwargs for a maintenance move (receiver/maintenance.py): the service's tasks on the
    excluded node(s) replaced start-first elsewhere, the move recorded in its labels."""
    args = _as_read(spec)
    args["labels"] = L.action_labels(args["labels"], kind, at, reason)
    _start_first_elsewhere(args, constraints, exclusion)
    return args


def lift_arguments(spec: Mapping[str, Any]) -> dict[str, Any]:
    """kwargs for an update that takes SwarmGuard's exclusion off the service again: the
    user's own constraints only. Replaces no task: every task runs on a node that meets
    them (swarmkit does not restart a task for a placement change its node still meets)."""
    args = _as_read(spec)
    constraints = (((args["task_template"] or {}).get("Placement") or {})
                   .get("Constraints") or [])
    _place(args, tuple(placement.user_constraints(constraints, args["labels"])))
    args["labels"].pop(L.PLACEMENT_EXCLUSION, None)
    return args


def _start_first_elsewhere(args: dict[str, Any], constraints: tuple[str, ...],
                           exclusion: str) -> None:
    _place(args, constraints)
    if exclusion:
        args["labels"][L.PLACEMENT_EXCLUSION] = exclusion
    else:
        args["labels"].pop(L.PLACEMENT_EXCLUSION, None)
    # Start-first in this very update: stop-first (Docker's default) is seconds of
    # downtime. Rollback if the new task fails, and roll back start-first too.
    args["update_config"] = _with(args["update_config"], Order="start-first",
                                  FailureAction="rollback")
    args["rollback_config"] = _with(args["rollback_config"], Order="start-first")


def _scale(args: dict[str, Any], step: ScaleStep) -> None:
    replicated = (args["mode"] or {}).get("Replicated") or {}
    args["mode"] = {"Replicated": {**replicated, "Replicas": step.replicas}}
    if step.constraints is not None:
        _place(args, step.constraints)
        args["labels"].pop(L.PLACEMENT_EXCLUSION, None)


def _place(args: dict[str, Any], constraints: tuple[str, ...]) -> None:
    template = args["task_template"]
    template["Placement"] = {**(template.get("Placement") or {}),
                             "Constraints": list(constraints)}


def record_arguments(spec: Mapping[str, Any], kind: str, at: datetime, reason: str
                     ) -> dict[str, Any]:
    """kwargs for an update that only records an action in the labels. Changes no task
    (swarmkit reschedules nothing when only service labels change)."""
    args = _as_read(spec)
    args["labels"] = L.action_labels(args["labels"], kind, at, reason)
    return args


def futile_arguments(spec: Mapping[str, Any], until: datetime) -> dict[str, Any]:
    """kwargs for a labels-only update holding the service's migrations until `until`
    (receiver/futile.py). Changes no task, and leaves the action history as it is."""
    args = _as_read(spec)
    args["labels"] = L.futile_labels(args["labels"], until)
    return args


def _as_read(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every top-level field of the spec as update_service kwargs, deep-copied."""
    spec = copy.deepcopy(dict(spec))
    task_template = spec.get("TaskTemplate") or {}
    # Pre-1.25 specs kept networks at the top level; the SDK would drop them there.
    if spec.get("Networks") and not task_template.get("Networks"):
        task_template["Networks"] = spec["Networks"]
    return {
        "name": spec.get("Name"),
        "labels": dict(spec.get("Labels") or {}),
        "mode": spec.get("Mode"),
        "task_template": task_template,
        "update_config": spec.get("UpdateConfig"),
        "rollback_config": spec.get("RollbackConfig"),
        "endpoint_spec": spec.get("EndpointSpec"),
    }


def _with(config: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    new = dict(config or {})
    # Parallelism 0 means "all tasks at once"; an absent config means Docker's default of 1.
    new.setdefault("Parallelism", 1)
    new.update(changes)
    return new
