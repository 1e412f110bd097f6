"""A fake of the Docker calls the receiver's ground truth makes (three list calls:
services, tasks, nodes, with their filters applied as Docker applies them; and image
inspections), and a swarm of any size for the unit benchmark. Any other call raises
AssertionError: a test fails loudly when the code starts doing something new."""
from __future__ import annotations

import copy
from typing import Iterable

from tests.fake_docker_api_client import api_error, node_dict, service_dict, task_dict


class FakeSwarmReads:
    def __init__(self, services: Iterable[dict] = (), tasks: Iterable[dict] = (),
                 nodes: Iterable[dict] = (), copy_answers: bool = True,
                 images: dict | None = None):
        self.service_list = list(services)
        # Images in the manager's store, by reference: what inspect_image answers.
        self.images = dict(images or {})
        self.task_list = list(tasks)
        self.node_list = list(nodes)
        # A real client builds new dicts from JSON at every call; the benchmark may skip
        # the copy to time the receiver's own work only.
        self.copy_answers = copy_answers
        self.calls: list[tuple[str, dict | None]] = []
        self.failure: Exception | None = None

    def _answer(self, name: str, filters: dict | None, items: list[dict]) -> list[dict]:
        self.calls.append((name, filters))
        if self.failure is not None:
            raise self.failure
        return copy.deepcopy(items) if self.copy_answers else items

    def services(self, filters=None):
        key = (filters or {}).get("label")
        return self._answer("services", filters, [
            s for s in self.service_list if key is None or key in s["Spec"].get("Labels", {})])

    def tasks(self, filters=None):
        desired = (filters or {}).get("desired-state")
        return self._answer("tasks", filters, [
            t for t in self.task_list if desired is None or t["DesiredState"] == desired])

    def nodes(self, filters=None):
        return self._answer("nodes", filters, self.node_list)

    def inspect_image(self, image):
        self.calls.append(("inspect_image", {"image": image}))
        if self.failure is not None:
            raise self.failure
        if image not in self.images:
            raise api_error(404, f"No such image: {image}")
        return copy.deepcopy(self.images[image])

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AssertionError(f"unexpected Docker API call: {name}")


def large_swarm(services: int = 500, tasks: int = 5000, nodes: int = 20,
                opted_in_share: float = 0.8) -> FakeSwarmReads:
    """`services` services (a share of them opted in) with `tasks` running tasks spread
    over `nodes` nodes, plus one shut-down task per service (Swarm's history)."""
    node_list = [node_dict(f"node{i:03d}", f"worker-{i}") for i in range(nodes)]
    service_list = [service_dict(f"svc{i:03d}", f"sid{i:03d}", replicas=tasks // services,
                                 enabled=i < services * opted_in_share) for i in range(services)]
    task_list = []
    for i in range(tasks):
        service = service_list[i % services]
        task_list.append(task_dict(f"task{i:05d}", service["ID"], node_list[(i + i // services) % nodes]["ID"],
                                   slot=i // services + 1))
    for i, service in enumerate(service_list):
        task_list.append(task_dict(f"old{i:05d}", service["ID"], node_list[0]["ID"],
                                   state="shutdown", desired="shutdown"))
    return FakeSwarmReads(service_list, task_list, node_list)
