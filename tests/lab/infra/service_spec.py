"""Pure reads of a Swarm service as the Engine API describes it (`inspect_service`, a
docker-py Service's `attrs`): one place that knows where the replica count lives."""
from __future__ import annotations

from typing import Mapping


def desired_replicas(service_attrs: Mapping) -> int | None:
    """The replica count the spec asks for; None for a global service (no count)."""
    mode = service_attrs.get("Spec", {}).get("Mode", {})
    return mode.get("Replicated", {}).get("Replicas")
