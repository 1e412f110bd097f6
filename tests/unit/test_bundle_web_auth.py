"""Prometheus and Alertmanager as the stack runs them, behind their web config's basic auth.

For each lab flavour (Prometheus 3.5 / Alertmanager 0.33 on `current`, the releases
stack.yml pins; 2.42 / 0.25 on `bookworm`), the files the lab's image of each program
holds (tests/lab/infra/bundle_images.py, on the lab's busybox) are run with chroot, with
the stack's secrets at /run/secrets/ and its configs where stack.yml mounts them, and
the command line as the docker CLI renders it from stack.yml (bundle_render.py). The web
config and the password are made as docs/operating.md's deploy steps make them: a hex password with
a newline after it, its bcrypt hash for `swarmguard`, and a person's user beside it.

Then, as Swarm would have it:
- every path of both, /-/healthy and /metrics included, answers 401 without a password
  or with a wrong one, and 200 to `swarmguard` and to the person;
- Prometheus's own clients of the two (its scrape of itself and of Alertmanager, its
  alerting) get through with the secret's password file;
- the stack's health checks, run by busybox's sh and wget exactly as written, pass, and
  fail with a wrong password.

Only the addresses change: both listen on free loopback ports (the lab's own Prometheus
and Alertmanager may hold 9090 and 9093), and Prometheus's config names those instead of
Swarm's DNS names. Needs root for chroot, like test_bundle_lab_images.py.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from tests.lab.config import FLAVOURS, LabConfig
from tests.lab.infra import rootfs
from tests.lab.infra import stack as lab_stack
from tests.lab.infra.bundle_images import monitoring_images, prepare_context
from tests.unit.bundle_render import Rendered, by_default

PERSON = ("alice", secrets.token_hex(24))
PROBE = "BundleWebAuthProbe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroot(root: Path, *args: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.fail("chroot needs root (the project's tests run as root, see README.md)")
    return [shutil.which("chroot") or "/usr/sbin/chroot", str(root), *args]


def image_root(image, dest: Path) -> Path:
    """What the lab's image of `image` holds: the prepared rootfs on the lab's busybox
    (its applets as links, as tests/lab/infra/images.py builds it)."""
    root = prepare_context(image, dest) / "rootfs"
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "wget", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    # Docker gives every container a /dev/null; the health checks write to it.
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return root


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def with_secrets(root: Path, password: str) -> None:
    """The stack's secrets, made as docs/operating.md says: the machines' password with the newline
    `openssl rand -hex` leaves, the web config with its hash and a person's (the token
    is Alertmanager's webhook's, unused here)."""
    web_config = yaml.safe_load(lab_stack.web_config(password))
    web_config["basic_auth_users"][PERSON[0]] = bcrypt.hashpw(PERSON[1].encode(), bcrypt.gensalt(10)).decode()
    write(root / "run/secrets" / lab_stack.WEB_PASSWORD_SECRET, password + "\n")
    write(root / "run/secrets" / lab_stack.WEB_CONFIG_SECRET, yaml.safe_dump(web_config))
    write(root / "run/secrets" / lab_stack.SECRET, secrets.token_hex(32) + "\n")


# An alert that always fires, loaded beside the stack's rules.
PROBE_RULES = "rules/probe.yml"


def local_prometheus_config(rendered: Rendered, prometheus: int, alertmanager: int) -> str:
    """The stack's prometheus.yml, as the CLI mounts it, with Swarm's addresses replaced
    by the loopback ports; its clients' credentials untouched. The Swarm-discovered jobs
    (cAdvisor, the exporters, the receiver) are left out: none asks for a password."""
    config = yaml.safe_load(rendered.mounted_config("prometheus", "/etc/prometheus/prometheus.yml"))
    for am in config["alerting"]["alertmanagers"]:
        am.pop("dns_sd_configs")
        am["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager}"]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus}"]}]
    jobs["alertmanager"].pop("dns_sd_configs")
    jobs["alertmanager"]["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager}"]}]
    for job in (jobs["prometheus"], jobs["alertmanager"]):
        job["scrape_interval"] = job["scrape_timeout"] = "1s"
    config["scrape_configs"] = [jobs["prometheus"], jobs["alertmanager"]]
    config["rule_files"] = [*config["rule_files"], PROBE_RULES]
    return yaml.safe_dump(config, sort_keys=False)


def local_args(args: list[str]) -> list[str]:
    """The stack's arguments for a process on this host's network: without the pair's
    gossip (0.0.0.0:9094 here would be the lab's Alertmanagers' port, and one replica
    has no peer to find). What this file checks is the web config, which gossip is not."""
    return [a for a in args if not a.startswith("--cluster.")] + (
        ["--cluster.listen-address="] if any(a.startswith("--cluster.") for a in args) else [])


@dataclass
class Running:
    flavour: str
    prometheus: str  # base URL
    alertmanager: str
    password: str
    health_checks: dict[str, list[str]]  # service -> the command that runs its check


def start(root: Path, args: list[str], url: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(chroot(root, *args), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            requests.get(f"{url}/-/healthy", timeout=1)  # any answer: it listens
            return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.terminate()
    proc.wait(timeout=10)
    pytest.fail(f"{args[0]} did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module", params=FLAVOURS)
def running(request, tmp_path_factory):
    flavour = request.param
    tmp = tmp_path_factory.mktemp(f"web-auth-{flavour}")
    cfg = LabConfig(flavour=flavour, min_api=None)
    if flavour == "current":
        rootfs.ensure(cfg)
    (tmp / "render").mkdir()
    rendered = by_default(tmp / "render")
    password = secrets.token_hex(24)
    ports = {"prometheus": free_port(), "alertmanager": free_port()}
    processes, checks = [], {}
    try:
        for image in monitoring_images(cfg):
            service = image.name
            root = image_root(image, tmp / service)
            with_secrets(root, password)
            spec = rendered.container(service)
            for config in spec["Configs"]:
                write(root / config["File"]["Name"].lstrip("/"), rendered.configs[config["ConfigName"]])
            if service == "prometheus":
                write(root / "etc/prometheus/prometheus.yml",
                      local_prometheus_config(rendered, ports["prometheus"], ports["alertmanager"]))
                write(root / "etc/prometheus" / PROBE_RULES, yaml.safe_dump({"groups": [{
                    "name": "probe", "interval": "1s", "rules": [{"alert": PROBE, "expr": "vector(1)"}]}]}))
            (root / service).mkdir(exist_ok=True)  # the data volume's mount point
            processes.append(start(root, [f"/bin/{service}", *local_args(spec["Args"]),
                                          f"--web.listen-address=127.0.0.1:{ports[service]}"],
                                   f"http://127.0.0.1:{ports[service]}", tmp / f"{service}.log"))
            [kind, command] = spec["Healthcheck"]["Test"]
            assert kind == "CMD-SHELL"
            container_port = {"prometheus": 9090, "alertmanager": 9093}[service]
            checks[service] = chroot(root, "/bin/sh", "-c",
                                     command.replace(f"127.0.0.1:{container_port}", f"127.0.0.1:{ports[service]}"))
        yield Running(flavour, f"http://127.0.0.1:{ports['prometheus']}",
                      f"http://127.0.0.1:{ports['alertmanager']}", password, checks)
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.wait(timeout=20)


def wait_until(what: str, condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_every_path_answers_only_the_machines_user_and_the_people_of_the_web_config(running):
    machines = (lab_stack.WEB_USER, running.password)
    for url, paths in ((running.prometheus, ("/-/healthy", "/-/ready", "/metrics", "/api/v1/status/buildinfo",
                                             "/api/v1/query?query=up")),
                       (running.alertmanager, ("/-/healthy", "/-/ready", "/metrics", "/api/v2/status",
                                               "/api/v2/alerts"))):
        for path in paths:
            assert requests.get(url + path, timeout=5).status_code == 401, url + path
            assert requests.get(url + path, timeout=5, auth=(lab_stack.WEB_USER, running.password[:-1])
                                ).status_code == 401, url + path
            assert requests.get(url + path, timeout=5, auth=(PERSON[0], running.password)).status_code == 401, (
                url + path)  # one user's password is no other user's
            assert requests.get(url + path, timeout=5, auth=machines).status_code == 200, url + path
            assert requests.get(url + path, timeout=5, auth=PERSON).status_code == 200, url + path
        # Asked before any route: a path that does not exist says nothing without one.
        assert requests.get(f"{url}/no-such-path", timeout=5).status_code == 401, url


def test_prometheus_scrapes_itself_and_alertmanager_with_the_password_file(running):
    auth = (lab_stack.WEB_USER, running.password)

    def health():
        answer = requests.get(f"{running.prometheus}/api/v1/targets", timeout=5, auth=auth).json()
        return {t["labels"]["job"]: (t["health"], t["lastError"]) for t in answer["data"]["activeTargets"]
                if t["health"] != "unknown"}
    found = wait_until("both targets scraped", lambda: len(health()) == 2 and health())
    assert found == {"prometheus": ("up", ""), "alertmanager": ("up", "")}


def test_prometheus_delivers_its_alerts_to_alertmanager_through_its_basic_auth(running):
    auth = (lab_stack.WEB_USER, running.password)

    def probe_in_alertmanager():
        alerts = requests.get(f"{running.alertmanager}/api/v2/alerts", timeout=5, auth=auth).json()
        return [a for a in alerts if a["labels"]["alertname"] == PROBE]
    wait_until(f"{PROBE} in Alertmanager", probe_in_alertmanager)
    errors = requests.get(f"{running.prometheus}/api/v1/query", timeout=5, auth=auth,
                          params={"query": "sum(prometheus_notifications_errors_total)"}).json()
    assert float(errors["data"]["result"][0]["value"][1]) == 0, errors


def test_the_stacks_health_checks_pass_with_the_secret_and_fail_without_it(running, tmp_path):
    for service, command in running.health_checks.items():
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (service, result.stderr)
    # The same check with another password in the secret: refused, so the task would be
    # marked unhealthy rather than pass on a port that answers anyone.
    root = Path(running.health_checks["prometheus"][1])
    secret = root / "run/secrets" / lab_stack.WEB_PASSWORD_SECRET
    kept = secret.read_bytes()
    try:
        secret.write_text(secrets.token_hex(24) + "\n")
        result = subprocess.run(running.health_checks["prometheus"], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and "401" in result.stderr, result
    finally:
        secret.write_bytes(kept)
