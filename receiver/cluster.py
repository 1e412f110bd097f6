"""The Docker gateway on the read side: which daemon, which API version, and the swarm read
into the model (receiver/model.py).

`build_snapshot` and the `*_from_dict` converters are pure (Docker API dicts in, model
out), so decisions are tested with recorded dicts; `read_snapshot` is the one place that
reads them from Docker. Writes live in actuator.py only.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

import docker
import docker.constants
import docker.errors
import requests.exceptions
import urllib3.exceptions

from receiver.model import (HEALTHCHECK_IMAGE, HEALTHCHECK_NONE, HEALTHCHECK_SERVICE,
                            HEALTHCHECK_UNKNOWN, Mount, Node, Service, Snapshot, Task)
from swarmguard_config.rfc3339 import NotATime, parse_time

# Every way a call to Docker's API fails, each counted and retried as Docker failing: an
# error answer or a refusal (the SDK's DockerException: APIError, NotFound...), no answer
# (refused, reset, timed out), or an answer that could not be read: cut off
# (ChunkedEncodingError; urllib3's ProtocolError), badly encoded (ContentDecodingError),
# not JSON (JSONDecodeError: a proxy's HTML error page with status 200). A write that
# failed so may still have landed: the actuator reads it back.
DOCKER_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException,
                   urllib3.exceptions.HTTPError)


def build_snapshot(services: Iterable[Mapping], tasks: Iterable[Mapping],
                   nodes: Iterable[Mapping]) -> Snapshot:
    svc = [service_from_dict(s) for s in services]
    return Snapshot(
        services=MappingProxyType({s.name: s for s in svc}),
        tasks=tuple(task_from_dict(t) for t in tasks),
        nodes=MappingProxyType({n.id: n for n in map(node_from_dict, nodes)}),
    )


def service_from_dict(data: Mapping) -> Service:
    spec = data.get("Spec") or {}
    mode_spec = spec.get("Mode") or {}
    if "Global" in mode_spec:
        mode, replicas = "global", None
    elif "ReplicatedJob" in mode_spec:
        mode, replicas = "replicated-job", None
    elif "GlobalJob" in mode_spec:
        mode, replicas = "global-job", None
    else:
        # A Replicated mode without Replicas means one replica (Docker's default).
        replicated = mode_spec.get("Replicated") or {}
        mode, replicas = "replicated", int(replicated.get("Replicas", 1))
    template = spec.get("TaskTemplate") or {}
    placement = template.get("Placement") or {}
    container = template.get("ContainerSpec") or {}
    ports = (spec.get("EndpointSpec") or {}).get("Ports") or []
    return Service(
        id=data["ID"],
        name=spec.get("Name", ""),
        version=int((data.get("Version") or {}).get("Index", 0)),
        labels=MappingProxyType(dict(spec.get("Labels") or {})),
        mode=mode,
        replicas=replicas,
        constraints=tuple(placement.get("Constraints") or ()),
        max_replicas_per_node=int(placement.get("MaxReplicas") or 0),
        host_ports=any(p.get("PublishMode") == "host" for p in ports),
        update_state=(data.get("UpdateStatus") or {}).get("State"),
        mounts=tuple(mount_from_dict(m) for m in container.get("Mounts") or ()),
        healthcheck=healthcheck_of(container.get("Healthcheck")) or HEALTHCHECK_UNKNOWN,
        spec=spec,
    )


def mount_from_dict(data: Mapping) -> Mount:
    driver = ((data.get("VolumeOptions") or {}).get("DriverConfig") or {})
    kind = data.get("Type", "")
    return Mount(type=kind, source=data.get("Source") or "", target=data.get("Target") or "",
                 # Docker's default volume driver is "local", named or not.
                 driver=(driver.get("Name") or "local") if kind == "volume" else "",
                 driver_options=MappingProxyType(dict(driver.get("Options") or {})))


def healthcheck_of(config: Mapping | None, declares: str = HEALTHCHECK_SERVICE) -> str | None:
    """`declares` when a Healthcheck (of a service spec or an image) runs a test,
    HEALTHCHECK_NONE when it is disabled (["NONE"]), None when it inherits one (absent, or
    no test: the image's, or the base image's, applies)."""
    test = list((config or {}).get("Test") or ())
    if not test:
        return None
    if test[0] == "NONE":
        return HEALTHCHECK_NONE
    return declares if test[0] in ("CMD", "CMD-SHELL") else None


def image_healthcheck(api, image: str) -> str:
    """What the image a service runs declares, read from this daemon's image store.

    The manager answers only for images it holds: in a swarm an image is pulled by the
    nodes that run its tasks, so a manager that runs none of them does not have it, and
    the other nodes' stores cannot be read through a manager's API. Then: unknown.
    """
    try:
        config = (api.inspect_image(_by_digest(image)).get("Config") or {})
    except docker.errors.DockerException:  # not here (404), or a reference it refuses
        return HEALTHCHECK_UNKNOWN
    return healthcheck_of(config.get("Healthcheck"), HEALTHCHECK_IMAGE) or HEALTHCHECK_NONE


def _by_digest(image: str) -> str:
    """`name@sha256:...` for a `name:tag@sha256:...` reference (what `docker service
    create` and `docker stack deploy` pin): the form an image store finds by the digest
    it was pulled with, whatever tag it has now."""
    named, at, digest = image.partition("@")
    if not at:
        return image
    slash = named.rfind("/")
    colon = named.rfind(":")
    return f"{named[:colon] if colon > slash else named}@{digest}"


def with_image_healthcheck(service: Service, lookup) -> Service:
    """The service with its health check resolved through `lookup(image)` where the spec
    inherits the image's."""
    if service.healthcheck != HEALTHCHECK_UNKNOWN:
        return service
    image = ((service.spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image")
    return replace(service, healthcheck=lookup(image)) if image else service


def task_from_dict(data: Mapping) -> Task:
    status = data.get("Status") or {}
    slot = data.get("Slot")
    return Task(
        id=data["ID"],
        service_id=data.get("ServiceID", ""),
        node_id=data.get("NodeID", ""),
        slot=int(slot) if slot is not None else None,
        desired_state=data.get("DesiredState", ""),
        state=status.get("State", ""),
        created_at=_time_or_none(data.get("CreatedAt")),
    )


def _time_or_none(text) -> datetime | None:
    # Docker writes nanoseconds; a missing or odd value only means "not known".
    try:
        return parse_time(text, "CreatedAt")
    except NotATime:
        return None


def node_from_dict(data: Mapping) -> Node:
    spec = data.get("Spec") or {}
    desc = data.get("Description") or {}
    platform = desc.get("Platform") or {}
    return Node(
        id=data["ID"],
        hostname=desc.get("Hostname", ""),
        role=spec.get("Role", ""),
        availability=spec.get("Availability", ""),
        state=(data.get("Status") or {}).get("State", ""),
        labels=MappingProxyType(dict(spec.get("Labels") or {})),
        engine_labels=MappingProxyType(dict((desc.get("Engine") or {}).get("Labels") or {})),
        os=platform.get("OS", ""),
        arch=platform.get("Architecture", ""),
        version=int((data.get("Version") or {}).get("Index", 0)),
        manager_reachability=(data.get("ManagerStatus") or {}).get("Reachability", ""),
    )


# The oldest Docker API the receiver works with: what it reads and writes exists there
# (Placement.MaxReplicas is 1.40) and the lab proves it on Engine 20.10, which speaks 1.41.
REQUIRED_API_VERSION = "1.41"
AUTO = "auto"


@dataclass(frozen=True)
class Daemon:
    """Which Docker daemon the receiver talks to, and in which API version."""
    engine: str  # e.g. "29.0.1"
    api_version: str  # the newest API version the daemon speaks
    min_api_version: str  # the oldest it accepts (1.44 on Engine 29.0-29.2)
    using: str  # the version this client now sends

    def unusable(self) -> str | None:
        """Why the receiver cannot work with this daemon, or None."""
        if api_version_key(self.api_version) < api_version_key(REQUIRED_API_VERSION):
            return (f"Docker Engine {self.engine} speaks API {self.api_version} at most; "
                    f"the receiver needs {REQUIRED_API_VERSION} or newer")
        if api_version_key(self.using) < api_version_key(self.min_api_version):
            return (f"Docker Engine {self.engine} refuses API {self.using} (its minimum is "
                    f"{self.min_api_version}); unset SWARMGUARD_DOCKER_API_VERSION to negotiate")
        return None


def api_version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def connect(settings, client=None) -> "NegotiatingClient":
    """The receiver's client of the configured daemon (dicts in and out), which speaks the
    API version negotiated with it. Does not contact the daemon.

    SWARMGUARD_DOCKER_HOST wins; otherwise the SDK's environment defaults (DOCKER_HOST,
    TLS variables, else the local unix socket). A `client` given (a test's fake) is used
    as it is, in whatever version it speaks: negotiation then only reports the version."""
    if client is not None:
        return NegotiatingClient(lambda version: client, settings.docker_api_version)
    kwargs = docker.utils.kwargs_from_env()
    if settings.docker_host:
        kwargs["base_url"] = settings.docker_host
    return NegotiatingClient(
        lambda version: docker.APIClient(version=version, timeout=settings.docker_timeout,
                                         **kwargs),
        settings.docker_api_version)


def negotiate(api, pinned: str = AUTO) -> Daemon:
    """Ask the daemon which API versions it speaks (GET /version, unversioned, accepted by
    every engine) and choose the newest both sides know, unless a version is pinned. Raises
    what the SDK raises when Docker cannot be reached."""
    answer = api.version(api_version=False)
    server = str(answer.get("ApiVersion") or "")
    using = pinned
    if pinned == AUTO:
        newest_known = docker.constants.DEFAULT_DOCKER_API_VERSION
        using = min(server, newest_known, key=api_version_key) if server else newest_known
    return Daemon(engine=str(answer.get("Version") or "unknown"), api_version=server,
                  min_api_version=str(answer.get("MinAPIVersion") or "0"), using=using)


class NegotiatingClient:
    """docker.APIClient's calls, sent in the version negotiated with the daemon.

    No versioned request goes out before the daemon has answered GET /version: Engine
    29.0-29.2 refuses every version below 1.44 with a 400, so a first read sent in an
    assumed version (APIClient needs one to be built without calling the daemon) is
    refused. The first call made before negotiation negotiates, and the calls made
    meanwhile wait for it; when it fails they raise what the SDK raised (a Docker failure,
    DOCKER_FAILURES). `negotiate()` asks again (readiness.py, every few seconds), and a
    daemon upgraded meanwhile is spoken to in its new version from then on.
    """

    def __init__(self, client_at: Callable[[str], "docker.APIClient"], pinned: str = AUTO):
        self._client_at = client_at
        self._pinned = pinned
        # Sends GET /version only, which no engine refuses whatever version it was built for.
        self._probe = client_at(REQUIRED_API_VERSION)
        self._lock = threading.Lock()
        self._daemon: Daemon | None = None
        self._client = None

    def negotiate(self) -> Daemon:
        """Ask the daemon again (GET /version) and speak the version chosen from now on."""
        daemon = negotiate(self._probe, self._pinned)
        with self._lock:
            self._adopt(daemon)
        return daemon

    def negotiated(self) -> Daemon:
        """The daemon as last negotiated, negotiating now if it never was."""
        with self._lock:
            if self._daemon is None:
                # Asked under the lock, so that concurrent first calls negotiate once.
                self._adopt(negotiate(self._probe, self._pinned))
            return self._daemon

    def _adopt(self, daemon: Daemon) -> None:
        if self._daemon is None or self._daemon.using != daemon.using:
            self._client = self._client_at(daemon.using)
        self._daemon = daemon

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not built yet (copy, pickle): not a Docker call
            raise AttributeError(name)
        self.negotiated()
        return getattr(self._client, name)


def read_snapshot(api, service_names: Iterable[str]) -> Snapshot:
    """Read the named services (by exact name), their tasks and all nodes.

    A service that does not exist is simply absent from the snapshot: deciding what that
    means (a stale alert) is the decision functions' job.
    """
    services = []
    for name in dict.fromkeys(service_names):
        try:
            # The spec exactly as stored, never with defaults inserted: it is posted back
            # whole, and a template that gained defaults (RestartPolicy, DNSConfig) counts
            # as a changed task spec: Swarm would restart every task and stay "updating".
            data = api.inspect_service(name, insert_defaults=False)
        except docker.errors.NotFound:
            continue
        # Docker also resolves a service by ID prefix: accept only an exact name match.
        if (data.get("Spec") or {}).get("Name") == name:
            services.append(data)
    tasks = []
    for data in services:
        tasks.extend(api.tasks(filters={"service": data["ID"]}))
    snapshot = build_snapshot(services, tasks, api.nodes())
    # One image inspection per service whose spec inherits its image's health check
    # (decisions.py refuses some moves without one: receiver/safety.py).
    return replace(snapshot, services=MappingProxyType({
        name: with_image_healthcheck(s, lambda image: image_healthcheck(api, image))
        for name, s in snapshot.services.items()}))


def read_cluster(api) -> Snapshot:
    """Every service, the tasks Swarm means to run (desired state running), and every node:
    what maintenance plans from (receiver/maintenance.py). Service specs as listed: a move
    re-reads its service with read_snapshot before writing it."""
    return build_snapshot(api.services(), api.tasks(filters={"desired-state": "running"}),
                          api.nodes())


def is_ready(api, daemon: Daemon) -> tuple[bool, str]:
    """The daemon speaks an API the receiver can use, and this node is a swarm manager
    (only managers can update services)."""
    unusable = daemon.unusable()
    if unusable:
        return False, unusable
    try:
        info = api.info()
    except Exception as exc:  # any failure to reach Docker means not ready
        return False, f"docker unreachable: {exc}"
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        return False, f"node is not in a swarm (state {swarm.get('LocalNodeState')!r})"
    if not swarm.get("ControlAvailable"):
        return False, "node is a swarm worker, not a manager"
    return True, "ready"
