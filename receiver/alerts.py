"""An alert as the receiver acts on it: the domain type, apart from the wire format.

Pure and without I/O: the decisions, storm control and the rest of the core read alerts
from here; the webhook parser (payload.py) checks Alertmanager's JSON and builds them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Mapping

from receiver import kinds

# Which action each alert asks for.
KIND_OF_ALERT: Mapping[str, str] = MappingProxyType({k.alert: k.name for k in kinds.KINDS})

FIRING = "firing"
RESOLVED = "resolved"

# Optional annotations an alert rule may add, in percent (docs/contract.md, "Alerts"): a
# migrate alert's heat is the higher of CPU and memory (storm.heat_of), and all three are
# the evidence its log sentence shows (decisions.py).
CPU_PERCENT = "cpu_percent"
MEMORY_PERCENT = "memory_percent"
NETWORK_PERCENT = "network_percent"


@dataclass(frozen=True)
class Alert:
    name: str
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str
    generator_url: str = ""

    @property
    def kind(self) -> str:
        return KIND_OF_ALERT[self.name]

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    @property
    def service(self) -> str:
        return self.labels["service"]

    @property
    def task_id(self) -> str | None:
        return self.labels.get("task_id")

    @property
    def node_id(self) -> str | None:
        return self.labels.get("node_id")

    @cached_property
    def instance(self) -> bytes:
        """One alert instance: the same alert (by its labels) that started at the same
        time, as a 16-byte digest, so that remembering it (worker.RecentlyHandled) costs
        the same whatever the labels hold and keeps none of them alive. Labels hold no NUL
        (no control character: the parser checks), so NUL-separated they read back one way
        only. Computed once: an Alert from payload.ParseCache serves every resend of its
        webhook."""
        fields = [self.name, *(text for item in sorted(self.labels.items()) for text in item),
                  self.starts_at.isoformat()]
        text = "\0".join(fields).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=16).digest()
