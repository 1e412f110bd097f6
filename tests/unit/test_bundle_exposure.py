"""The bundle publishes nothing that answers without a credential.

stack.yml is rendered by the docker CLI (bundle_render.py: alone, as a user deploys it,
and merged with the lab's override, as the lab does) and held to docs/contract.md, "What
the bundle publishes": every published port is one that table lists, with the
authentication it names, and that authentication is really there (a web config on the
command line, Grafana's login settings). Prometheus and Alertmanager run with their web
config wherever they run, and every client of theirs the stack configures (Prometheus's
alerting and scrape jobs, Grafana's datasource, a service's *_URL setting, the health
checks) sends the machines' user and the password from the secret the contract names.

Each check returns the problems it finds; the last tests break a rendered stack on
purpose and see each check name the break. That the credentials are accepted, and that
without them the answer is 401, is run by the real programs in test_bundle_web_auth.py.
"""
from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml

from tests.lab.config import DEFAULT
from tests.lab.infra import stack as lab_stack
from tests.lab.infra.monitoring import render_swarm_template
from tests.unit.bundle_render import Rendered, by_default, in_the_lab

STACK = lab_stack.load(lab_stack.STACK_FILE)
# Prometheus and Alertmanager: the services whose web config asks for a password.
WEB_SERVERS = tuple(name for name, service in STACK["services"].items()
                    if re.match(r"prom/(prometheus|alertmanager):", service.get("image", "")))
PROMETHEUS_PORT = 9090  # where `localhost` in Prometheus's own config is Prometheus itself
WEB_CONFIG_FLAG = "--web.config.file="


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory) -> Rendered:
    return by_default(tmp_path_factory.mktemp("exposure-default"))


@pytest.fixture(scope="module")
def lab_stack_rendered(tmp_path_factory) -> Rendered:
    return in_the_lab(tmp_path_factory.mktemp("exposure-lab"))


@pytest.fixture(params=["by default", "in the lab"])
def rendered(request, default_stack, lab_stack_rendered) -> Rendered:
    return default_stack if request.param == "by default" else lab_stack_rendered


# ------------------------------------------------------------------ the checks

def unlisted_ports(rendered: Rendered, allowed: dict[int, str]) -> list[str]:
    """Published ports the list does not name for that service, and listed ones nothing
    publishes (a stale list)."""
    published = {(port, service) for port, service, _ in rendered.published()}
    listed = set(allowed.items())
    return ([f"{service} publishes {port}, which the list does not name" for port, service in sorted(published - listed)]
            + [f"{service} does not publish {port}, which the list names" for port, service in sorted(listed - published)])


def mounted_secret(rendered: Rendered, service: str, path: str | None) -> str | None:
    """The secret mounted at `path` in the service, or None."""
    return None if path is None else rendered.secret_files(service).get(PurePosixPath(path))


def web_config_problems(rendered: Rendered, service: str) -> list[str]:
    files = [a.removeprefix(WEB_CONFIG_FLAG) for a in rendered.container(service).get("Args", [])
             if a.startswith(WEB_CONFIG_FLAG)]
    if not files:
        return [f"{service} runs without {WEB_CONFIG_FLAG}"]
    if mounted_secret(rendered, service, files[-1]) != lab_stack.WEB_CONFIG_SECRET:
        return [f"{service}'s {WEB_CONFIG_FLAG}{files[-1]} is not the secret {lab_stack.WEB_CONFIG_SECRET}"]
    return []


def grafana_login_problems(rendered: Rendered, service: str) -> list[str]:
    env = rendered.env(service)
    problems = [f"{service}: {key} is not {value}" for key, value in (
        ("GF_AUTH_ANONYMOUS_ENABLED", "false"), ("GF_USERS_ALLOW_SIGN_UP", "false"))
        if env.get(key) != value]
    if env.get("GF_AUTH_PROXY_ENABLED") == "true":
        problems.append(f"{service}: GF_AUTH_PROXY_ENABLED trusts a header anyone can send")
    if "GF_SECURITY_ADMIN_PASSWORD" in env:
        problems.append(f"{service}: the admin password is in the spec")
    if mounted_secret(rendered, service, env.get("GF_SECURITY_ADMIN_PASSWORD__FILE")) is None:
        problems.append(f"{service}: the admin password is no mounted secret")
    return problems


# The authentication kinds the contract's table may name, each with its check.
AUTHENTICATION_CHECKS = {"web config": web_config_problems, "Grafana login": grafana_login_problems}


def authentication_problems(rendered: Rendered, table: dict[int, lab_stack.Published]) -> list[str]:
    problems = []
    for row in table.values():
        check = AUTHENTICATION_CHECKS.get(row.authentication)
        if check is None:
            problems.append(f"{row.port}: no check knows the authentication {row.authentication!r}")
        elif row.service not in rendered.services:
            problems.append(f"{row.port}: no service {row.service}")
        else:
            problems += check(rendered, row.service)
    return problems


def names_a_web_server(host: str | None, port: int | None) -> bool:
    return host in {*WEB_SERVERS, *(f"tasks.{s}" for s in WEB_SERVERS)} or (
        host in ("localhost", "127.0.0.1") and port == PROMETHEUS_PORT)


def sends_password(rendered: Rendered, service: str, user: str | None, password_file: str | None) -> bool:
    return (user == lab_stack.WEB_USER
            and mounted_secret(rendered, service, password_file) == lab_stack.WEB_PASSWORD_SECRET)


PROMETHEUS_SERVICES = ("prometheus", "prometheus-detection")


def prometheus_config(rendered: Rendered, service: str = "prometheus") -> dict:
    """The config the service's Prometheus loads (a config template as Swarm renders it
    for its first task)."""
    [config_file] = [a.split("=", 1)[1] for a in rendered.container(service)["Args"]
                     if a.startswith("--config.file=")]
    return yaml.safe_load(render_swarm_template(
        rendered.mounted_config(service, config_file).decode(), slot=1,
        env={**rendered.env(service), "SWARMGUARD_DETECTION_INSTANCES": "1"}))


def job_targets(job: dict) -> list[tuple[str | None, int | None]]:
    """(host, port) of what a scrape job may scrape: static targets, DNS names, and the
    Swarm services its relabelling keeps."""
    found = [(urlparse(f"//{t}").hostname, urlparse(f"//{t}").port)
             for static in job.get("static_configs", []) for t in static["targets"]]
    found += [(name, sd.get("port")) for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
    found += [(rule["regex"].removeprefix(f"{lab_stack.NAME}_"), None) for rule in job.get("relabel_configs", [])
              if rule.get("source_labels") == ["__meta_dockerswarm_service_name"] and rule.get("action") == "keep"]
    return found


def clients(rendered: Rendered) -> dict[str, bool]:
    """Every client of Prometheus or Alertmanager the stack configures -> whether it sends
    the machines' user and the web password secret."""
    found = {}
    for prometheus in PROMETHEUS_SERVICES:
        config = prometheus_config(rendered, prometheus)
        for i, alertmanager in enumerate(config.get("alerting", {}).get("alertmanagers", [])):
            auth = alertmanager.get("basic_auth", {})
            found[f"{prometheus} alerting {i}"] = sends_password(
                rendered, prometheus, auth.get("username"), auth.get("password_file"))
        for job in config["scrape_configs"]:
            if any(names_a_web_server(host, port) for host, port in job_targets(job)):
                auth = job.get("basic_auth", {})
                found[f"{prometheus} job {job['job_name']}"] = sends_password(
                    rendered, prometheus, auth.get("username"), auth.get("password_file"))
    for mount in rendered.container("grafana").get("Configs", []):
        if not mount["File"]["Name"].startswith("/etc/grafana/provisioning/datasources/"):
            continue
        for source in yaml.safe_load(rendered.configs[mount["ConfigName"]])["datasources"]:
            if names_a_web_server(urlparse(source["url"]).hostname, urlparse(source["url"]).port):
                password = re.fullmatch(r"\$__file\{(.+)\}",
                                        source.get("secureJsonData", {}).get("basicAuthPassword", ""))
                found[f"grafana datasource {source['name']}"] = source.get("basicAuth") is True and sends_password(
                    rendered, "grafana", source.get("basicAuthUser"), password and password.group(1))
    for service in rendered.services:
        env = rendered.env(service)
        for key, value in env.items():
            # A URL, or a comma-separated list of them (SWARMGUARD_PROMETHEUS_URL).
            urls = [urlparse(v) for v in value.split(",")] if key.endswith("_URL") else []
            if any(names_a_web_server(url.hostname, url.port) for url in urls):
                prefix = key.removesuffix("_URL")
                found[f"{service} {key}"] = sends_password(rendered, service, env.get(f"{prefix}_USER"),
                                                           env.get(f"{prefix}_PASSWORD_FILE"))
    for service in WEB_SERVERS:
        check = " ".join(rendered.container(service).get("Healthcheck", {}).get("Test", []))
        if check:
            sent = re.search(r"://([^:/@]+):\$\(cat ([^)]+)\)@", check)
            found[f"{service} health check"] = bool(sent) and sends_password(
                rendered, service, sent.group(1), sent.group(2))
    return found


# ------------------------------------------------------------------ the stack

def test_by_default_every_published_port_is_one_the_contract_lists(default_stack):
    # Catches a port published without a password (a reader's host port, the demo app,
    # the receiver's /metrics), and a contract that lists a port nothing publishes.
    allowed = {row.port: row.service for row in lab_stack.contract_published().values()}
    assert unlisted_ports(default_stack, allowed) == []
    assert {port for port, _, _ in default_stack.published()} == {9090, 9093, 3000}


def test_in_the_lab_only_the_demo_apps_port_for_the_entry_point_is_added(lab_stack_rendered):
    # Catches a lab override that publishes more than its header accounts for.
    assert unlisted_ports(lab_stack_rendered, lab_stack.published_in_the_lab(DEFAULT)) == []


def test_every_published_port_asks_for_the_authentication_the_contract_names(rendered):
    # Catches a kind of authentication the contract claims that the stack does not set
    # up (no web config on the command line, anonymous Grafana).
    assert authentication_problems(rendered, lab_stack.contract_published()) == []


def test_prometheus_and_alertmanager_run_with_the_web_config_wherever_they_run(rendered):
    # Catches a Prometheus or Alertmanager without basic auth, published or not: the
    # lab's override or a new replica of either must not drop it.
    assert set(WEB_SERVERS) == {"prometheus", "prometheus-detection", "alertmanager"}
    for service in WEB_SERVERS:
        assert web_config_problems(rendered, service) == [], service


def test_every_client_of_prometheus_and_alertmanager_sends_the_machines_user_and_password(rendered):
    # Catches a client that would get 401 from the web config: Prometheus's alerts never
    # delivered, its own targets down, an empty Grafana, a receiver that cannot ask
    # Prometheus, health checks that fail and restart both forever.
    assert clients(rendered) == {
        "prometheus alerting 0": True,
        "prometheus job prometheus": True,
        "prometheus job swarmguard-detection-prometheus": True,
        "prometheus job alertmanager": True,
        "prometheus-detection alerting 0": True,
        "grafana datasource SwarmGuard Prometheus": True,
        "receiver SWARMGUARD_PROMETHEUS_URL": True,
        "prometheus health check": True,
        "prometheus-detection health check": True,
        "alertmanager health check": True,
    }


def test_the_contracts_secrets_are_the_stacks_mounted_where_it_says(default_stack):
    # Catches a secret the stack adds, drops or mounts elsewhere while the contract (the
    # one list a person creates them from) says otherwise.
    section = lab_stack.CONTRACT.read_text().split(lab_stack.CONTRACT_SECTION, 1)[1]
    listed = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`swarmguard_\w+`", cells[0]):
            listed[cells[0].strip("`")] = set(re.findall(r"`([\w-]+)`", cells[2]))
    mounted = {}
    for service in default_stack.services:
        for secret in default_stack.secret_files(service).values():
            mounted.setdefault(secret, set()).add(service)
    assert listed == mounted
    assert {name for name, secret in STACK["secrets"].items() if secret == {"external": True}} == set(listed)


# ------------------------------------------------------------------ the checks can fail

def broken(rendered: Rendered, service: str, change) -> Rendered:
    copied = Rendered(copy.deepcopy(rendered.services), dict(rendered.configs))
    change(copied.container(service), copied)
    return copied


def test_a_port_the_list_does_not_name_is_caught(default_stack):
    allowed = {row.port: row.service for row in lab_stack.contract_published().values()}

    def publish_9101(_, copied):
        copied.services["exporter"]["EndpointSpec"]["Ports"] = [
            {"Protocol": "tcp", "TargetPort": 9101, "PublishedPort": 9101, "PublishMode": "host"}]
    assert unlisted_ports(broken(default_stack, "exporter", publish_9101), allowed) == [
        "exporter publishes 9101, which the list does not name"]
    assert unlisted_ports(default_stack, {**allowed, 8081: "stress"}) == [
        "stress does not publish 8081, which the list names"]


def test_a_prometheus_or_alertmanager_without_its_web_config_is_caught(default_stack):
    def drop_flag(container, _):
        container["Args"] = [a for a in container["Args"] if not a.startswith(WEB_CONFIG_FLAG)]

    def drop_secret(container, _):
        container["Secrets"] = [s for s in container["Secrets"] if s["SecretName"] != lab_stack.WEB_CONFIG_SECRET]
    for service in WEB_SERVERS:
        assert web_config_problems(broken(default_stack, service, drop_flag), service) == [
            f"{service} runs without {WEB_CONFIG_FLAG}"]
        assert web_config_problems(broken(default_stack, service, drop_secret), service) == [
            f"{service}'s {WEB_CONFIG_FLAG}/run/secrets/swarmguard_web_config is not the secret swarmguard_web_config"]


def test_an_anonymous_grafana_and_an_unknown_kind_of_authentication_are_caught(default_stack):
    def anonymous(container, _):
        container["Env"] = [e for e in container["Env"] if not e.startswith("GF_AUTH_ANONYMOUS_ENABLED=")]
        container["Env"] += ["GF_AUTH_ANONYMOUS_ENABLED=true", "GF_SECURITY_ADMIN_PASSWORD=admin"]
    assert grafana_login_problems(broken(default_stack, "grafana", anonymous), "grafana") == [
        "grafana: GF_AUTH_ANONYMOUS_ENABLED is not false", "grafana: the admin password is in the spec"]
    table = {3000: lab_stack.Published(3000, "grafana", "a firewall")}
    assert authentication_problems(default_stack, table) == [
        "3000: no check knows the authentication 'a firewall'"]


def test_a_client_without_the_user_or_the_password_secret_is_caught(default_stack):
    def prometheus_without_auth(container, copied):
        [config] = [c["ConfigName"] for c in container["Configs"] if c["File"]["Name"].endswith("prometheus.yml")]
        text = yaml.safe_load(copied.configs[config])
        del text["alerting"]["alertmanagers"][0]["basic_auth"]
        # A new mapping: the file shares one (`*web_auth`) among its clients.
        text["scrape_configs"][0]["basic_auth"] = {**text["scrape_configs"][0]["basic_auth"], "username": "admin"}
        copied.configs[config] = yaml.safe_dump(text).encode()

    def grafana_without_auth(container, copied):
        [config] = [c["ConfigName"] for c in container["Configs"] if "/datasources/" in c["File"]["Name"]]
        text = yaml.safe_load(copied.configs[config])
        text["datasources"][0]["basicAuth"] = False
        copied.configs[config] = yaml.safe_dump(text).encode()

    def receiver_without_password(container, _):
        container["Env"] = [e for e in container["Env"] if not e.startswith("SWARMGUARD_PROMETHEUS_PASSWORD_FILE=")]

    def health_check_without_password(container, _):
        container["Healthcheck"]["Test"] = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/healthy"]

    def password_secret_not_mounted(container, _):
        container["Secrets"] = [s for s in container["Secrets"] if s["SecretName"] != lab_stack.WEB_PASSWORD_SECRET]

    for service, change, failing in (
            ("prometheus", prometheus_without_auth, {"prometheus alerting 0", "prometheus job prometheus"}),
            ("grafana", grafana_without_auth, {"grafana datasource SwarmGuard Prometheus"}),
            ("receiver", receiver_without_password, {"receiver SWARMGUARD_PROMETHEUS_URL"}),
            ("alertmanager", health_check_without_password, {"alertmanager health check"}),
            ("prometheus", password_secret_not_mounted, {"prometheus alerting 0", "prometheus job prometheus",
                                                         "prometheus job swarmguard-detection-prometheus",
                                                         "prometheus job alertmanager", "prometheus health check"}),
            ("prometheus-detection", password_secret_not_mounted, {"prometheus-detection alerting 0",
                                                                   "prometheus-detection health check"})):
        found = clients(broken(default_stack, service, change))
        assert {name for name, ok in found.items() if not ok} == failing, change.__name__
        assert len(found) == 10, change.__name__  # the broken client is still found


def test_the_contracts_table_is_read_and_a_contract_without_it_is_refused():
    # Catches a reader that finds no rows (every port would then be "unlisted", or a
    # renamed section silently checked against nothing).
    table = lab_stack.contract_published(
        "## What the bundle publishes (`stack.yml`)\n\n| port | service | published | authentication |\n"
        "|---|---|---|---|\n| 9090 | `prometheus` | routing mesh | `web config`: basic auth |\n\n## Next\n"
        "| 1 | `x` | y | `z` |\n")
    assert table == {9090: lab_stack.Published(9090, "prometheus", "web config")}
    with pytest.raises(lab_stack.LabError, match="no section"):
        lab_stack.contract_published("# a contract\n")
