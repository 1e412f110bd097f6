"""Test doubles shaped like Docker's API answers, for unit tests and for driving the
receiver without a swarm (e.g. a webhook throughput benchmark in dry-run mode).

`FakeDockerAPI` answers the few `docker.APIClient` calls the receiver makes and raises
AssertionError on any other, so a test fails loudly when the code starts doing something
new. `update_service` is a real compare-and-swap on the stored Version.Index.
The dict builders produce the shape Docker Engine 20.10 (API 1.41) returns.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Iterable

import docker.errors
import requests
import urllib3.exceptions


def node_dict(node_id: str, hostname: str, role: str = "worker", availability: str = "active",
              state: str = "ready", labels: dict | None = None) -> dict:
    return {
        "ID": node_id,
        "Version": {"Index": 9},
        "Spec": {"Labels": dict(labels or {}), "Role": role, "Availability": availability},
        "Description": {
            "Hostname": hostname,
            "Platform": {"Architecture": "x86_64", "OS": "linux"},
            "Engine": {"EngineVersion": "20.10.24", "Labels": {}},
        },
        "Status": {"State": state, "Addr": "10.200.0.2"},
    }


def service_dict(name: str, service_id: str | None = None, version: int = 100,
                 replicas: int | None = 1, labels: dict | None = None,
                 constraints: Iterable[str] = (), update_state: str | None = None,
                 host_port: int | None = None, enabled: bool = True,
                 mounts: Iterable[dict] = (), healthcheck: dict | None | str = "default",
                 image: str = "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6"
                 ) -> dict:
    """An inspected service (as stored, no defaults inserted). replicas=None makes a global service.
    `mounts`: ContainerSpec.Mounts; `healthcheck`: ContainerSpec.Healthcheck (None: absent;
    by default a wget every second)."""
    all_labels = {"swarmguard.enable": "true"} if enabled else {}
    all_labels.update(labels or {})
    spec: dict[str, Any] = {
        "Name": name,
        "Labels": all_labels,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Healthcheck": {"Test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1/"],
                                "Interval": 1000000000},
                "Isolation": "default",
            },
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 0},
            "Placement": {"Constraints": list(constraints)} if constraints else {},
            "Networks": [{"Target": "o1s6h8x3lk2g"}],
            "ForceUpdate": 0,
            "Runtime": "container",
        },
        "Mode": {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000,
                           "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip"},
    }
    container = spec["TaskTemplate"]["ContainerSpec"]
    if healthcheck != "default":
        if healthcheck is None:
            del container["Healthcheck"]
        else:
            container["Healthcheck"] = healthcheck
    if mounts:
        container["Mounts"] = [dict(m) for m in mounts]
    if host_port:
        spec["EndpointSpec"]["Ports"] = [{"Protocol": "tcp", "TargetPort": 80,
                                          "PublishedPort": host_port, "PublishMode": "host"}]
    data = {
        "ID": service_id or f"svc{name}",
        "Version": {"Index": version},
        "CreatedAt": "2026-11-27T09:00:00.000000000Z",
        "UpdatedAt": "2026-11-27T09:00:00.000000000Z",
        "Spec": spec,
    }
    if update_state:
        data["UpdateStatus"] = {"State": update_state, "Message": f"update {update_state}"}
    return data


def task_dict(task_id: str, service_id: str, node_id: str, slot: int | None = 1,
              state: str = "running", desired: str = "running",
              created: str = "2026-11-27T09:00:01.000000000Z") -> dict:
    return {
        "ID": task_id,
        "Version": {"Index": 120},
        "CreatedAt": created,
        "ServiceID": service_id,
        "Slot": slot,
        "NodeID": node_id,
        "Status": {"Timestamp": "2026-11-27T09:00:02.000000000Z", "State": state,
                   "Message": state, "ContainerStatus": {"ContainerID": "c" + task_id,
                                                         "PID": 4242, "ExitCode": 0}},
        "DesiredState": desired,
    }


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    """An APIError as the SDK raises it for an HTTP error answer."""
    response = requests.Response()
    response.status_code = status
    response.url = "http+docker://localhost/v1.41/services/x/update"
    response.reason = "Internal Server Error" if status >= 500 else "Bad Request"
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(f"{status}", response=response, explanation=explanation)


def out_of_sequence() -> docker.errors.APIError:
    return api_error(500, "rpc error: code = Unknown desc = update out of sequence")


def unreadable_answers() -> dict[str, Exception]:
    """What the SDK raises when Docker's answer (or a proxy's in front of it) cannot be
    read, by what happened to it; the first two as seen through the real SDK
    (tests/unit/test_receiver_sdk.py)."""
    return {
        "html page": requests.exceptions.JSONDecodeError(
            "Expecting value", "<html><body><h1>502 Bad Gateway</h1></body></html>", 0),
        "cut off": requests.exceptions.ChunkedEncodingError(
            "Connection broken: IncompleteRead(8 bytes read, 4096 more expected)"),
        "badly encoded": requests.exceptions.ContentDecodingError(
            "Received response with content-encoding: gzip, but failed to decode it."),
        "broken protocol": urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
    }


class Landed:
    """An `update_failures` entry: the update is made, and then its answer fails with
    `error` (a timeout after the write, a proxy's page, a body cut off)."""

    def __init__(self, error: Exception):
        self.error = error

    def __repr__(self):
        return f"Landed({self.error!r})"


class _Services(dict):
    """The fake's services by ID; called, it lists them as APIClient.services() does."""

    def __call__(self, filters=None, status=None):
        return [copy.deepcopy(s) for s in self.values()]


class FakeDockerAPI:
    """A scripted stand-in for docker.APIClient. Knows services, tasks and nodes."""

    def __init__(self, services: Iterable[dict] = (), tasks: Iterable[dict] = (),
                 nodes: Iterable[dict] = (), info: dict | None = None,
                 version: dict | Exception | None = None, images: dict | None = None):
        self.services = _Services({s["ID"]: copy.deepcopy(s) for s in services})
        # Images in this daemon's store, by reference: what inspect_image answers.
        self.images = dict(images or {})
        self.task_list = [copy.deepcopy(t) for t in tasks]
        self.node_list = [copy.deepcopy(n) for n in nodes]
        self.info_data = info if info is not None else {
            "Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}
        # GET /version as Engine 20.10 answers it; a test may give another engine's answer.
        self.version_data = version if version is not None else {
            "Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
        self.calls: list[tuple[str, tuple, dict]] = []
        # Exceptions raised by the next update_service and update_node calls, in order
        # (None: succeed; Landed(error): make the update, then raise error).
        self.update_failures: list[Exception | Landed | None] = []
        # Called after a successful update with (api, service_id, kwargs): simulate Swarm.
        self.after_update: Callable[["FakeDockerAPI", str, dict], None] | None = None
        # Called before each read of tasks: lets a test change the swarm "over time".
        self.before_tasks: Callable[["FakeDockerAPI"], None] | None = None
        self._new_ids = (f"newtask{i:04d}" for i in itertools.count(1))

    # -- the APIClient surface the receiver uses ---------------------------------------------

    def inspect_service(self, service, insert_defaults=None):
        self.calls.append(("inspect_service", (service,), {"insert_defaults": insert_defaults}))
        found = self._find(service)
        if found is None:
            raise api_error(404, f"service {service} not found")
        found = copy.deepcopy(found)
        if insert_defaults:
            # Docker fills in what the user left out (swarmkit's defaults), e.g. the grace
            # period before a stopping task is killed: not the spec as the user stored it.
            found["Spec"]["TaskTemplate"]["ContainerSpec"].setdefault("StopGracePeriod",
                                                                       10000000000)
        return found

    def tasks(self, filters=None):
        self.calls.append(("tasks", (), {"filters": filters}))
        if self.before_tasks:
            self.before_tasks(self)
        wanted = (filters or {}).get("service")
        svc = self._find(wanted) if wanted else None
        return [copy.deepcopy(t) for t in self.task_list
                if wanted is None or (svc is not None and t["ServiceID"] == svc["ID"])]

    def nodes(self, filters=None):
        self.calls.append(("nodes", (), {"filters": filters}))
        return copy.deepcopy(self.node_list)

    def inspect_node(self, node_id):
        self.calls.append(("inspect_node", (node_id,), {}))
        found = self._node(node_id)
        if found is None:
            raise api_error(404, f"node {node_id} not found")
        return copy.deepcopy(found)

    def update_node(self, node_id, version, node_spec=None):
        self.calls.append(("update_node", (node_id,), {"version": version,
                                                        "node_spec": copy.deepcopy(node_spec)}))
        failure = self._next_failure()
        found = self._node(node_id)
        if found is None:
            raise api_error(404, f"node {node_id} not found")
        if version != found["Version"]["Index"]:
            raise out_of_sequence()
        found["Spec"] = copy.deepcopy(node_spec)
        found["Version"]["Index"] += 1
        if failure is not None:
            raise failure.error

    def inspect_image(self, image):
        self.calls.append(("inspect_image", (image,), {}))
        if image not in self.images:
            raise api_error(404, f"No such image: {image}")
        return copy.deepcopy(self.images[image])

    def info(self):
        self.calls.append(("info", (), {}))
        if isinstance(self.info_data, Exception):
            raise self.info_data
        return copy.deepcopy(self.info_data)

    def version(self, api_version=True):
        self.calls.append(("version", (), {"api_version": api_version}))
        if isinstance(self.version_data, Exception):
            raise self.version_data
        return copy.deepcopy(self.version_data)

    def update_service(self, service, version, **kwargs):
        self.calls.append(("update_service", (service,), {"version": version, **kwargs}))
        failure = self._next_failure()
        svc = self._find(service)
        if svc is None:
            raise api_error(404, f"service {service} not found")
        if version != svc["Version"]["Index"]:
            raise out_of_sequence()
        self._apply(svc, kwargs)
        if self.after_update:
            self.after_update(self, svc["ID"], kwargs)
        if failure is not None:
            raise failure.error
        return {"Warnings": None}

    def _next_failure(self) -> Landed | None:
        """Raises the next scripted failure that comes before the write; returns one that
        comes after it (Landed), or None."""
        failure = self.update_failures.pop(0) if self.update_failures else None
        if failure is None or isinstance(failure, Landed):
            return failure
        raise failure

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)  # copy, pickle and friends probe for dunders
        raise AssertionError(f"unexpected Docker API call: {name}")

    # -- helpers for tests -------------------------------------------------------------------

    @property
    def updates(self) -> list[dict]:
        """The kwargs (version included) of every update_service call, in order."""
        return [kw for name, _, kw in self.calls if name == "update_service"]

    def bump(self, service_id: str, **labels: str) -> None:
        """Someone else (Swarm, a user, another receiver) changed the service."""
        svc = self.services[service_id]
        svc["Version"]["Index"] += 1
        svc["Spec"]["Labels"].update(labels)

    def move_task(self, task_id: str, node_id: str, created: str | None = None) -> str:
        """Swarm replaces a task by a running one on `node_id` (same slot), created at
        `created` (RFC 3339; None: task_dict's default); returns its id."""
        old = next(t for t in self.task_list if t["ID"] == task_id)
        old["DesiredState"] = "shutdown"
        new_id = next(self._new_ids)
        extra = {"created": created} if created else {}
        self.task_list.append(task_dict(new_id, old["ServiceID"], node_id, slot=old["Slot"],
                                        **extra))
        return new_id

    @property
    def node_updates(self) -> list[dict]:
        """The node_spec (and version) of every update_node call, in order."""
        return [kw for name, _, kw in self.calls if name == "update_node"]

    def node(self, node_id: str) -> dict:
        return self._node(node_id)

    def _node(self, ref):
        return next((n for n in self.node_list
                     if n["ID"] == ref or n["Description"]["Hostname"] == ref), None)

    def _find(self, ref):
        if ref in self.services:
            return self.services[ref]
        return next((s for s in self.services.values() if s["Spec"]["Name"] == ref), None)

    @staticmethod
    def _apply(svc: dict, kwargs: dict) -> None:
        # What Docker does with the SDK's request body: the new spec replaces the old whole.
        svc["PreviousSpec"] = copy.deepcopy(svc["Spec"])
        svc["Spec"] = {
            "Name": kwargs.get("name"),
            "Labels": copy.deepcopy(kwargs.get("labels")),
            "TaskTemplate": copy.deepcopy(kwargs.get("task_template")),
            "Mode": copy.deepcopy(kwargs.get("mode")),
            "UpdateConfig": copy.deepcopy(kwargs.get("update_config")),
            "RollbackConfig": copy.deepcopy(kwargs.get("rollback_config")),
            "EndpointSpec": copy.deepcopy(kwargs.get("endpoint_spec")),
        }
        svc["Version"]["Index"] += 1


# The cluster the recorded payloads in tests/unit/fixtures/alertmanager/ talk about: a
# manager and three workers; demo_web's task TASK runs on worker-1.
MANAGER_1 = "m1xq8t2yv5c0k3n7p9r4s6u8w"
WORKER_1 = "w1a9d3f5h7j2l4n6p8r0t2v4x"
WORKER_2 = "w2b8c6e4g2i0k8m6o4q2s0u8y"
WORKER_3 = "w3c7e5g3i1k9m7o5q3s1u9w7z"
WEB_ID = "7f3kq2m9x1v5b8n4c6z0l2j4h"
TASK = "t1p4r7s0u3w6y9a2c5e8g1i4k"
TASK_2 = "t2q5s8v1x4z7b0d3f6h9j2l5m"


def example_nodes() -> list[dict]:
    return [
        node_dict(MANAGER_1, "manager-1", role="manager"),
        node_dict(WORKER_1, "worker-1"),
        node_dict(WORKER_2, "worker-2"),
        node_dict(WORKER_3, "worker-3"),
    ]


def example_api(**service_kwargs) -> FakeDockerAPI:
    """demo_web, one replica, TASK running on worker-1; keyword arguments go to
    service_dict (labels, constraints, replicas, ...)."""
    service_kwargs.setdefault("constraints", ["node.role==worker"])
    service = service_dict("demo_web", WEB_ID, **service_kwargs)
    return FakeDockerAPI(services=[service], tasks=[task_dict(TASK, WEB_ID, WORKER_1)],
                         nodes=example_nodes())
