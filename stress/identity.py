"""Who is answering: the task, node and service names put on every response.

The stack sets these from Swarm templates, e.g.
    SWARM_TASK_NAME={{.Task.Name}}      SWARM_TASK_ID={{.Task.ID}}
    SWARM_NODE_HOSTNAME={{.Node.Hostname}}  SWARM_NODE_ID={{.Node.ID}}
    SWARM_SERVICE_NAME={{.Service.Name}}
so a probe going through the entry point can attribute every request (and see the
moment a migrated task takes over). Outside Swarm the container hostname stands in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Mapping

UNKNOWN = "unknown"


def _hostname() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Identity:
    hostname: str = field(default_factory=_hostname)
    task: str = ""
    node: str = ""
    service: str = ""
    task_id: str = ""
    node_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Identity":
        hostname = _hostname()
        return cls(
            hostname=hostname,
            # A Swarm container's hostname is its container ID: the best stand-in for
            # the task. For the node it is a guess, but better than nothing.
            task=env.get("SWARM_TASK_NAME") or hostname,
            node=env.get("SWARM_NODE_HOSTNAME") or hostname,
            service=env.get("SWARM_SERVICE_NAME") or UNKNOWN,
            task_id=env.get("SWARM_TASK_ID", ""),
            node_id=env.get("SWARM_NODE_ID", ""),
        )

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Swarm-Task": self.task or self.hostname,
            "X-Swarm-Node": self.node or self.hostname,
            "X-Swarm-Service": self.service or UNKNOWN,
            "X-Hostname": self.hostname,
        }
        # IDs are what the alerts carry (task_id, node_id): sent only when known.
        if self.task_id:
            headers["X-Swarm-Task-Id"] = self.task_id
        if self.node_id:
            headers["X-Swarm-Node-Id"] = self.node_id
        return headers
