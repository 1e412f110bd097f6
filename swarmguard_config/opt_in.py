"""The service label that opts a service in to SwarmGuard, and how its value is read.

One definition for the two images that need it (each ships this package, neither the
other's): the receiver acts only on opted-in services, and the exporter on a manager
publishes which services are opted in (exporter/opt_in.py), for the rules to judge only
their tasks.
"""
from __future__ import annotations

from collections.abc import Mapping

ENABLE = "swarmguard.enable"  # "true" opts a service in; nothing else is ever touched


def opted_in(labels: Mapping[str, str]) -> bool:
    """Whether a service's labels opt it in: "true" in any case, spaces around it ignored."""
    return labels.get(ENABLE, "").strip().lower() == "true"
