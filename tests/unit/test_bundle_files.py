"""The bundle's files (stack.yml, the lab's override, grafana/) hold together.

Offline checks: the files parse, name files that exist, agree with each other and with
what prometheus.yml, alertmanager.yml and the receiver expect; the lab override changes
only what the lab cannot have; every dashboard query is PromQL that promtool accepts.
What `docker stack deploy` really sends for the lab is checked against a fake Engine API
in test_bundle_deploy_cli.py; the lab itself proves the rest (tests/integration).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lab.instruments import dashboard

from tests.lab.infra import monitoring
from tests.lab.infra import stack as lab_stack
from tests.lab.infra.bundle_images import MONITORING_IMAGES
from tests.lab.config import DEFAULT
from tests.lab.infra.images import PROJECT_IMAGES
from tests.lab.infra.system import LabError

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load((ROOT / "stack.yml").read_text())
LAB = yaml.safe_load((lab_stack.LAB_FILE).read_text())
SERVICES = STACK["services"]
PROJECT_SERVICES = ("exporter", "receiver", "stress")
MONITORING_SERVICES = ("cadvisor", "exporter", "prometheus", "alertmanager", "grafana")
RULES = yaml.safe_load((ROOT / "prometheus" / "rules" / "swarmguard.yml").read_text())
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def defaults(value: object) -> str:
    """A compose value with every ${VAR:-default} at its default, as deployed with no
    variable set (and a required ${VAR:?...} as the variable's name)."""
    return _REQUIRED.sub(lambda m: m.group(1), _DEFAULT.sub(lambda m: m.group(2), str(value)))


def ports(service: dict) -> list[dict]:
    return service.get("ports", [])


def merged_lab_ports(name: str) -> list[dict]:
    """The ports docker 20.10 deploys in the lab: the lab file's entries replace the base
    entries with the same published port (its merge key), others are added."""
    by_published = {defaults(p["published"]): p for p in ports(SERVICES[name])}
    for p in ports(LAB["services"].get(name) or {}):
        by_published[defaults(p["published"])] = p
    return list(by_published.values())


def lab(name: str) -> dict:
    return LAB["services"].get(name) or {}


# ------------------------------------------------------------------ stack.yml

def test_stack_yml_is_a_compose_3_8_file_with_every_bundle_service():
    assert STACK["version"] == "3.8"
    assert set(SERVICES) == {"cadvisor", "exporter", "prometheus", "alertmanager", "grafana",
                             "receiver", "stress"}
    assert lab_stack.service_names() == list(SERVICES)


def test_every_config_and_secret_file_the_stack_names_exists():
    for name, config in STACK["configs"].items():
        assert (ROOT / config["file"]).is_file(), f"config {name}: {config['file']} is missing"
    for name, secret in STACK["secrets"].items():
        if "file" in secret:
            assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} is missing"
    used = {c["source"] for s in SERVICES.values() for c in s.get("configs", [])}
    assert used == set(STACK["configs"]), "every config is used, and only declared ones"


def test_every_config_name_carries_the_config_version_so_a_redeploy_can_change_it():
    for name, config in STACK["configs"].items():
        assert "${SWARMGUARD_CONFIG_VERSION" in config["name"], name


def test_the_token_is_an_external_secret_where_alertmanager_and_the_receiver_read_it():
    assert STACK["secrets"]["swarmguard_token"] == {"external": True}
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    [hook] = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    assert hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/swarmguard_token"
    assert SERVICES["alertmanager"]["secrets"] == ["swarmguard_token"]
    assert SERVICES["receiver"]["secrets"] == ["swarmguard_token"]
    assert SERVICES["receiver"]["environment"]["SWARMGUARD_TOKEN_FILE"] == "/run/secrets/swarmguard_token"


def test_alertmanager_reaches_the_receiver_by_its_service_name_on_a_shared_network():
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    [hook] = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    assert hook["url"] == "http://receiver:8000/alerts"  # receiver/gunicorn.conf.py's bind
    for name in ("prometheus", "alertmanager", "receiver", "grafana", "cadvisor", "exporter"):
        assert SERVICES[name]["networks"] == ["swarmguard"], name
    assert STACK["networks"]["swarmguard"] == {"driver": "overlay", "attachable": True}


def test_the_project_services_take_their_images_from_your_registry_and_tag():
    # Required, no default: nobody here owns a public namespace for them (a deploy without
    # it is refused, test_bundle_deploy_cli.py).
    for name in PROJECT_SERVICES:
        assert SERVICES[name]["image"] == (
            f"${{SWARMGUARD_REGISTRY:?set SWARMGUARD_REGISTRY to your registry}}/{name}"
            f":${{SWARMGUARD_VERSION:-latest}}")


def test_third_party_images_are_pinned_to_a_version():
    for name in ("cadvisor", "prometheus", "alertmanager", "grafana"):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: {image}"


def version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in SERVICES[name]["image"].rsplit(":v", 1)[-1].rsplit(":", 1)[-1].split("."))


def test_third_party_images_are_versions_that_work_on_engine_29():
    # cAdvisor: from ghcr.io, >= 0.54 (API negotiation, containerd image store).
    assert SERVICES["cadvisor"]["image"].startswith("ghcr.io/google/cadvisor:")
    assert version("cadvisor") >= (0, 54, 0)
    # Prometheus 3 (2.x's Swarm discovery is refused by Engine 29.0-29.2), Alertmanager as
    # in the lab's current flavour, Grafana 11 or 12.
    assert version("prometheus")[0] == 3
    assert version("alertmanager")[:2] == (0, 33)
    assert version("grafana")[0] in (11, 12)


def test_every_service_has_cpu_and_memory_limits():
    for name, service in SERVICES.items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[MG]", limits["memory"]), name


def test_every_published_port_is_explained_by_a_comment():
    lines = (ROOT / "stack.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- target:"):
            assert lines[i - 1].strip().startswith("#"), f"stack.yml:{i + 1}: port without a comment"


def test_cadvisor_and_the_exporter_publish_in_host_mode_on_every_node_as_prometheus_yml_expects():
    prometheus = (ROOT / "prometheus" / "prometheus.yml").read_text()
    for name, port, variable in (("cadvisor", "8080", "SWARMGUARD_CADVISOR_PORT"),
                                 ("exporter", "9101", "SWARMGUARD_EXPORTER_PORT")):
        assert SERVICES[name]["deploy"]["mode"] == "global"
        [published] = ports(SERVICES[name])
        assert published["mode"] == "host" and defaults(published["published"]) == port
        assert published["published"] == f"${{{variable}:-{port}}}", "its published port can move"
        assert f"regex: swarmguard_{name}\n" in prometheus, "prometheus.yml keeps this service's tasks"
        # The overlay fallback (0.0.0.0 node address) scrapes the container port.
        assert f"replacement: $1:{published['target']}\n" in prometheus, name


def test_cadvisor_runs_at_a_dashboards_pace_with_only_the_swarm_labels_the_lab_uses():
    command = SERVICES["cadvisor"]["command"]
    assert f"-housekeeping_interval={monitoring.CADVISOR_HOUSEKEEPING}" in command
    assert "-allow_dynamic_housekeeping=false" not in command  # idle containers back off
    assert "-docker_only" in command
    assert "-store_container_labels=false" in command
    assert f"-whitelisted_container_labels={monitoring.CADVISOR_LABELS}" in command


def test_the_exporter_reads_its_nodes_docker_proc_and_cgroups_read_only():
    service = SERVICES["exporter"]
    env = service["environment"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert env["SWARMGUARD_EXPORTER_DOCKER_URL"] == "unix:///var/run/docker.sock"
    assert mounted[env["SWARMGUARD_EXPORTER_PROC_ROOT"]] == "/proc"
    assert mounted[env["SWARMGUARD_EXPORTER_CGROUP_ROOT"]] == "/sys/fs/cgroup"
    assert all(v.endswith(":ro") for v in service["volumes"])
    assert float(defaults(env["SWARMGUARD_EXPORTER_CAPACITY_MBPS"])) > 0
    assert ports(service)[0]["target"] == 9101  # exporter/config.py's default


def test_prometheus_runs_on_a_manager_with_its_config_rules_socket_and_volume():
    service = SERVICES["prometheus"]
    assert service["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    targets = {c["source"]: c["target"] for c in service["configs"]}
    assert targets["prometheus_yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    assert targets["prometheus_rules"].startswith("/etc/prometheus/rules/")
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
    volumes = [defaults(v) for v in service["volumes"]]
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in volumes
    assert "prometheus-data:/prometheus" in volumes
    assert service["user"] == "root"


def test_prometheus_publishes_no_lifecycle_endpoint_and_bounds_its_disk_use():
    command = SERVICES["prometheus"]["command"]
    assert "--web.enable-lifecycle" not in command, "POST /-/quit without authentication on 9090"
    [size] = [defaults(c) for c in command if c.startswith("--storage.tsdb.retention.size=")]
    assert re.fullmatch(r"--storage.tsdb.retention.size=\d+(GB|MB)", size)


def test_grafanas_admin_password_comes_from_an_external_swarm_secret():
    service = SERVICES["grafana"]
    [secret] = service["secrets"]
    assert STACK["secrets"][secret] == {"external": True}
    assert service["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"/run/secrets/{secret}"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in service["environment"]


def test_the_receiver_runs_on_a_manager_with_the_docker_socket():
    service = SERVICES["receiver"]
    assert service["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert [defaults(v) for v in service["volumes"]] == ["/var/run/docker.sock:/var/run/docker.sock"]
    assert service["environment"]["SWARMGUARD_DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert "ports" not in service, "the webhook is reached over the overlay network only"


def test_the_demo_service_is_opted_in_with_replica_limits_start_first_and_rollback():
    deploy = SERVICES["stress"]["deploy"]
    assert deploy["labels"] == {"swarmguard.enable": "true", "swarmguard.replicas.min": "1",
                                "swarmguard.replicas.max": "3"}
    # No constraint: a one-node swarm (a manager only) runs it too.
    assert "placement" not in deploy
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    assert deploy["resources"]["limits"] == {"cpus": "0.5", "memory": "256M"}


def test_the_demo_service_names_its_task_and_node_and_checks_its_health_every_second():
    service = SERVICES["stress"]
    assert service["environment"] == {
        "SWARM_TASK_NAME": "{{.Task.Name}}", "SWARM_TASK_ID": "{{.Task.ID}}",
        "SWARM_NODE_HOSTNAME": "{{.Node.Hostname}}", "SWARM_NODE_ID": "{{.Node.ID}}",
        "SWARM_SERVICE_NAME": "{{.Service.Name}}"}
    assert service["healthcheck"]["interval"] == "1s"
    assert "start_interval" not in service["healthcheck"]  # Engine 25 only
    [port] = ports(service)
    assert port["target"] == 8080 and port["published"] == DEFAULT.app_published_port


# ------------------------------------------------------------------ tests/lab/infra/stack.lab.yml

def test_the_lab_file_only_overrides_services_of_the_stack():
    assert set(LAB) == {"version", "services"}
    assert LAB["version"] == STACK["version"]
    assert set(LAB["services"]) == set(SERVICES), "every service is overridden (dnsrr at least)"


def test_in_the_lab_every_service_resolves_by_dns_round_robin_and_publishes_in_host_mode():
    for name in SERVICES:
        assert lab(name)["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in merged_lab_ports(name):
            assert port.get("mode") == "host", f"{name}: {port}"


def test_the_lab_file_changes_nothing_docker_20_10_would_merge_into_a_duplicate():
    for name in SERVICES:
        base = {defaults(p["published"]): p for p in ports(SERVICES[name])}
        for port in ports(lab(name)):
            # Same published port (the merge key), same target and protocol: a replacement.
            assert port["published"] in {int(k) for k in base}, f"{name}: {port} adds a port"
            original = base[str(port["published"])]
            assert (port["target"], port["protocol"]) == (original["target"], original["protocol"])
        # Volumes are appended, not replaced, by docker 20.10: a lab mount must not land
        # where the bundle already mounts something (the lab sets SWARMGUARD_DOCKER_SOCKET
        # rather than mount a second socket at /var/run/docker.sock).
        base_targets = {v.split(":")[1] for v in SERVICES[name].get("volumes", []) if isinstance(v, str)}
        for volume in lab(name).get("volumes", []):
            assert volume.split(":")[1] not in base_targets, f"{name}: {volume} collides"


def test_in_the_lab_every_service_that_runs_has_a_lab_built_image():
    built = set(PROJECT_IMAGES) | {image.tag for image in MONITORING_IMAGES}
    for name in SERVICES:
        if name in lab_stack.NOT_IN_LAB:
            assert "image" not in lab(name), name
        else:
            assert lab(name)["image"] in built, name


def test_deploy_names_each_lab_image_by_id_so_no_node_asks_a_registry():
    tags = {lab(n)["image"] for n in SERVICES if "image" in lab(n)}
    ids = {tag: f"sha256:{i:064x}" for i, tag in enumerate(sorted(tags))}
    pinned = lab_stack.images_by_id(ids)["services"]
    assert pinned == {n: {"image": ids[lab(n)["image"]]} for n in SERVICES if "image" in lab(n)}
    with pytest.raises(LabError, match="did not build"):
        lab_stack.images_by_id({})


def test_the_lab_gives_cadvisor_and_grafana_no_node():
    for name in lab_stack.NOT_IN_LAB:
        constraints = lab(name)["deploy"]["placement"]["constraints"]
        assert constraints == ["node.labels.swarmguard-lab.no-such == 1"], name


def test_the_lab_exporter_reads_the_docker_socket_of_its_own_node():
    service = lab("exporter")
    assert service["environment"]["SWARMGUARD_EXPORTER_DOCKER_URL"] == (
        f"unix://{DEFAULT.run_dir}/{{{{.Node.Hostname}}}}.sock")
    assert f"{DEFAULT.run_dir}:{DEFAULT.run_dir}:ro" in service["volumes"]
    assert service["environment"]["SWARMGUARD_EXPORTER_CAPACITY_MBPS"] == str(DEFAULT.node_capacity_mbps)


def test_the_lab_ports_avoid_those_the_labs_own_processes_hold_on_every_node():
    taken = {DEFAULT.cadvisor_port, monitoring.EXPORTER_PORT}
    assert lab_stack.EXPORTER_PORT not in taken | {DEFAULT.app_published_port}
    for name in SERVICES:
        if name in lab_stack.NOT_IN_LAB or name == "exporter":
            continue
        for port in merged_lab_ports(name):
            assert port["published"] not in taken, f"{name}: {port}"
    [app] = merged_lab_ports("stress")
    assert app["published"] == DEFAULT.app_published_port  # where HAProxy looks


def test_the_lab_mounts_the_managers_docker_socket_and_versions_configs_by_content():
    env = lab_stack.environment(DEFAULT)
    assert env["SWARMGUARD_DOCKER_SOCKET"] == str(DEFAULT.docker_socket(DEFAULT.manager))
    assert env["SWARMGUARD_EXPORTER_PORT"] == str(lab_stack.EXPORTER_PORT)
    assert re.fullmatch(r"[0-9a-f]{12}", env["SWARMGUARD_CONFIG_VERSION"])
    assert lab_stack.config_version() == env["SWARMGUARD_CONFIG_VERSION"]


def test_the_lab_file_says_what_deploy_sets_for_it():
    text = (lab_stack.LAB_FILE).read_text()
    for name, value in lab_stack.environment(DEFAULT).items():
        if name != "SWARMGUARD_CONFIG_VERSION":
            assert f"{name}={value}" in text, name


# ------------------------------------------------------------------ grafana/

DASHBOARD = dashboard.load()
DATASOURCES = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/swarmguard.yml").read_text())


def test_the_datasource_is_the_stacks_prometheus_with_the_uid_the_dashboard_opens_with():
    [source] = DATASOURCES["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == source["uid"]


def test_the_dashboard_provider_reads_where_the_stack_mounts_the_dashboard():
    [provider] = PROVIDERS["providers"]
    mounted = {c["source"]: c["target"] for c in SERVICES["grafana"]["configs"]}
    assert Path(mounted["grafana_dashboard"]).parent == Path(provider["options"]["path"])
    assert mounted["grafana_datasource"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounted["grafana_dashboard_provider"].startswith("/etc/grafana/provisioning/dashboards/")


def test_every_panel_and_annotation_queries_through_the_datasource_variable():
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    [annotation] = [a for a in DASHBOARD["annotations"]["list"] if "expr" in a]
    assert annotation["datasource"]["uid"] == "${datasource}"
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


def test_the_dashboard_draws_every_percentage_its_threshold_the_alerts_and_the_actions():
    exprs = "\n".join(q.expr for q in dashboard.queries(DASHBOARD))
    for needed in ("swarmguard:task_cpu:percent", "swarmguard:task_memory:percent",
                   "swarmguard:task_network:percent", "swarmguard:service_replicas:count",
                   'ALERTS{alertname=~"SwarmGuard.*"', "swarmguard_action_duration_seconds_bucket",
                   "swarmguard_recovery_duration_seconds_bucket", "swarmguard_actions_total"):
        assert needed in exprs, needed
    recorded = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
    # Every percentage threshold is drawn as a line on its panel (the start-up grace is a
    # duration: no panel has an axis for it).
    for threshold in (r for r in recorded
                      if r.startswith("swarmguard:threshold:") and r.endswith("_percent")):
        assert threshold in exprs, f"{threshold} is not drawn"
    [annotation] = [a for a in DASHBOARD["annotations"]["list"] if "expr" in a]
    assert "swarmguard_last_action_timestamp_seconds" in annotation["expr"]
    assert annotation["useValueForTime"] is True  # the gauge's value is the action's time


def test_every_recording_rule_the_dashboard_reads_is_defined_in_the_rules():
    recorded = {r["record"] for path in (ROOT / "prometheus" / "rules").glob("*.yml")
                for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r}
    used = {name for q in dashboard.queries(DASHBOARD)
            for name in re.findall(r"swarmguard:[\w:]+", q.expr)}
    assert used and used <= recorded, used - recorded


def test_every_receiver_metric_the_dashboard_reads_is_one_the_receiver_exports():
    from receiver.ground_truth import METRIC_NAMES
    from receiver.metrics import Metrics

    exported = set(METRIC_NAMES)
    for family in Metrics().registry.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket",
                     f"{family.name}_sum", f"{family.name}_count"}
    used = {name for q in dashboard.queries(DASHBOARD)
            for name in re.findall(r"\bswarmguard_\w+", q.expr)
            if not name.startswith("swarmguard_exporter_")}  # the exporters' own, not the receiver's
    assert used and used <= exported, used - exported


def test_dashboard_variables_become_what_grafana_sends_and_unknown_ones_are_refused():
    assert dashboard.substitute('x{service=~"$service"}[$__rate_interval]', DASHBOARD) == 'x{service=~".*"}[1m]'
    assert dashboard.substitute('label_replace(x, "a", "$1", "b", "(.+)")', DASHBOARD) == (
        'label_replace(x, "a", "$1", "b", "(.+)")')
    with pytest.raises(ValueError, match=r"\$nosuch"):
        dashboard.substitute('x{a="$nosuch"}', DASHBOARD)


def promtool_check(queries: list[dashboard.Query], tmp_path: Path) -> subprocess.CompletedProcess:
    """promtool's own parser on every query: each becomes one recording rule of a
    temporary rules file (promtool check rules parses every expression)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH; install it: apt-get install -y prometheus")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": q.expr} for i, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_every_dashboard_query_is_promql_that_promtool_accepts(tmp_path):
    queries = dashboard.promql(DASHBOARD)
    assert len(queries) >= 10
    result = promtool_check(queries, tmp_path)
    assert result.returncode == 0, "\n".join(
        [f"{q.where}: {q.expr}" for q in queries] + [result.stdout, result.stderr])


def test_the_promql_check_rejects_a_broken_query(tmp_path):
    broken = [dashboard.Query("broken", "sum by (service (swarmguard:task_cpu:percent)")]
    assert promtool_check(broken, tmp_path).returncode != 0


# ------------------------------------------------------------------ README.md

def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_runbook_url_of_the_rules_has_its_section_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    anchors = {github_anchor(line.lstrip("#")) for line in readme.splitlines()
               if line.startswith("#")}
    urls = {r["annotations"]["runbook_url"]
            for path in (ROOT / "prometheus" / "rules").glob("*.yml")
            for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert len(urls) == 5  # three scenarios, SwarmGuardBlind, SwarmGuardCannotAct
    for url in urls:
        path, _, anchor = url.partition("#")
        assert path == "README.md" and anchor in anchors, url


def test_the_readme_walks_through_deploying_on_your_swarm():
    readme = (ROOT / "README.md").read_text()
    for needed in ("## Deploying SwarmGuard on your swarm", "docker secret create swarmguard_token",
                   "docker secret create swarmguard_grafana_admin_password",
                   "docker stack deploy --with-registry-auth -c stack.yml swarmguard", "amtool silence add",
                   "--label-add swarmguard.enable=true", "swarmguard.replicas.max",
                   "SWARMGUARD_CONFIG_VERSION", "## Tuning", ":3000", "SWARMGUARD_CADVISOR_PORT",
                   "2377/tcp", "7946/tcp", "7946/udp", "4789/udp"):
        assert needed in readme, needed
    # Every deploy command passes the registry credentials to the nodes.
    deploys = re.findall(r"docker stack deploy [^`\n]*-c stack\.yml[^`\n]*", readme)
    assert deploys and all("--with-registry-auth" in line for line in deploys), deploys


def test_docker_stops_the_receiver_only_after_it_has_had_its_shutdown_deadline():
    import runpy

    from receiver.config import Settings
    deadline = Settings(token="t").shutdown_deadline
    gunicorn = runpy.run_path(str(ROOT / "receiver" / "gunicorn.conf.py"))
    grace = SERVICES["receiver"]["stop_grace_period"]
    assert grace.endswith("s")
    # SIGTERM -> work in progress gets `deadline` -> gunicorn kills its worker at
    # graceful_timeout -> Docker SIGKILLs the container at stop_grace_period.
    assert deadline < gunicorn["graceful_timeout"] < int(grace[:-1])
