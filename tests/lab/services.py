"""Lab services: a tiny health-checked web service (busybox httpd), the one `make demo`
deploys and the lab tests move around. Every response names the node that served it."""
from __future__ import annotations

import docker
from docker.types import EndpointSpec, Healthcheck, Placement, Resources, ServiceMode, UpdateConfig

from .config import LabConfig
from .images import BUSYBOX, image_ids
from .nodes import client
from .system import LabError, wait_for

# The node's hostname (a Swarm template) goes into the page, so a probe can tell which
# node answered. busybox httpd exits at once on SIGTERM, like many real servers.
WEB_COMMAND = (
    "mkdir -p /www && echo ok > /www/health && "
    "printf 'node=%s task=%s\\n' \"$NODE\" \"$TASK\" > /www/index.html && "
    "exec httpd -f -p 8080 -h /www"
)


def deploy_web(cfg: LabConfig, name: str = "web", *, replicas: int = 1, opt_in: bool = True,
               labels: dict | None = None) -> docker.models.services.Service:
    """Create (or recreate) the web service; wait until its tasks run and are healthy."""
    c = client(cfg, cfg.manager)
    remove_service(cfg, name)
    service_labels = {"swarmguard.enable": "true" if opt_in else "false", **(labels or {})}
    image = image_ids(cfg)[BUSYBOX]
    c.services.create(
        image,
        name=name,
        command=["sh", "-c", WEB_COMMAND],
        env=["NODE={{.Node.Hostname}}", "TASK={{.Task.Name}}"],
        labels=service_labels,
        constraints=["node.role==worker"],
        mode=ServiceMode("replicated", replicas=replicas),
        endpoint_spec=EndpointSpec(mode="dnsrr", ports=[
            {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": cfg.app_published_port,
             "PublishMode": "host"}]),
        healthcheck=Healthcheck(test=["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"],
                                interval=1_000_000_000, timeout=1_000_000_000, retries=2,
                                start_period=1_000_000_000),
        update_config=UpdateConfig(parallelism=1, order="start-first", failure_action="rollback",
                                   monitor=2_000_000_000),
        resources=Resources(cpu_limit=500_000_000, mem_limit=64 * 1024 * 1024),
        stop_grace_period=2_000_000_000,
    )
    wait_for(f"{name}: {replicas} healthy task(s)", lambda: len(running_tasks(cfg, name)) == replicas,
             timeout=60)
    return c.services.get(name)


def running_tasks(cfg: LabConfig, service: str, healthy_only: bool = True) -> list[dict]:
    """Tasks whose container is running (and healthy, when the service has a health check)."""
    c = client(cfg, cfg.manager)
    try:
        tasks = c.services.get(service).tasks(filters={"desired-state": "running"})
    except docker.errors.NotFound:
        return []
    out = []
    for task in tasks:
        if task["Status"]["State"] != "running":
            continue
        if healthy_only and not _container_healthy(cfg, task):
            continue
        out.append(task)
    return out


def _container_healthy(cfg: LabConfig, task: dict) -> bool:
    node = node_name(cfg, task["NodeID"])
    container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
    if not container_id:
        return False
    state = client(cfg, cfg.node(node)).api.inspect_container(container_id)["State"]
    return state.get("Health", {}).get("Status", "healthy") == "healthy"


def node_name(cfg: LabConfig, node_id: str) -> str:
    return client(cfg, cfg.manager).nodes.get(node_id).attrs["Description"]["Hostname"]


def remove_service(cfg: LabConfig, name: str) -> None:
    c = client(cfg, cfg.manager)
    try:
        c.services.get(name).remove()
    except docker.errors.NotFound:
        return

    def gone() -> bool:
        return all(not c2.containers.list(all=True, filters={"label": f"com.docker.swarm.service.name={name}"})
                   for c2 in (client(cfg, n) for n in cfg.nodes))
    wait_for(f"{name}'s containers removed", gone, timeout=60)


def require_service(cfg: LabConfig, name: str) -> None:
    if not running_tasks(cfg, name):
        raise LabError(f"service {name} has no running task")
