"""Placement constraints: which nodes a service may run on, and the constraint a migration adds.

Pure. Matching follows swarmkit (manager/constraint): keys case-insensitive, values
compared case-insensitively, `==` and `!=` only, a missing node label compares as "".

SwarmGuard's own exclusions are recognised by the service label PLACEMENT_EXCLUSION (the
constraints, comma-separated), written in the same update as the constraints: the next
migration removes exactly those and adds its own set (the node it leaves and any node hot
at that moment), so exclusions are replaced, never accumulated, and the user's constraints
(even one that looks like ours) are never touched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from receiver.model import Node
from receiver.labels import PLACEMENT_EXCLUSION

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(==|!=)\s*(.*?)\s*$")


class UnknownConstraint(ValueError):
    """A constraint this module cannot evaluate; callers treat the node as not eligible."""


@dataclass(frozen=True)
class Constraint:
    key: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        raise UnknownConstraint(f"cannot parse constraint {text!r}")
    return Constraint(m.group(1), m.group(2), m.group(3))


def _node_value(node: Node, key: str) -> str:
    lower = key.lower()
    if lower == "node.id":
        return node.id
    if lower == "node.hostname":
        return node.hostname
    if lower == "node.role":
        return node.role
    if lower == "node.platform.os":
        return node.os
    if lower == "node.platform.arch":
        return node.arch
    # Label names are case-sensitive in swarmkit, only the prefix is not.
    if lower.startswith("node.labels."):
        return node.labels.get(key[len("node.labels."):], "")
    if lower.startswith("engine.labels."):
        return node.engine_labels.get(key[len("engine.labels."):], "")
    raise UnknownConstraint(f"unknown constraint key {key!r}")


def satisfies(node: Node, constraints: Iterable[str]) -> bool:
    """True if the node meets every constraint. Raises UnknownConstraint if one cannot be
    evaluated: guessing could send a task to a node where it can never start."""
    for text in constraints:
        c = parse(text)
        equal = _node_value(node, c.key).lower() == c.value.lower()
        if equal != (c.op == "=="):
            return False
    return True


def _same(a: str, b: str) -> bool:
    return a.replace(" ", "") == b.replace(" ", "")


# Separates the constraints in PLACEMENT_EXCLUSION. Ours are node.hostname!=... and
# node.id!=..., and neither a hostname nor a node ID can hold a comma.
EXCLUSION_SEPARATOR = ","


def recorded_exclusions(labels: Mapping[str, str]) -> list[str]:
    """SwarmGuard's earlier exclusions, as recorded in the service's labels."""
    return [c for c in labels.get(PLACEMENT_EXCLUSION, "").split(EXCLUSION_SEPARATOR) if c.strip()]


def user_constraints(constraints: Sequence[str], labels: Mapping[str, str]) -> list[str]:
    """The service's constraints without SwarmGuard's earlier exclusions."""
    ours = recorded_exclusions(labels)
    return [c for c in constraints if not any(_same(c, o) for o in ours)]


def exclusion_for(node: Node, nodes: Iterable[Node]) -> str:
    """The constraint that keeps tasks off `node`: by hostname, readable in
    `docker service inspect` and in the lab's names; by id when the hostname is not unique."""
    same_name = [n for n in nodes if n.hostname and n.hostname == node.hostname]
    if node.hostname and len(same_name) <= 1:
        return f"node.hostname!={node.hostname}"
    return f"node.id!={node.id}"


def migrate_constraints(constraints: Sequence[str], labels: Mapping[str, str],
                        exclusions: Sequence[str]) -> tuple[list[str], str]:
    """New Placement.Constraints for a migration, and the value for PLACEMENT_EXCLUSION.

    Keeps the user's constraints in order, drops SwarmGuard's earlier exclusions, appends
    the new ones. An exclusion the user already has is theirs: it is not added again nor
    recorded, so a later migration will not remove it.
    """
    kept = user_constraints(constraints, labels)
    added = []
    for exclusion in exclusions:
        if not any(_same(c, exclusion) for c in kept + added):
            added.append(exclusion)
    return kept + added, EXCLUSION_SEPARATOR.join(added)
