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
from urllib.parse import urlparse

import pytest
import yaml

from tests.lab.instruments import dashboard

from tests.lab.infra import monitoring
from tests.lab.infra import stack as lab_stack
from tests.lab.infra.bundle_images import MONITORING_IMAGES
from tests.lab.config import DEFAULT
from tests.lab.infra.images import PROJECT_IMAGES
from tests.lab.infra.monitoring import render_swarm_template
from tests.lab.infra.system import LabError

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load((ROOT / "stack.yml").read_text())
LAB = yaml.safe_load((lab_stack.LAB_FILE).read_text())
SERVICES = STACK["services"]
CONFIGS = STACK["configs"]
PROMETHEUS = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
# The detection template as Swarm renders it for one task of one.
DETECTION = yaml.safe_load(render_swarm_template(
    (ROOT / "prometheus" / "prometheus-detection.yml").read_text(), slot=1,
    env={"SWARMGUARD_DETECTION_INSTANCES": "1"}))
PROJECT_SERVICES = ("exporter", "receiver", "stress")
MONITORING_SERVICES = ("cadvisor", "exporter", "prometheus", "prometheus-detection", "alertmanager",
                       "grafana")
# Every rule file, as one: the groups of all of them.
RULES = {"groups": [g for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
                    for g in yaml.safe_load(path.read_text())["groups"]]}
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

def test_every_service_another_file_names_is_a_service_of_the_stack():
    # Catches a renamed or dropped service that another file still reaches by name: the
    # webhook URL (Alertmanager -> receiver), Prometheus's alerting target and the
    # job regexes that keep the stack's tasks, Grafana's datasource.
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    [hook] = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    named = {urlparse(hook["url"]).hostname}
    for prometheus in (PROMETHEUS, DETECTION):
        for am in prometheus["alerting"]["alertmanagers"]:
            for sd in am.get("dns_sd_configs", []):
                named |= {n.removeprefix("tasks.") for n in sd["names"]}
            for static in am.get("static_configs", []):
                named |= {t.split(":")[0] for t in static["targets"]}
        for job in prometheus["scrape_configs"]:
            for sd in job.get("dns_sd_configs", []):
                named |= {n.removeprefix("tasks.") for n in sd["names"]}
            for rule in job.get("relabel_configs", []):
                if rule.get("source_labels") == ["__meta_dockerswarm_service_name"] and rule.get("action") == "keep":
                    named.add(rule["regex"].removeprefix(f"{lab_stack.NAME}_"))
    receiver_env = SERVICES["receiver"]["environment"]
    named |= {urlparse(u).hostname.removeprefix("tasks.")
              for u in receiver_env["SWARMGUARD_PROMETHEUS_URL"].split(",")}
    [source] = DATASOURCES["datasources"]
    named.add(urlparse(source["url"]).hostname)
    assert {"receiver", "alertmanager", "prometheus", "prometheus-detection", "exporter",
            "cadvisor"} <= named
    assert named <= set(SERVICES), named - set(SERVICES)


def test_every_config_and_secret_file_the_stack_names_exists():
    # Catches a config or secret file that was moved or renamed (the deploy fails), or one
    # declared and never mounted.
    for name, config in STACK["configs"].items():
        assert (ROOT / config["file"]).is_file(), f"config {name}: {config['file']} is missing"
    for name, secret in STACK["secrets"].items():
        if "file" in secret:
            assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} is missing"
    used = {c["source"] for s in SERVICES.values() for c in s.get("configs", [])}
    assert used == set(STACK["configs"]), "every config is used, and only declared ones"


def test_every_config_name_carries_the_config_version_so_a_redeploy_can_change_it():
    # Catches a config whose name does not change with SWARMGUARD_CONFIG_VERSION: Swarm
    # configs are immutable, so a redeploy after editing its file would be refused.
    for name, config in STACK["configs"].items():
        assert "${SWARMGUARD_CONFIG_VERSION" in config["name"], name


def test_alertmanager_sends_the_token_the_receiver_checks():
    # Catches a token path that does not match the secret mount on either side: every
    # webhook would then be refused with 401 (or the receiver would not start).
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    [hook] = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    sent = Path(hook["http_config"]["authorization"]["credentials_file"])
    read = Path(SERVICES["receiver"]["environment"]["SWARMGUARD_TOKEN_FILE"])
    assert sent.parent == read.parent == Path("/run/secrets") and sent.name == read.name
    assert sent.name in SERVICES["alertmanager"]["secrets"]
    assert sent.name in SERVICES["receiver"]["secrets"]
    # Created by the operator (docs/operating.md): never a file of this repository.
    assert STACK["secrets"][sent.name] == {"external": True}


def test_alertmanager_reaches_the_receivers_webhook_on_a_network_they_share():
    # Catches a webhook URL at the wrong port or path (gunicorn's bind, the app's route)
    # and a receiver that Alertmanager cannot resolve (no common network).
    import runpy

    from receiver.app import create_app
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    [hook] = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    url = urlparse(hook["url"])
    gunicorn = runpy.run_path(str(ROOT / "receiver" / "gunicorn.conf.py"))
    assert url.port == int(gunicorn["bind"].rsplit(":", 1)[1])
    app = create_app(receiver_settings())
    assert any(r.rule == url.path and "POST" in r.methods for r in app.url_map.iter_rules())
    assert set(SERVICES["alertmanager"]["networks"]) & set(SERVICES[url.hostname]["networks"])
    # Prometheus -> Alertmanager and Grafana -> Prometheus likewise.
    assert set(SERVICES["prometheus"]["networks"]) & set(SERVICES["alertmanager"]["networks"])
    assert set(SERVICES["grafana"]["networks"]) & set(SERVICES["prometheus"]["networks"])
    for network in {n for s in SERVICES.values() for n in s.get("networks", [])}:
        assert STACK["networks"][network]["driver"] == "overlay", "services span nodes"


def receiver_settings():
    from receiver.config import Settings
    return Settings(token="t", dry_run=True)


def test_each_project_service_runs_an_image_this_repository_builds():
    # Catches an image name that no Dockerfile here builds (a push under one name, a
    # deploy under another). How the registry and tag render is checked by the CLI
    # itself in test_bundle_deploy_cli.py.
    for name in PROJECT_SERVICES:
        repository = defaults(SERVICES[name]["image"]).rsplit(":", 1)[0].rsplit("/", 1)[1]
        assert (ROOT / repository / "Dockerfile").is_file(), f"{name}: {repository}"


def test_third_party_images_are_pinned_to_a_version():
    # Catches a floating tag (latest, a major only): a redeploy would then pull whatever
    # was released since, untested.
    for name in ("cadvisor", "prometheus", "alertmanager", "grafana"):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: {image}"


def version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in SERVICES[name]["image"].rsplit(":v", 1)[-1].rsplit(":", 1)[-1].split("."))


def test_third_party_images_are_versions_that_work_on_engine_29():
    # Catches a downgrade below the first releases that work against Engine 29: cAdvisor
    # before 0.54 (API negotiation, containerd image store), Prometheus 2 (its Swarm
    # discovery is refused by Engine 29.0-29.2), Alertmanager before the lab's current
    # flavour (0.33), Grafana before 11 (the dashboard's schema).
    assert version("cadvisor") >= (0, 54, 0)
    assert version("prometheus") >= (3, 0, 0)
    assert version("alertmanager") >= (0, 33, 0)
    assert version("grafana") >= (11, 0, 0)


def test_every_service_has_cpu_and_memory_limits():
    # Catches a service that could starve its node: the very thing SwarmGuard watches for.
    for name, service in SERVICES.items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[MG]", limits["memory"]), name


def test_cadvisor_and_the_exporter_run_on_every_node_where_prometheus_scrapes_their_own_port():
    # Catches a per-node reader that is not on every node, a discovery that scrapes
    # another port than the one it listens on in its container, and a reader on no
    # network Prometheus shares (Prometheus reaches them only there: they publish
    # nothing, test_bundle_exposure.py). Which targets Prometheus keeps is run by
    # Prometheus itself in test_bundle_prometheus_discovery.py.
    from exporter.config import ExporterConfig
    jobs = {job["job_name"]: (job, scraper) for scraper, config in
            (("prometheus", PROMETHEUS), ("prometheus-detection", DETECTION))
            for job in config["scrape_configs"]}
    listens = {"cadvisor": 8080,  # cAdvisor's default -port, which stack.yml leaves alone
               "exporter": ExporterConfig().listen_port}
    assert not any(c.startswith("-port") for c in SERVICES["cadvisor"]["command"])
    for name, job_name in (("cadvisor", "cadvisor"), ("exporter", "swarmguard-exporter"),
                           ("exporter", "swarmguard-opt-in")):
        job, scraper = jobs[job_name]
        assert SERVICES[name]["deploy"]["mode"] == "global"
        assert "ports" not in SERVICES[name]
        [sd] = job["dockerswarm_sd_configs"]
        assert sd["role"] == "tasks" and sd["port"] == listens[name], job_name
        [network] = [r["regex"] for r in job["relabel_configs"]
                     if r.get("source_labels") == ["__meta_dockerswarm_network_name"]]
        assert network == lab_stack.NETWORK
        assert network.removeprefix(f"{lab_stack.NAME}_") in (
            set(SERVICES[name]["networks"]) & set(SERVICES[scraper]["networks"]))


def test_cadvisor_keeps_the_swarm_labels_the_rules_read_and_runs_as_the_labs_does():
    # Catches a label the rules or prometheus.yml join on that cAdvisor would drop, and a
    # bundle cAdvisor that differs from the lab's stand-in (the lab's results would then
    # say nothing about the shipped one).
    command = SERVICES["cadvisor"]["command"]
    [kept] = [c.split("=", 1)[1] for c in command if c.startswith("-whitelisted_container_labels=")]
    kept = {label.replace(".", "_") for label in kept.split(",")}
    read = {m for path in [*(ROOT / "prometheus").rglob("*.yml"), *(ROOT / "grafana").rglob("*.json")]
            for m in re.findall(r"container_label_(\w+)", path.read_text())}
    assert read and read <= kept, read - kept
    assert "-store_container_labels=false" in command  # only those: bounded series
    assert "-docker_only" in command
    assert "-allow_dynamic_housekeeping=false" not in command  # idle containers back off
    assert f"-housekeeping_interval={monitoring.CADVISOR_HOUSEKEEPING}" in command
    assert f"-whitelisted_container_labels={monitoring.CADVISOR_LABELS}" in command


def test_the_exporter_reads_its_nodes_docker_proc_and_cgroups_read_only():
    # Catches an exporter pointed at a path that is not mounted (it would read its own
    # container's /proc, or no Docker at all), or a mount it could write through.
    service = SERVICES["exporter"]
    env = service["environment"]
    mounted = {defaults(v).split(":")[1]: defaults(v).split(":")[0] for v in service["volumes"]}
    socket = urlparse(env["SWARMGUARD_EXPORTER_DOCKER_URL"]).path
    assert mounted[socket].endswith("docker.sock")
    assert mounted[env["SWARMGUARD_EXPORTER_PROC_ROOT"]] == "/proc"
    assert mounted[env["SWARMGUARD_EXPORTER_CGROUP_ROOT"]] == "/sys/fs/cgroup"
    assert all(v.endswith(":ro") for v in service["volumes"])
    assert float(defaults(env["SWARMGUARD_EXPORTER_CAPACITY_MBPS"])) > 0


@pytest.mark.parametrize("name, config_key, config", [
    ("prometheus", "prometheus_yml", PROMETHEUS),
    ("prometheus-detection", "prometheus_detection_yml", DETECTION)])
def test_prometheus_loads_the_mounted_config_and_rules_and_can_discover_the_swarm(name, config_key, config):
    # Catches a config mounted where --config.file does not look, a rule file mounted and
    # not loaded or loaded and not mounted (Prometheus would start without those alerts),
    # and a Prometheus whose Swarm discovery cannot work: it needs a manager's Docker
    # socket, readable.
    service = SERVICES[name]
    targets = {c["source"]: Path(c["target"]) for c in service["configs"]}
    [config_file] = [Path(c.split("=", 1)[1]) for c in service["command"]
                     if c.startswith("--config.file=")]
    assert targets.pop(config_key) == config_file
    assert sorted(targets.values()) == sorted(config_file.parent / f for f in config["rule_files"])
    assert service["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    volumes = {defaults(v).split(":")[1]: defaults(v) for v in service["volumes"]}
    assert "/var/run/docker.sock" in volumes
    assert service["user"] == "root"  # the socket is root's


def test_the_central_prometheus_keeps_its_data_across_a_restart():
    service = SERVICES["prometheus"]
    volumes = {defaults(v).split(":")[1]: defaults(v) for v in service["volumes"]}
    [data] = [c.split("=", 1)[1] for c in service["command"] if c.startswith("--storage.tsdb.path=")]
    assert data in volumes and not volumes[data].startswith("/")


def test_each_rule_file_runs_where_its_part_of_the_layout_is():
    # Catches a scale-down judged on one node's replicas (a detection instance loading
    # it) and detection alerts fired twice (the central Prometheus loading it, from the
    # federated copies): docs/contract.md, "Rule files and layouts".
    central = {Path(f).name for f in PROMETHEUS["rule_files"]}
    detection = {Path(f).name for f in DETECTION["rule_files"]}
    assert central == {"swarmguard-thresholds.yml", "swarmguard-scale-down.yml", "swarmguard-health.yml"}
    assert detection == {"swarmguard-thresholds.yml", "swarmguard.yml"}
    assert central | detection == {p.name for p in (ROOT / "prometheus" / "rules").glob("*.yml")}


def test_the_detection_template_shares_the_nodes_among_exactly_its_replicas():
    # The template's share count and the replica count are one variable: with two
    # values, a node would be judged by no instance, or two.
    service = SERVICES["prometheus-detection"]
    assert CONFIGS["prometheus_detection_yml"]["template_driver"] == "golang"
    variable = "${SWARMGUARD_DETECTION_INSTANCES:-1}"
    assert service["environment"]["SWARMGUARD_DETECTION_INSTANCES"] == variable
    assert service["deploy"]["replicas"] == variable
    text = (ROOT / "prometheus" / "prometheus-detection.yml").read_text()
    assert set(re.findall(r"\{\{[^}]*\}\}", text)) == {
        "{{ .Task.Slot }}", '{{ env "SWARMGUARD_DETECTION_INSTANCES" }}'}


def test_the_alertmanager_pair_gossips_and_every_prometheus_sends_to_both():
    service = SERVICES["alertmanager"]
    assert service["deploy"]["replicas"] == 2
    assert service["deploy"]["placement"]["max_replicas_per_node"] == 1
    assert "--cluster.peer=tasks.alertmanager:9094" in service["command"]
    for config in (PROMETHEUS, DETECTION):
        [am] = config["alerting"]["alertmanagers"]
        [sd] = am["dns_sd_configs"]
        assert sd["names"] == ["tasks.alertmanager"] and sd["type"] == "A"


def test_prometheus_publishes_no_lifecycle_endpoint_and_bounds_its_disk_use():
    # Catches POST /-/quit without authentication on 9090, and a disk filled by the TSDB.
    command = SERVICES["prometheus"]["command"]
    assert "--web.enable-lifecycle" not in command
    [size] = [defaults(c) for c in command if c.startswith("--storage.tsdb.retention.size=")]
    assert re.fullmatch(r"--storage.tsdb.retention.size=\d+(GB|MB)", size)


def test_grafanas_admin_password_comes_from_an_external_swarm_secret():
    # Catches a password in the stack file (or Grafana's default admin/admin).
    service = SERVICES["grafana"]
    secret = "swarmguard_grafana_admin_password"
    assert secret in service["secrets"]
    assert STACK["secrets"][secret] == {"external": True}
    assert service["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"/run/secrets/{secret}"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in service["environment"]


def test_the_receiver_talks_to_a_managers_docker_through_the_mounted_socket():
    # Catches a receiver that cannot update services (a worker's Engine refuses service
    # updates; DOCKER_HOST naming a path that is not mounted) and a webhook published
    # outside the overlay network.
    service = SERVICES["receiver"]
    assert service["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    mounted = {defaults(v).split(":")[1] for v in service["volumes"]}
    assert urlparse(service["environment"]["SWARMGUARD_DOCKER_HOST"]).path in mounted
    assert "ports" not in service


def test_the_receiver_reads_the_demo_service_as_opted_in_with_room_to_scale_up():
    # Catches labels the receiver would not read as intended (a typo, a value it does not
    # parse): the demo would then show nothing, or never scale up.
    from receiver import labels
    deploy = SERVICES["stress"]["deploy"]
    assert labels.opted_in(deploy["labels"])
    low, high = labels.replica_limits(deploy["labels"], 1, 1)
    assert low <= deploy.get("replicas", 1) < high
    # No constraint: a one-node swarm (a manager only) runs it too.
    assert "placement" not in deploy


def test_the_demo_service_moves_without_downtime_and_rolls_back_a_failed_move():
    # Catches stop-first (the service would be down during every migration) and a failed
    # update left in place.
    deploy = SERVICES["stress"]["deploy"]
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"


def test_the_demo_service_is_told_every_swarm_identity_the_app_reports():
    # Catches a SWARM_* variable the app reads that Swarm does not set (it would then
    # report its container's hostname as its task and node), or one set from the wrong
    # template.
    from stress.identity import Identity
    env = SERVICES["stress"]["environment"]
    read = set(re.findall(r"SWARM_[A-Z_]+", (ROOT / "stress" / "identity.py").read_text()))
    assert read and read <= set(env), read - set(env)
    rendered = {k: v.replace("{{.Task.Name}}", "app.1.t").replace("{{.Task.ID}}", "t")
                .replace("{{.Node.Hostname}}", "node-a").replace("{{.Node.ID}}", "n")
                .replace("{{.Service.Name}}", "swarmguard_stress") for k, v in env.items()}
    identity = Identity.from_env(rendered)
    assert (identity.task, identity.node, identity.service, identity.task_id, identity.node_id) == (
        "app.1.t", "node-a", "swarmguard_stress", "t", "n")


def test_the_demo_service_is_checked_every_second_on_its_own_port():
    # Catches a health check too slow for a start-first migration to finish quickly, an
    # option Engine 20.10 refuses (start_interval is Engine 25+), and a published port
    # that is not where gunicorn listens or where the lab's entry point looks.
    import runpy
    service = SERVICES["stress"]
    assert service["healthcheck"]["interval"] == "1s"
    assert "start_interval" not in service["healthcheck"]
    assert "ports" not in service  # the bundle publishes no demo (docs/contract.md)
    [port] = merged_lab_ports("stress")  # the lab's entry point's
    gunicorn = runpy.run_path(str(ROOT / "stress" / "gunicorn.conf.py"))
    assert port["target"] == int(gunicorn["bind"].rsplit(":", 1)[1])
    assert port["published"] == DEFAULT.app_published_port


# ------------------------------------------------------------------ tests/lab/infra/stack.lab.yml

def test_the_lab_file_only_overrides_services_of_the_stack():
    # Catches a lab override that adds a service or top-level key the bundle does not
    # have: the lab would then test something other than the bundle.
    assert set(LAB) == {"version", "services"}
    assert LAB["version"] == STACK["version"]
    assert set(LAB["services"]) == set(SERVICES), "every service is overridden (dnsrr at least)"


def test_in_the_lab_every_service_resolves_by_dns_round_robin_and_publishes_in_host_mode():
    # Catches a service left on a VIP or the routing mesh, which the lab's kernel (no
    # IPVS) cannot serve.
    for name in SERVICES:
        assert lab(name)["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in merged_lab_ports(name):
            assert port.get("mode") == "host", f"{name}: {port}"


def test_the_lab_file_changes_nothing_docker_20_10_would_merge_into_a_duplicate():
    # Catches a lab port or volume that docker 20.10's merge would add beside the bundle's
    # instead of replacing it (two listeners on one port, two mounts at one path), and a
    # port the lab adds that its header does not account for.
    added = {port: service for port, service in lab_stack.published_in_the_lab(DEFAULT).items()
             if port not in lab_stack.contract_published()}
    for name in SERVICES:
        base = {defaults(p["published"]): p for p in ports(SERVICES[name])}
        for port in ports(lab(name)):
            if str(port["published"]) not in base:
                assert added.get(port["published"]) == name, f"{name}: {port} adds a port"
                continue
            # Same published port (the merge key), same target and protocol: a replacement.
            original = base[str(port["published"])]
            assert (port["target"], port["protocol"]) == (original["target"], original["protocol"])
        # Volumes are appended, not replaced, by docker 20.10: a lab mount must not land
        # where the bundle already mounts something (the lab sets SWARMGUARD_DOCKER_SOCKET
        # rather than mount a second socket at /var/run/docker.sock).
        base_targets = {v.split(":")[1] for v in SERVICES[name].get("volumes", []) if isinstance(v, str)}
        for volume in lab(name).get("volumes", []):
            assert volume.split(":")[1] not in base_targets, f"{name}: {volume} collides"


def test_in_the_lab_every_service_that_runs_has_a_lab_built_image():
    # Catches a service whose image the lab never builds: its task would wait on an
    # unreachable registry.
    built = set(PROJECT_IMAGES) | {image.tag for image in MONITORING_IMAGES}
    for name in SERVICES:
        if name in lab_stack.NOT_IN_LAB:
            assert "image" not in lab(name), name
        else:
            assert lab(name)["image"] in built, name


def test_deploy_names_each_lab_image_by_id_so_no_node_asks_a_registry():
    # Catches a tag left in the deployed spec (each node would first try the registry) and
    # a lab image that was never built going unnoticed.
    tags = {lab(n)["image"] for n in SERVICES if "image" in lab(n)}
    ids = {tag: f"sha256:{i:064x}" for i, tag in enumerate(sorted(tags))}
    pinned = lab_stack.images_by_id(ids)["services"]
    assert pinned == {n: {"image": ids[lab(n)["image"]]} for n in SERVICES if "image" in lab(n)}
    with pytest.raises(LabError, match="did not build"):
        lab_stack.images_by_id({})


def test_the_lab_exporter_reads_the_docker_socket_of_its_own_node():
    # Catches an exporter that would read another node's dockerd (or none): the URL
    # template, rendered with each node's hostname as Swarm does, must be that node's
    # socket, inside a mounted directory.
    service = lab("exporter")
    template = service["environment"]["SWARMGUARD_EXPORTER_DOCKER_URL"]
    mounted = {v.split(":")[1] for v in service["volumes"]}
    for node in DEFAULT.nodes:
        socket = Path(urlparse(template.replace("{{.Node.Hostname}}", node.name)).path)
        assert socket == DEFAULT.docker_socket(node), node.name
        assert str(socket.parent) in mounted
    assert float(service["environment"]["SWARMGUARD_EXPORTER_CAPACITY_MBPS"]) == DEFAULT.node_capacity_mbps


def test_the_lab_ports_avoid_those_the_labs_own_processes_hold_on_every_node():
    # Catches a published port that collides with the lab's own cAdvisor or exporter on
    # every node.
    taken = {DEFAULT.cadvisor_port, monitoring.EXPORTER_PORT}
    for name in SERVICES:
        if name in lab_stack.NOT_IN_LAB:
            continue
        for port in merged_lab_ports(name):
            assert port["published"] not in taken, f"{name}: {port}"
    [app] = merged_lab_ports("stress")
    assert app["published"] == DEFAULT.app_published_port  # where HAProxy looks


def test_the_lab_mounts_the_managers_docker_socket_and_versions_configs_by_content():
    # Catches a lab deploy with the wrong socket or a config version that does not change
    # with the files (a redeploy after an edit would be refused).
    env = lab_stack.environment(DEFAULT)
    assert env["SWARMGUARD_DOCKER_SOCKET"] == str(DEFAULT.docker_socket(DEFAULT.manager))
    assert re.fullmatch(r"[0-9a-f]{12}", env["SWARMGUARD_CONFIG_VERSION"])
    assert lab_stack.config_version() == env["SWARMGUARD_CONFIG_VERSION"]


# ------------------------------------------------------------------ grafana/

DASHBOARD = dashboard.load()
DATASOURCES = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/swarmguard.yml").read_text())


def test_the_datasource_is_the_stacks_prometheus_with_the_uid_the_dashboard_opens_with():
    # Catches a dashboard that opens on no datasource, or on one that is not the stack's
    # Prometheus.
    [source] = DATASOURCES["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == source["uid"]


def test_the_dashboard_provider_reads_where_the_stack_mounts_the_dashboard():
    # Catches a dashboard mounted where Grafana's provider does not look (Grafana starts
    # empty).
    [provider] = PROVIDERS["providers"]
    mounted = {c["source"]: c["target"] for c in SERVICES["grafana"]["configs"]}
    assert Path(mounted["grafana_dashboard"]).parent == Path(provider["options"]["path"])
    assert mounted["grafana_datasource"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounted["grafana_dashboard_provider"].startswith("/etc/grafana/provisioning/dashboards/")


def test_every_panel_and_annotation_queries_through_the_datasource_variable():
    # Catches a panel pinned to another datasource, and two panels with one id (Grafana
    # drops one).
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    [annotation] = [a for a in DASHBOARD["annotations"]["list"] if "expr" in a]
    assert annotation["datasource"]["uid"] == "${datasource}"
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


def test_the_dashboard_draws_every_percentage_its_threshold_the_alerts_and_the_actions():
    # Catches a panel or threshold line lost from the dashboard.
    exprs = "\n".join(q.expr for q in dashboard.queries(DASHBOARD))
    for needed in ("swarmguard:task_cpu:percent", "swarmguard:task_memory:percent",
                   "swarmguard:task_network:percent", "swarmguard:service_tasks:count",
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
    # Catches a panel that reads a recording rule that was renamed or removed (an empty
    # panel).
    recorded = {r["record"] for path in (ROOT / "prometheus" / "rules").glob("*.yml")
                for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r}
    used = {name for q in dashboard.queries(DASHBOARD)
            for name in re.findall(r"swarmguard:[\w:]+", q.expr)}
    assert used and used <= recorded, used - recorded


def test_every_receiver_metric_the_dashboard_reads_is_one_the_receiver_exports():
    # Catches a panel that reads a receiver metric that was renamed or removed (an empty
    # panel).
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
    # Catches a query checked with variables Grafana would not substitute that way.
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
    # Catches a dashboard query Prometheus cannot parse.
    queries = dashboard.promql(DASHBOARD)
    assert len(queries) >= 10
    result = promtool_check(queries, tmp_path)
    assert result.returncode == 0, "\n".join(
        [f"{q.where}: {q.expr}" for q in queries] + [result.stdout, result.stderr])


def test_the_promql_check_rejects_a_broken_query(tmp_path):
    # Catches a PromQL check that accepts anything.
    broken = [dashboard.Query("broken", "sum by (service (swarmguard:task_cpu:percent)")]
    assert promtool_check(broken, tmp_path).returncode != 0


# ------------------------------------------------------- README.md and docs/

# (Links and runbook URLs: test_doc_links.py.)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPERATING = ROOT / "docs" / "operating.md"


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def make_commands(text: str) -> set[str]:
    """The targets a page tells a reader to make, in prose and in its code blocks."""
    given = set(re.findall(r"`make ([\w-]+)", text))
    in_blocks = "\n".join(re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL))
    return given | set(re.findall(r"^\s*(?:sudo )?make ([\w-]+)", in_blocks, re.MULTILINE))


def test_every_make_command_the_docs_give_is_a_target_of_the_makefile():
    # Catches a page that sends a reader to a target that was renamed or removed.
    assert {"demo", "test"} <= make_commands((ROOT / "README.md").read_text())
    given = set().union(*(make_commands(page.read_text()) for page in DOCS))
    assert given <= make_targets(), given - make_targets()


def test_make_help_names_every_target_the_docs_give():
    # Catches a command a page describes that `make help` leaves out.
    makefile = (ROOT / "Makefile").read_text()
    help_text = "\n".join(re.findall(r'^\t@echo "(.*)"$', makefile.split("\nhelp:", 1)[1]
                                     .split("\n\n", 1)[0], re.MULTILINE))
    named = set(re.findall(r"make ([\w-]+)", help_text)) | set(re.findall(r"\| ([\w-]+)", help_text))
    given = set().union(*(make_commands(page.read_text()) for page in DOCS))
    given -= {"help", "test-bookworm", "test-soak", "test-current"}  # itself; `make test`'s steps
    assert given <= named, given - named


def test_the_deploy_steps_create_every_secret_and_pass_registry_credentials():
    # Catches a deploy that fails on a fresh swarm (an external secret the steps never
    # have you create, a required variable they never mention) or whose nodes cannot pull
    # the project's images (no --with-registry-auth).
    steps = OPERATING.read_text()
    created = set(re.findall(r"docker secret create ([\w-]+)", steps))
    external = {name for name, secret in STACK["secrets"].items() if secret.get("external")}
    assert external <= created, external - created
    required = set(_REQUIRED.findall((ROOT / "stack.yml").read_text()))
    assert required and all(name in steps for name in required), required
    deploys = re.findall(r"docker stack deploy [^`\n]*-c stack\.yml[^`\n]*", steps)
    assert deploys and all("--with-registry-auth" in line for line in deploys), deploys


def test_docker_stops_the_receiver_only_after_it_has_had_its_shutdown_deadline():
    # Catches work in progress killed on shutdown: gunicorn's or Docker's deadline shorter
    # than the receiver's own.
    import runpy

    from receiver.config import Settings
    deadline = Settings(token="t").shutdown_deadline
    gunicorn = runpy.run_path(str(ROOT / "receiver" / "gunicorn.conf.py"))
    grace = SERVICES["receiver"]["stop_grace_period"]
    assert grace.endswith("s")
    # SIGTERM -> work in progress gets `deadline` -> gunicorn kills its worker at
    # graceful_timeout -> Docker SIGKILLs the container at stop_grace_period.
    assert deadline < gunicorn["graceful_timeout"] < int(grace[:-1])
