"""The three kinds of action, each defined once: the alert that asks for it, the labels
that alert must carry, how a log sentence names it, which setting holds its cooldown and
which service label remembers when it last happened. Every other module reads these.

The alert names and labels are SwarmGuard's public contract (docs/contract.md, "Alerts").
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Kind:
    name: str  # what events, metrics and labels call it: migrate, scale_up, scale_down
    alert: str  # the alert that asks for it
    required_labels: tuple[str, ...]  # the alert's labels the receiver cannot act without
    doing: str  # "Migrating web off worker-1 ..."
    do: str  # "would migrate web off worker-1 ...", "cooldown, last migrate 12 s ago"
    noun: str  # "Migration of web off worker-1 rolled back after 3.0 s"
    cooldown_setting: str  # the Settings field (SWARMGUARD_COOLDOWN_<NAME>)
    last_at_label: str  # the service label with the time of the last action of this kind


MIGRATE = Kind("migrate", "SwarmGuardMigrate", ("service", "task_id", "node_id"),
               "Migrating", "migrate", "Migration", "cooldown_migrate",
               "swarmguard.last-migrate-at")
SCALE_UP = Kind("scale_up", "SwarmGuardScaleUp", ("service",),
                "Scaling up", "scale up", "Scale-up", "cooldown_scale_up",
                "swarmguard.last-scale-up-at")
SCALE_DOWN = Kind("scale_down", "SwarmGuardScaleDown", ("service",),
                  "Scaling down", "scale down", "Scale-down", "cooldown_scale_down",
                  "swarmguard.last-scale-down-at")
KINDS = (MIGRATE, SCALE_UP, SCALE_DOWN)

BY_ALERT: Mapping[str, Kind] = MappingProxyType({k.alert: k for k in KINDS})
BY_NAME: Mapping[str, Kind] = MappingProxyType({k.name: k for k in KINDS})
