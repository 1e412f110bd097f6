"""Lab services: a tiny health-checked web service (busybox httpd), the one `make demo`
deploys and the lab tests move around. Every response names the node that served it."""
from __future__ import annotations

import docker
import requests
from docker.types import EndpointSpec, Healthcheck, Mount, Resources, ServiceMode, UpdateConfig

from ..config import LabConfig
from .images import BUSYBOX, image_ids
from ..instruments import prometheus
from .nodes import client
from .service_spec import desired_replicas
from .system import LabError, wait_for

# The node's hostname (a Swarm template) goes into the page, so a probe can tell which
# node answered. busybox httpd exits at once on SIGTERM, like many real servers.
WEB_COMMAND = (
    "mkdir -p /www && echo ok > /www/health && "
    "printf 'node=%s task=%s\\n' \"$NODE\" \"$TASK\" > /www/index.html && "
    "exec httpd -f -p 8080 -h /www"
)


STRESS = "swarmguard-lab/stress:latest"
SECOND = 1_000_000_000


WORKERS_ONLY = ("node.role==worker",)  # as the bundle runs applications


def deploy_web(cfg: LabConfig, name: str = "web", *, replicas: int = 1, opt_in: bool = True,
               labels: dict | None = None) -> docker.models.services.Service:
    """The busybox web service: tiny, health-checked, names its node in every answer."""
    return _deploy(cfg, name, image_ids(cfg)[BUSYBOX], replicas=replicas, opt_in=opt_in, labels=labels,
                   command=["sh", "-c", WEB_COMMAND],
                   env=["NODE={{.Node.Hostname}}", "TASK={{.Task.Name}}"],
                   health=["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"],
                   cpus=0.5, memory_mb=64)


def deploy_stress(cfg: LabConfig, name: str = "stress", *, replicas: int = 1, opt_in: bool = True,
                  labels: dict | None = None, cpus: float = 0.5, memory_mb: int = 256,
                  published_port: int | None = None, env: tuple[str, ...] = (),
                  mounts: tuple[Mount, ...] = (), health_check: bool = True,
                  health_start_period_s: float = 1.0, health_retries: int = 2,
                  health_interval_s: float = 1.0,
                  constraints: tuple[str, ...] = WORKERS_ONLY) -> docker.models.services.Service:
    """The stress app (stress/): made hot on purpose through its /stress/* endpoints.
    `env`: more STRESS_* settings (e.g. a start-up burn); `published_port`: another
    host-mode port than the entry point's, for several services on one node (one of
    cfg.extra_apps' to have an entry point of its own: entry_url); `mounts`: volumes and
    binds; `health_check=False`: none at all (["NONE"], the image's too);
    `health_start_period_s`, `health_retries`: room for a slow starter
    (STRESS_STARTUP_DELAY_SECONDS), whose failed checks while it starts must not get it
    killed; `health_interval_s`: seconds between checks once started (a dozen services on
    two cores: each check execs a Python in the container); `constraints`: where its tasks
    may run (workers only unless said; () any node)."""
    return _deploy(cfg, name, image_ids(cfg)[STRESS], replicas=replicas, opt_in=opt_in, labels=labels,
                   command=None,
                   env=["SWARM_TASK_NAME={{.Task.Name}}", "SWARM_TASK_ID={{.Task.ID}}",
                        "SWARM_NODE_HOSTNAME={{.Node.Hostname}}", "SWARM_NODE_ID={{.Node.ID}}",
                        "SWARM_SERVICE_NAME={{.Service.Name}}", *env],
                   health=["CMD", "python3", "-c",
                           "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=1)"]
                   if health_check else ["NONE"],
                   health_start_period_s=health_start_period_s, health_retries=health_retries,
                   health_interval_s=health_interval_s, cpus=cpus, memory_mb=memory_mb, published_port=published_port, mounts=mounts,
                   constraints=constraints)


def _deploy(cfg: LabConfig, name: str, image: str, *, replicas: int, opt_in: bool, labels: dict | None,
            command: list[str] | None, env: list[str], health: list[str], cpus: float, memory_mb: int,
            published_port: int | None = None, mounts: tuple[Mount, ...] = (),
            constraints: tuple[str, ...] = WORKERS_ONLY, health_start_period_s: float = 1.0,
            health_retries: int = 2, health_interval_s: float = 1.0):
    """Create (or recreate) a service the way the bundle runs applications: workers only,
    host-mode port behind the entry point, 1 s health checks, start-first updates with
    rollback; wait until its tasks run and are healthy."""
    c = client(cfg, cfg.manager)
    remove_service(cfg, name)
    service_labels = {"swarmguard.enable": "true" if opt_in else "false", **(labels or {})}
    c.services.create(
        image,
        name=name,
        command=command,
        env=env,
        labels=service_labels,
        constraints=list(constraints),
        mode=ServiceMode("replicated", replicas=replicas),
        endpoint_spec=EndpointSpec(mode="dnsrr", ports=[
            {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": published_port or cfg.app_published_port,
             "PublishMode": "host"}]),
        healthcheck=_healthcheck(cfg, health, health_start_period_s, health_retries, health_interval_s)
        if health != ["NONE"] else Healthcheck(test=["NONE"]),
        mounts=list(mounts),
        update_config=UpdateConfig(parallelism=1, order="start-first", failure_action="rollback",
                                   monitor=2 * SECOND),
        resources=Resources(cpu_limit=int(cpus * SECOND), mem_limit=memory_mb * 1024 * 1024),
        stop_grace_period=2 * SECOND,
    )
    wait_for(f"{name}: {replicas} healthy task(s)", lambda: len(running_tasks(cfg, name)) == replicas,
             timeout=90)
    return c.services.get(name)


def _healthcheck(cfg: LabConfig, test: list[str], start_period_s: float = 1.0, retries: int = 2,
                 interval_s: float = 1.0) -> Healthcheck:
    """1 s probes from the first second. On Engine 25+ a start period is probed every
    StartInterval, 5 s unless set (moby daemon/health.go), so without it a new task's
    first probe, and so its replacement's MTTR, waits 5 s instead of 1 s. Failures within
    the start period do not count; the first success ends it."""
    check = Healthcheck(test=test, interval=int(interval_s * SECOND), timeout=SECOND, retries=retries,
                        start_period=int(start_period_s * SECOND))
    if cfg.health_start_interval_supported:
        check["StartInterval"] = SECOND
    return check


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


def inspect(cfg: LabConfig, name: str) -> dict:
    """The service as the manager describes it now (spec, version, update status)."""
    return client(cfg, cfg.manager).api.inspect_service(name)


def replicas(cfg: LabConfig, name: str) -> int | None:
    """The replica count the service's spec asks for now (what a scale changes); None for
    a global service."""
    return desired_replicas(inspect(cfg, name))


def remove_service(cfg: LabConfig, name: str) -> None:
    c = client(cfg, cfg.manager)
    try:
        c.services.get(name).remove()
    except docker.errors.NotFound:
        return

    wait_for(f"{name}'s containers removed", lambda: not containers(cfg, name, all=True), timeout=60)


def containers(cfg: LabConfig, service: str, all: bool = False) -> list:
    """The service's containers on every node (running ones unless all=True)."""
    return [ctr for node in cfg.nodes for ctr in client(cfg, node).containers.list(
        all=all, filters={"label": f"com.docker.swarm.service.name={service}"})]


def require_service(cfg: LabConfig, name: str) -> None:
    if not running_tasks(cfg, name):
        raise LabError(f"service {name} has no running task")


def update_service(cfg: LabConfig, name: str, mutate) -> None:
    """One `docker service update` as an operator makes it: inspect, change the spec,
    post it whole with the version just read (the Engine API's compare-and-swap)."""
    api = client(cfg, cfg.manager).api
    service = api.inspect_service(name)
    spec = service["Spec"]
    mutate(spec)
    url = api._url("/services/{0}/update", service["ID"])
    api._raise_for_status(api._post_json(url, data=spec, params={"version": service["Version"]["Index"]}))


def moved_off(cfg: LabConfig, name: str, old_node: str) -> str | None:
    """The node the service runs healthy on when it runs healthy only elsewhere than
    old_node and nothing is left to run there; else None."""
    running = running_tasks(cfg, name)
    if not running:
        return None
    nodes = {node_name(cfg, t["NodeID"]) for t in running}
    leftovers = [t for t in client(cfg, cfg.manager).services.get(name).tasks()
                 if t["DesiredState"] == "running" and node_name(cfg, t["NodeID"]) == old_node]
    return None if old_node in nodes or leftovers else sorted(nodes)[0]


def wait_moved_off(cfg: LabConfig, name: str, old_node: str, timeout: float = 60.0, poll: float = 0.25) -> str:
    """Wait until the service runs healthy only elsewhere and nothing is left to run on
    old_node; return the node it moved to."""
    return wait_for(f"{name} to move off {old_node}", lambda: moved_off(cfg, name, old_node),
                    timeout=timeout, interval=poll)


def published_port(cfg: LabConfig, name: str) -> int:
    """The service's host-mode published port (the first, if it has several)."""
    ports = (inspect(cfg, name)["Spec"].get("EndpointSpec") or {}).get("Ports") or []
    host = [p["PublishedPort"] for p in ports if p.get("PublishMode") == "host" and p.get("PublishedPort")]
    if not host:
        raise LabError(f"service {name} publishes no host-mode port")
    return host[0]


def entry_url(cfg: LabConfig, name: str) -> str:
    """The entry point that balances the service's published port (cfg.entry_points): what
    a user of that service would call."""
    return cfg.entry_url(published_port(cfg, name))


def stress(cfg: LabConfig, kind: str, **params) -> requests.Response:
    """Start (or stop) stress on the stress app through the entry point: one task. Call
    wait_settled first (outside anything timed): the rules ignore a young task's heat."""
    r = requests.get(f"{cfg.entrypoint_url}/stress/{kind}", params=params, timeout=5)
    r.raise_for_status()
    return r


def stress_task(cfg: LabConfig, task: dict, kind: str, **params) -> requests.Response:
    """Start stress on one task directly, at its node's published port: unlike the entry
    point, it cannot reach a container of a service that is still going away (a removed
    stack's, say). Checks that the task's own service answered."""
    node = cfg.node(node_name(cfg, task["NodeID"]))
    r = requests.get(f"http://{node.ip}:{cfg.app_published_port}/stress/{kind}", params=params,
                     timeout=5)
    r.raise_for_status()
    service = client(cfg, cfg.manager).api.inspect_service(task["ServiceID"])["Spec"]["Name"]
    if r.headers.get("X-Swarm-Service") != service:
        raise LabError(f"/stress/{kind} on {node.name} was answered by "
                       f"{r.headers.get('X-Swarm-Service')!r}, not {service!r}")
    return r


def young_tasks(cfg: LabConfig, service: str | None = None) -> set[str]:
    """Tasks of opted-in services the exporters see that the rules do not judge yet:
    within the start-up grace (swarmguard:threshold:startup_grace_seconds in
    prometheus/rules/swarmguard-thresholds.yml). Asked where they are judged, each node's
    detection Prometheus (the raw series are not federated)."""
    where = f'{{service="{service}"}}' if service else ""
    return {r["metric"]["task_id"] for r in prometheus.query_detection(
        cfg, f"(swarmguard_task_start_time_seconds{where} "
             f"and on (service) swarmguard:service_opted_in:held) "
             f"unless on (task_id) swarmguard:task_settled:age_seconds")}


def settled_tasks(cfg: LabConfig, service: str) -> set[str]:
    """Tasks of `service` the rules judge: past the start-up grace."""
    return {r["metric"]["task_id"] for r in prometheus.query_detection(
        cfg, f'swarmguard:task_settled:age_seconds{{service="{service}"}}')}


def wait_settled(cfg: LabConfig, service: str | None = None, timeout: float = 120) -> None:
    """Until no task (or none of `service`'s running tasks) is within the start-up grace:
    heat applied earlier is ignored by the rules on purpose, which would look like slow
    detection. A condition, not a sleep: an old task passes at once."""
    def settled() -> bool:
        if service is None:
            return not young_tasks(cfg)
        running = {t["ID"] for t in running_tasks(cfg, service)}
        return bool(running) and running <= settled_tasks(cfg, service)
    wait_for(f"{service or 'every task'} past the start-up grace", settled, timeout=timeout,
             interval=0.5)


def stop_stress_everywhere(cfg: LabConfig) -> None:
    """/stress/stop on every worker's task directly: through the entry point it would
    reach only one of several replicas."""
    for worker in cfg.workers:
        try:
            requests.get(f"http://{worker.ip}:{cfg.app_published_port}/stress/stop", timeout=2)
        except requests.RequestException:
            pass  # no task on that worker


def set_availability(cfg: LabConfig, node_name: str, availability: str) -> None:
    """`docker node update --availability` (active, pause, drain) on a lab node."""
    c = client(cfg, cfg.manager)
    node = next(n for n in c.nodes.list() if n.attrs["Description"]["Hostname"] == node_name)
    spec = dict(node.attrs["Spec"], Availability=availability)
    node.update(spec)


def node_spec(cfg: LabConfig, node_name: str) -> dict:
    """The node as the manager describes it now (spec, version, status)."""
    c = client(cfg, cfg.manager)
    return next(n.attrs for n in c.nodes.list() if n.attrs["Description"]["Hostname"] == node_name)


def reset_nodes(cfg: LabConfig) -> None:
    """Every node active and without SwarmGuard's labels (a drain's state): how a test
    leaves the lab, whatever it did to the nodes."""
    c = client(cfg, cfg.manager)
    for node in c.nodes.list():
        spec = node.attrs["Spec"]
        labels = {k: v for k, v in (spec.get("Labels") or {}).items() if not k.startswith("swarmguard.")}
        if spec.get("Availability") != "active" or labels != (spec.get("Labels") or {}):
            node.update(dict(spec, Availability="active", Labels=labels))
