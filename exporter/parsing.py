"""Turn cAdvisor's ``/api/v1.3/docker`` answer into the swarm tasks it describes.

Pure functions over decoded JSON, kept apart from HTTP so that a response captured from a
real cAdvisor can be checked against them. Parsing is tolerant: a container this module
cannot read is left out (and counted by the collector), it never fails the whole scrape.
Only the top-level shape is required.

The shape read here (cAdvisor ``info/v1`` ``ContainerInfo``, abridged)::

    {"/docker/<id>": {
        "id": "<id>", "name": "/docker/<id>", "aliases": ["<name>", "<id>"],
        "spec": {"labels": {"com.docker.swarm.service.name": "web", ...}, ...},
        "stats": [{"timestamp": "2024-05-14T10:21:07.123456789Z",
                   "network": {"name": "eth0", "rx_bytes": 1, "tx_bytes": 2, ...,
                               "interfaces": [{"name": "eth0", "rx_bytes": 1, ...}, ...]},
                   ...}, ...]},
     ...}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from exporter.rates import NetworkSample

# Labels Docker puts on every swarm task's container. Containers without the first three
# are not swarm tasks (cAdvisor itself, `docker run` containers) and are ignored.
SERVICE_LABEL = "com.docker.swarm.service.name"
TASK_ID_LABEL = "com.docker.swarm.task.id"
NODE_ID_LABEL = "com.docker.swarm.node.id"
TASK_NAME_LABEL = "com.docker.swarm.task.name"


class BadPayload(ValueError):
    """The answer is not a collection of containers at all."""


@dataclass(frozen=True)
class TaskContainer:
    service: str
    task_id: str
    node_id: str
    task_name: str
    container_id: str
    samples: tuple[NetworkSample, ...]  # oldest first


def parse_timestamp(text: str) -> float:
    """Unix seconds from Go's RFC 3339 time (nanoseconds, 'Z' or an offset)."""
    moment = datetime.fromisoformat(text)  # Python >= 3.11 reads 'Z' and 9 fraction digits
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _counter(value: object) -> int | None:
    # bool is an int in Python; a counter never is one.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def network_sample(stat: Mapping[str, object]) -> NetworkSample | None:
    """Receive and transmit bytes summed over the container's interfaces, or None.

    cAdvisor lists every interface of the container's network namespace in
    ``network.interfaces`` (a swarm task usually has one per attached network); the
    counters at the top of ``network`` are only a copy of the first one, so they are used
    only when no list is given.
    """
    try:
        timestamp = parse_timestamp(stat["timestamp"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None
    network = stat.get("network")
    if not isinstance(network, Mapping):
        return None
    interfaces = network.get("interfaces")
    if not isinstance(interfaces, list) or not interfaces:
        interfaces = [network]
    rx_total = tx_total = 0
    for interface in interfaces:
        if not isinstance(interface, Mapping):
            return None
        rx, tx = _counter(interface.get("rx_bytes")), _counter(interface.get("tx_bytes"))
        if rx is None or tx is None:
            return None
        rx_total += rx
        tx_total += tx
    return NetworkSample(timestamp=timestamp, rx_bytes=rx_total, tx_bytes=tx_total)


def _container_id(info: Mapping[str, object]) -> str:
    identifier = info.get("id")
    if isinstance(identifier, str) and identifier:
        return identifier
    name = info.get("name")
    return name.rsplit("/", 1)[-1] if isinstance(name, str) else ""


def _task_name(info: Mapping[str, object], labels: Mapping[str, object]) -> str:
    name = labels.get(TASK_NAME_LABEL)
    if isinstance(name, str) and name:
        return name
    aliases = info.get("aliases")
    if isinstance(aliases, list) and aliases and isinstance(aliases[0], str):
        return aliases[0]
    return ""


def task_container(info: object) -> TaskContainer | None:
    """The swarm task described by one ``ContainerInfo``; None if it is not a swarm task."""
    if not isinstance(info, Mapping):
        return None
    spec = info.get("spec")
    labels = spec.get("labels") if isinstance(spec, Mapping) else None
    if not isinstance(labels, Mapping):
        return None
    identity = [labels.get(key) for key in (SERVICE_LABEL, TASK_ID_LABEL, NODE_ID_LABEL)]
    if not all(isinstance(value, str) and value for value in identity):
        return None
    service, task_id, node_id = identity
    stats = info.get("stats")
    samples: list[NetworkSample] = []
    if isinstance(stats, list):
        for stat in stats:
            sample = network_sample(stat) if isinstance(stat, Mapping) else None
            if sample is not None:
                samples.append(sample)
    samples.sort(key=lambda sample: sample.timestamp)
    return TaskContainer(
        service=service,
        task_id=task_id,
        node_id=node_id,
        task_name=_task_name(info, labels),
        container_id=_container_id(info),
        samples=tuple(samples),
    )


def task_containers(payload: object) -> list[TaskContainer]:
    """Every swarm task container in the answer; raises BadPayload if it is not one.

    The v1.3 docker endpoint answers an object keyed by container name; a list of
    ``ContainerInfo`` (what the subcontainers endpoint answers) is read as well.
    """
    containers: Iterable[object]
    if isinstance(payload, Mapping):
        containers = payload.values()
    elif isinstance(payload, list):
        containers = payload
    else:
        raise BadPayload(f"expected a JSON object of containers, got {type(payload).__name__}")
    found = (task_container(info) for info in containers)
    return [task for task in found if task is not None]
