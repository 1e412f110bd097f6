"""The real bundle (stack.yml) in the lab: deploy it as an operator would, and remove it.

    deploy(cfg)  docker stack deploy -c stack.yml -c tests/lab/infra/stack.lab.yml -c <image IDs>
    remove(cfg)  docker stack rm, then wait until nothing of it is left on any node

It uses the docker CLI, not the SDK, because `docker stack deploy` (compose parsing,
merging, configs, secrets, networks) is exactly what is under test. Everything the lab
changes is in tests/lab/infra/stack.lab.yml, plus the few variables below that an override file
cannot express with docker 20.10's merge (see that file's header).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import docker
import yaml

from . import services
from .bundle_images import build_monitoring_images
from ..config import PROJECT_ROOT, LabConfig
from .monitoring import shipped_rule_files, shorten_repeat, shorten_scale_down
from .images import image_ids
from .nodes import client
from .service_spec import desired_replicas
from .system import LabError, run, say, wait_for

NAME = "swarmguard"
# The CLI of Debian's docker.io (20.10, the lab's Engine). Its merge of several -c files
# is what stack.lab.yml is written for; a newer CLI elsewhere on PATH merges differently.
DOCKER_CLI = "/usr/bin/docker"
STACK_FILE = PROJECT_ROOT / "stack.yml"
LAB_FILE = Path(__file__).with_name("stack.lab.yml")
SECRET = "swarmguard_token"
# Grafana's admin password (stack.yml). Grafana has no task in the lab, but a deploy needs
# every external secret the stack names to exist.
GRAFANA_SECRET = "swarmguard_grafana_admin_password"
# Prometheus's and Alertmanager's basic auth (docs/contract.md, "What the bundle
# publishes"): the password of the machines' user, and the web config holding its hash.
WEB_PASSWORD_SECRET = "swarmguard_web_password"
WEB_CONFIG_SECRET = "swarmguard_web_config"
WEB_USER = "swarmguard"
SECRETS = (SECRET, GRAFANA_SECRET, WEB_PASSWORD_SECRET, WEB_CONFIG_SECRET)
# What the lab's images are called (tests/lab/infra/images.py); stack.yml requires
# SWARMGUARD_REGISTRY, and the lab pins every image by ID anyway (images_by_id).
REGISTRY = "swarmguard-lab"
NAMESPACE_LABEL = "com.docker.stack.namespace"
# The stack's overlay network, as Swarm names it (stack name + the key in stack.yml):
# where the stack's Prometheus finds the exporters.
NETWORK = f"{NAME}_swarmguard"
# No image can be had for these in the lab; stack.lab.yml gives them no node.
NOT_IN_LAB = ("cadvisor", "grafana")


CONTRACT = PROJECT_ROOT / "docs" / "contract.md"
CONTRACT_SECTION = "## What the bundle publishes (`stack.yml`)"


@dataclass(frozen=True)
class Published:
    """One row of the contract's table of what the bundle publishes."""
    port: int
    service: str
    authentication: str  # its kind: the first code span of the row's last cell


def contract_published(text: str | None = None) -> dict[int, Published]:
    """The ports the bundle may publish, by port, as docs/contract.md lists them (the one
    home of that list; `text`: another contract, for tests of this reader)."""
    text = CONTRACT.read_text() if text is None else text
    if CONTRACT_SECTION not in text:
        raise LabError(f"{CONTRACT} has no section {CONTRACT_SECTION!r}")
    section = text.split(CONTRACT_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            kind = re.search(r"`([^`]+)`", cells[3])
            rows[int(cells[0])] = Published(int(cells[0]), cells[1].strip("`"),
                                             kind.group(1) if kind else "")
    if not rows:
        raise LabError(f"{CONTRACT}, {CONTRACT_SECTION!r}: no table of ports")
    return rows


def published_in_the_lab(cfg: LabConfig) -> dict[int, str]:
    """Published port -> service, as the lab deploys the stack: the contract's list, plus
    the demo app's port that stack.lab.yml adds for the lab's entry point (its header, 4)."""
    return {**{row.port: row.service for row in contract_published().values()},
            cfg.app_published_port: "stress"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def service_names() -> list[str]:
    """The stack's services, as named in stack.yml (without the stack prefix)."""
    return list(load(STACK_FILE)["services"])


def full_name(service: str) -> str:
    return f"{NAME}_{service}"


def config_version() -> str:
    """A hash of every file stack.yml turns into a Swarm config: Swarm configs are
    immutable, so a redeploy after an edit needs new names (stack.yml's header)."""
    h = hashlib.sha256()
    for name, config in sorted(load(STACK_FILE)["configs"].items()):
        h.update(name.encode())
        h.update((PROJECT_ROOT / config["file"]).read_bytes())
    return h.hexdigest()[:12]


def environment(cfg: LabConfig) -> dict[str, str]:
    """The variables stack.yml reads, as the lab sets them."""
    return {
        "SWARMGUARD_REGISTRY": REGISTRY,
        # The lab's dockerds have no /var/run/docker.sock; the manager's is here.
        "SWARMGUARD_DOCKER_SOCKET": str(cfg.docker_socket(cfg.manager)),
        "SWARMGUARD_CONFIG_VERSION": config_version(),
    }


def images_by_id(ids: dict[str, str]) -> dict:
    """A compose override that names each lab image by ID: a task then starts at once,
    where a tag makes every node try the (unreachable) registry first (docs/lab.md, "The lab")."""
    pinned = {}
    for service, spec in load(LAB_FILE)["services"].items():
        tag = (spec or {}).get("image")
        if tag:
            if tag not in ids:
                raise LabError(f"stack.lab.yml names {tag} for {service}, which the lab did not build")
            pinned[service] = {"image": ids[tag]}
    return {"version": load(LAB_FILE)["version"], "services": pinned}


def docker_cli(cfg: LabConfig, *args: str, env: dict[str, str] | None = None, check: bool = True):
    return run([DOCKER_CLI, "-H", cfg.docker_url(cfg.manager), *args],
               env={**os.environ, **(env or {})}, check=check, timeout=300)


def web_password(cfg: LabConfig) -> str:
    """The password of the user `swarmguard` on the stack's Prometheus and Alertmanager,
    kept in the lab's state so that the tests can send it: hex, as docs/operating.md's
    `openssl rand -hex 24` makes it, with the newline that command leaves (the bundle's
    readers ignore it)."""
    path = cfg.web_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def web_auth(cfg: LabConfig) -> tuple[str, str]:
    """(user, password) for requests' `auth=`: what the stack's Prometheus and
    Alertmanager ask of every request."""
    return WEB_USER, web_password(cfg)


def web_config(password: str) -> str:
    """Prometheus's and Alertmanager's web config with the bcrypt hash of `password` for
    the user `swarmguard`, as docs/operating.md's htpasswd steps make it (cost 10)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
    return yaml.safe_dump({"basic_auth_users": {WEB_USER: hashed}})


def ensure_secret(cfg: LabConfig) -> None:
    """The external secrets stack.yml expects: the token, made from the lab's token file
    (the lab's own Alertmanager and receivers use the same token), a random Grafana
    admin password, and the web password (the lab's own file) with its web config. The
    secrets are removed with the stack (remove), so a new deploy makes them again from
    the same files."""
    c = client(cfg, cfg.manager)
    have = {s.name for s in _secrets(c)}
    data = {SECRET: cfg.token_file.read_bytes(), GRAFANA_SECRET: secrets.token_hex(16).encode(),
            WEB_PASSWORD_SECRET: (web_password(cfg) + "\n").encode(),
            WEB_CONFIG_SECRET: web_config(web_password(cfg)).encode()}
    for name in SECRETS:
        if name not in have:
            c.secrets.create(name=name, data=data[name], labels={"swarmguard-lab": "stack"})


def _secrets(c: docker.DockerClient) -> list:
    # The API's name filter also matches other names that merely contain these.
    return [s for name in SECRETS for s in c.secrets.list(filters={"name": name}) if s.name == name]


def deploy(cfg: LabConfig, timeout: float = 180.0) -> dict[str, str]:
    """Build what is missing, deploy the bundle, wait until every service that can run in
    the lab runs (healthy where it has a health check). Returns tag -> image ID used."""
    if not cfg.token_file.exists():
        raise LabError(f"{cfg.token_file} is missing: bring the lab up first")
    ids = {**image_ids(cfg), **build_monitoring_images(cfg)}
    ensure_secret(cfg)
    with tempfile.TemporaryDirectory(prefix="stack.lab.") as tmp:
        pinned = write_override(cfg, ids, Path(tmp))
        say(f"deploying the stack {NAME} (stack.yml + stack.lab.yml)")
        docker_cli(cfg, "stack", "deploy", "--resolve-image", "never",
                   *compose_args(pinned), NAME, env=environment(cfg))
    wait_for(f"every service of the stack {NAME} running", lambda: not not_running(cfg),
             timeout=timeout, interval=1.0)
    return ids


def write_override(cfg: LabConfig, ids: dict[str, str], directory: Path) -> Path:
    """The third compose file of a lab deploy, written into `directory` with the configs
    it names: every lab image by ID (images_by_id), and the Swarm configs the lab changes
    (lab_configs; the rest are the project's files). Returns its path."""
    override = images_by_id(ids)
    override["configs"] = {}
    for key, text in lab_configs(cfg).items():
        path = directory / f"{key}.yml"
        path.write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        override["configs"][key] = {"name": f"swarmguard_{key}_lab_{digest}", "file": str(path)}
    pinned = directory / "images.yml"
    pinned.write_text(yaml.safe_dump(override))
    return pinned


def compose_args(override: Path) -> list[str]:
    """The -c arguments of a lab deploy: stack.yml, stack.lab.yml, then `override`."""
    return ["-c", str(STACK_FILE), "-c", str(LAB_FILE), "-c", str(override)]


def lab_prometheus_config(cfg: LabConfig) -> dict:
    """The project's prometheus.yml with its cAdvisor job pointed at the lab's cAdvisor
    processes (one per node, at the node's address): no cAdvisor image can be had here,
    so the stack's cadvisor service has no node in the lab. Everything else, the
    exporter job with its Swarm service discovery included, is the shipped file."""
    config = load(PROJECT_ROOT / "prometheus" / "prometheus.yml")
    for job in config["scrape_configs"]:
        if job["job_name"] == "cadvisor":
            job.pop("dockerswarm_sd_configs", None)
            job["relabel_configs"] = []
            job["static_configs"] = [{"targets": [f"{n.ip}:{cfg.cadvisor_port}"], "labels": {"instance": n.name, "node": n.name}}
                                     for n in cfg.nodes]
    return config


def lab_configs(cfg: LabConfig) -> dict[str, str]:
    """The Swarm configs whose content differs in the lab, by stack.yml config key:
    - prometheus_yml: the cAdvisor job scrapes the lab's cAdvisor processes;
    - prometheus_rules, prometheus_scale_down_rules, alertmanager_yml: the slow windows shortened as for the demo and
      the end-to-end tests (scale-down window 20 s, Alertmanager repeat 10 s), so that a
      scale-up-and-down cycle through the bundle fits in a test."""
    rules = shorten_scale_down(shipped_rule_files())
    am = shorten_repeat(load(PROJECT_ROOT / "alertmanager" / "alertmanager.yml"))
    return {"prometheus_yml": yaml.safe_dump(lab_prometheus_config(cfg), sort_keys=False),
            "prometheus_rules": yaml.safe_dump(rules["swarmguard.yml"], sort_keys=False),
            "prometheus_scale_down_rules": yaml.safe_dump(rules["swarmguard-scale-down.yml"],
                                                          sort_keys=False),
            "alertmanager_yml": yaml.safe_dump(am, sort_keys=False)}


def expected_tasks(cfg: LabConfig, service: str) -> int:
    count = desired_replicas(client(cfg, cfg.manager).services.get(full_name(service)).attrs)
    return len(cfg.nodes) if count is None else count  # None: global, a task a node


def not_running(cfg: LabConfig) -> dict[str, str]:
    """Service -> what is missing, for every service that should run in the lab and does
    not yet (all of them but NOT_IN_LAB); {} when all run."""
    missing = {}
    for service in service_names():
        if service in NOT_IN_LAB:
            continue
        want = expected_tasks(cfg, service)
        have = len(services.running_tasks(cfg, full_name(service)))
        if have != want:
            missing[service] = f"{have} of {want} task(s) running and healthy"
    return missing


def stack_containers(cfg: LabConfig) -> list:
    return [ctr for node in cfg.nodes for ctr in client(cfg, node).containers.list(
        all=True, filters={"label": f"{NAMESPACE_LABEL}={NAME}"})]


def remove(cfg: LabConfig, timeout: float = 90.0) -> None:
    """Remove the stack, its containers, networks, configs, secret and volumes."""
    c = client(cfg, cfg.manager)
    if c.services.list(filters={"label": f"{NAMESPACE_LABEL}={NAME}"}):
        say(f"removing the stack {NAME}")
        docker_cli(cfg, "stack", "rm", NAME, check=False)
    wait_for(f"the stack {NAME}'s containers gone", lambda: not stack_containers(cfg),
             timeout=timeout, interval=1.0)
    # The first `stack rm` cannot remove a network while tasks are still attached to it;
    # a second one, once they are gone, removes what is left.
    docker_cli(cfg, "stack", "rm", NAME, check=False)
    wait_for(f"the stack {NAME}'s networks gone", lambda: not c.networks.list(
        filters={"label": f"{NAMESPACE_LABEL}={NAME}"}), timeout=30, interval=1.0)
    for config in c.configs.list(filters={"label": f"{NAMESPACE_LABEL}={NAME}"}):
        config.remove()
    for secret in _secrets(c):
        secret.remove()
    for node in cfg.nodes:
        for volume in client(cfg, node).volumes.list(filters={"label": f"{NAMESPACE_LABEL}={NAME}"}):
            try:
                volume.remove(force=True)
            except docker.errors.APIError as exc:  # never leave the lab half-cleaned silently
                raise LabError(f"could not remove volume {volume.name} on {node.name}: {exc}") from exc
