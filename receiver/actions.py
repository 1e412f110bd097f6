"""What the receiver decides about an alert, and how it ended. Pure: no Docker, no I/O.

A decision is a Migration (move one hot task off its node), a ScaleStep (replicas up or
down) or a Skip (why not; a FutileMove is a Skip that also holds the service's
migrations). Both actions share the `Action` base: the alert that asked, the service, and
the sentences the logs, events and service labels carry. Each carries only what its own
update needs (spec.py builds it, actuator.py makes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Union

from receiver import kinds
from receiver.model import Node, Service, Task
from receiver.alerts import Alert


def clock_of(moment: datetime) -> str:
    """The time of day a sentence shows: the logs, skips and labels are read beside
    Alertmanager's and Swarm's own UTC stamps, to the second."""
    return moment.strftime("%H:%M:%S")


class Action:
    """What both kinds of action have. Subclasses are frozen dataclasses with the fields
    `alert`, `service`, `what` and a `kind` (a kinds.KINDS name)."""
    kind: str
    alert: Alert
    service: Service
    # The rest of the sentence after the verb: "web off worker-1 (cpu 91 %): start-first, ..."
    what: str

    @property
    def sentence(self) -> str:
        return f"{kinds.BY_NAME[self.kind].doing} {self.what}"

    @property
    def plan(self) -> str:
        return f"{kinds.BY_NAME[self.kind].do} {self.what}"

    @property
    def dry_run_sentence(self) -> str:
        return f"**DRY-RUN**: would {self.plan}"


@dataclass(frozen=True)
class Migration(Action):
    """Start a new task of the service elsewhere, start-first, with the hot node (and any
    other hot node) excluded by placement constraints."""
    alert: Alert
    service: Service
    what: str
    task: Task | None  # the task being moved
    from_node: Node  # the hot node it leaves
    constraints: tuple[str, ...]  # the new Placement.Constraints
    exclusion: str  # value for the swarmguard.placement-exclusion label ("": none)
    # IDs of the nodes the new task may land on (the storm's arrival budget)
    destinations: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return kinds.MIGRATE.name


@dataclass(frozen=True)
class ScaleStep(Action):
    """Replicas more (as many as the demand needs, within bounds) or one fewer."""
    kind: str  # scale_up or scale_down
    alert: Alert
    service: Service
    what: str
    replicas: int  # the target count
    # None: placement unchanged. Otherwise the new Placement.Constraints: a scale up that
    # needs the room lifts SwarmGuard's own earlier exclusion in the same update.
    constraints: tuple[str, ...] | None = None

    @property
    def lift_exclusion(self) -> bool:
        return self.constraints is not None


@dataclass(frozen=True)
class Skip:
    alert: Alert
    reason: str
    why: str
    # False: what stands in the way passes by itself (a budget, a hot destination, another
    # alert of the service acted on): a hot task stays in line to leave its node.
    lasting: bool = True

    @property
    def sentence(self) -> str:
        return f"Ignoring {self.alert.name} for {self.alert.labels.get('service')}: {self.why}"


@dataclass(frozen=True, kw_only=True)
class FutileMove(Skip):
    """A skip that is also a finding to record: the service's last migration did not help
    (receiver/futile.py), so its migrations are held until `until`. The actuator writes
    that in the service's labels; everything else treats it as the Skip it is."""
    service: Service
    until: datetime


Decision = Union[Migration, ScaleStep, Skip]


@dataclass(frozen=True)
class Outcome:
    """How a decision ended: for a Skip, SKIPPED (or FAILED when Docker could not even be
    read); for an action, one of the results in reasons.py."""
    decision: Decision
    result: str
    duration: float | None = None  # seconds, from the update call to the end of the action
    detail: str = ""
