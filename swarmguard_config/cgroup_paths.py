"""Where a process's cgroups are: `/proc/<pid>/cgroup` read as {controller: path}.

Shared by the exporter, which finds a task container's cgroup from its process
(exporter/cgroups.py), and the stress app, which finds its own to read its limits
(stress/cgroup.py); each image ships this package beside its own, neither the other's.
Pure: text in, paths out.
"""
from __future__ import annotations


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/<pid>/cgroup` as {controller: path}; cgroup v2's line is under "".

    Each line is `hierarchy-ID:controllers:path`: cgroup v1 names its hierarchy's
    controllers, comma-separated ("cpu,cpuacct", "name=systemd"), and cgroup v2 none
    ("0::/path"). The path is everything after the second colon, colons and all. A line
    that is not three fields is passed over; spaces around a line are not part of it.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        # An empty name between commas is no controller, and never cgroup v2's "".
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths
