"""What `docker stack deploy` really sends for the bundle, in the lab and by default.

The docker CLI the lab uses deploys against a fake swarm manager (bundle_render.py): the
CLI's own compose parsing, variable interpolation and merge of stack.yml with
tests/lab/infra/stack.lab.yml decide the service specs, and nothing runs. This is how
merge surprises show up before the lab: docker 20.10 appends `volumes:` (a second
docker.sock mount would collide) but replaces `ports:` by published port. What is
published, and what asks for a password, is test_bundle_exposure.py's.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lab.infra import stack as lab_stack
from tests.lab.config import DEFAULT
from tests.rules.flavour_tools import tool
from tests.unit.bundle_render import REGISTRY, deploy, run_deploy
from tests.unit.fake_swarm_manager import FakeSwarmManager

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load(lab_stack.STACK_FILE.read_text())
LAB = yaml.safe_load(lab_stack.LAB_FILE.read_text())


@pytest.fixture(scope="module")
def in_the_lab(tmp_path_factory) -> dict[str, dict]:
    """Service name (without the stack prefix) -> the spec the CLI sends in the lab."""
    tmp = tmp_path_factory.mktemp("lab-deploy")
    pinned = tmp / "images.yml"
    pinned.write_text(
        "version: '3.8'\nservices:\n" + "".join(
            f"  {name}:\n    image: sha256:{i:064x}\n"
            for i, name in enumerate(lab_stack.service_names()) if name not in lab_stack.NOT_IN_LAB))
    manager = deploy(tmp, [lab_stack.STACK_FILE, lab_stack.LAB_FILE, pinned],
                     lab_stack.environment(DEFAULT))
    return {name.removeprefix(f"{lab_stack.NAME}_"): spec for name, spec in manager.services.items()}


@pytest.fixture(scope="module")
def by_default(tmp_path_factory) -> FakeSwarmManager:
    return deploy(tmp_path_factory.mktemp("default-deploy"), [lab_stack.STACK_FILE], REGISTRY)


def container(spec: dict) -> dict:
    return spec["TaskTemplate"]["ContainerSpec"]


def mounts(spec: dict) -> dict[str, str]:
    found = [(m["Target"], m["Source"]) for m in container(spec).get("Mounts", [])]
    targets = [t for t, _ in found]
    assert len(targets) == len(set(targets)), f"two mounts at one target: {found}"
    return dict(found)


def test_by_default_the_stack_creates_its_network_configs_and_every_service(by_default):
    # Catches a service, network or config stack.yml declares that the CLI would not
    # create (a compose key it ignores, an interpolation that fails), and config names
    # that do not end with SWARMGUARD_CONFIG_VERSION's default.
    assert set(by_default.services) == {f"swarmguard_{n}" for n in lab_stack.service_names()}
    assert set(by_default.networks) == {f"swarmguard_{n}" for n in STACK["networks"]}
    assert all(n["Attachable"] is True for n in by_default.networks.values())
    assert sorted(by_default.configs) == sorted(f"swarmguard_{name}_1" for name in STACK["configs"])


def test_by_default_the_uis_go_through_the_routing_mesh_on_their_own_ports(by_default):
    # Catches a UI published per node (a person would then have to know where its task
    # runs) or on another port than it listens on; and the receiver without the Docker
    # socket or the user's registry. Which ports may be published at all, and what asks
    # for a password on each, is test_bundle_exposure.py's.
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("grafana", 3000)):
        endpoint = by_default.services[f"swarmguard_{name}"]["EndpointSpec"]
        assert endpoint.get("Mode", "vip") == "vip", name  # unset: Swarm's default, vip
        [published] = endpoint["Ports"]
        assert (published["TargetPort"], published["PublishedPort"]) == (port, port), name
        assert published.get("PublishMode", "ingress") == "ingress", name  # unset: the mesh
    receiver = by_default.services["swarmguard_receiver"]
    assert mounts(receiver) == {"/var/run/docker.sock": "/var/run/docker.sock"}
    assert container(receiver)["Image"] == "registry.example.com/swarmguard/receiver:latest"


def current_cli() -> str:
    """The docker CLI of the lab's `current` flavour (28.5, tests/lab/infra/rootfs.py): what a
    person installs today. It has `docker stack config`, which 20.10's lacks."""
    return tool("current", "docker")


def stack_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SWARMGUARD_", "DOCKER_"))}
    return subprocess.run([current_cli(), "stack", "config", "-c", str(lab_stack.STACK_FILE)],
                          cwd=ROOT, capture_output=True, text=True, env={**clean, **env}, timeout=60)


def test_without_swarmguard_registry_a_current_cli_refuses_the_stack_and_says_why():
    # Catches a deploy that silently pulls the project's images from a namespace nobody
    # here owns.
    result = stack_config({})
    assert result.returncode != 0 and result.stdout == ""
    assert "set SWARMGUARD_REGISTRY to your registry" in result.stderr


def test_with_swarmguard_registry_a_current_cli_renders_the_whole_stack():
    # Catches a stack a current CLI cannot render, or images not taken from the user's
    # registry.
    result = stack_config(REGISTRY)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    assert set(rendered) == set(lab_stack.service_names())
    for name in ("exporter", "receiver", "stress"):
        assert rendered[name]["image"] == f"registry.example.com/swarmguard/{name}:latest"


def test_without_swarmguard_registry_docker_20_10_deploys_nothing_and_says_why(tmp_path):
    # Catches a half-created stack when the registry is missing.
    with FakeSwarmManager(tmp_path / "docker.sock", secrets=lab_stack.SECRETS) as manager:
        result = run_deploy(tmp_path, [lab_stack.STACK_FILE], {}, manager)
    assert result.returncode != 0
    assert "set SWARMGUARD_REGISTRY to your registry" in result.stderr
    assert manager.services == manager.configs == manager.networks == {}, "nothing is created"


def test_the_old_port_variables_publish_nothing(tmp_path):
    # Catches a deploy script of an older release, which set SWARMGUARD_EXPORTER_PORT or
    # SWARMGUARD_CADVISOR_PORT to move their published ports, bringing them back.
    manager = deploy(tmp_path, [lab_stack.STACK_FILE], {
        **REGISTRY, "SWARMGUARD_CADVISOR_PORT": "18080", "SWARMGUARD_EXPORTER_PORT": "19101"})
    for name in ("cadvisor", "exporter"):
        assert "Ports" not in manager.services[f"swarmguard_{name}"]["EndpointSpec"], name


def test_by_default_the_demo_service_may_run_on_any_node_so_a_one_node_swarm_runs_it(by_default):
    # Catches a demo service that never starts on a one-node swarm.
    placement = by_default.services["swarmguard_stress"]["TaskTemplate"].get("Placement", {})
    assert placement.get("Constraints", []) == []


def test_by_default_grafana_reads_its_admin_password_from_the_secret(by_default):
    # Catches Grafana's default admin password, or a secret mounted under another name
    # than the one it reads.
    spec = container(by_default.services["swarmguard_grafana"])
    [secret] = [s for s in spec["Secrets"] if s["SecretName"] == "swarmguard_grafana_admin_password"]
    assert secret["File"]["Name"] == "swarmguard_grafana_admin_password"  # /run/secrets/<name>
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/swarmguard_grafana_admin_password" in spec["Env"]


def test_by_default_prometheus_has_no_lifecycle_endpoint_and_a_size_bound(by_default):
    # Catches POST /-/quit without authentication, and an unbounded TSDB once the CLI has
    # filled in SWARMGUARD_RETENTION_SIZE's default.
    args = container(by_default.services["swarmguard_prometheus"])["Args"]
    assert "--web.enable-lifecycle" not in args
    assert any(re.fullmatch(r"--storage.tsdb.retention.size=\d+(GB|MB)", a) for a in args), args


def test_in_the_lab_every_service_is_dnsrr_with_host_mode_ports_only(in_the_lab):
    # Catches a merge that leaves a VIP or a mesh port, which the lab's kernel cannot
    # serve.
    for name, spec in in_the_lab.items():
        endpoint = spec["EndpointSpec"]
        assert endpoint["Mode"] == "dnsrr", name
        assert all(p["PublishMode"] == "host" for p in endpoint.get("Ports", [])), (name, endpoint)
    assert in_the_lab["stress"]["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": DEFAULT.app_published_port,
         "PublishMode": "host"}]
    for name in ("exporter", "cadvisor", "receiver"):
        assert "Ports" not in in_the_lab[name]["EndpointSpec"], name


def test_in_the_lab_the_services_that_run_use_the_pinned_image_ids(in_the_lab):
    # Catches a merge in which the bundle's tag wins over the lab's image ID.
    for name, spec in in_the_lab.items():
        image = container(spec)["Image"]
        if name in lab_stack.NOT_IN_LAB:
            assert not image.startswith("sha256:"), name
        else:
            assert image.startswith("sha256:"), name


def test_in_the_lab_prometheus_and_the_receiver_mount_only_the_managers_socket(in_the_lab):
    # Catches docker 20.10's append merge adding a second mount at /var/run/docker.sock.
    socket = str(DEFAULT.docker_socket(DEFAULT.manager))
    assert mounts(in_the_lab["prometheus"])["/var/run/docker.sock"] == socket
    assert mounts(in_the_lab["receiver"]) == {"/var/run/docker.sock": socket}
    assert container(in_the_lab["prometheus"])["User"] == "root"


def test_in_the_lab_cadvisor_and_grafana_keep_the_lab_files_placement(in_the_lab):
    # Catches a merge that drops the lab file's constraint: Swarm would then start tasks
    # for images the lab does not have, and wait on a registry forever.
    for name in lab_stack.NOT_IN_LAB:
        constraints = in_the_lab[name]["TaskTemplate"]["Placement"]["Constraints"]
        assert set(LAB["services"][name]["deploy"]["placement"]["constraints"]) <= set(constraints), name


def test_in_the_lab_each_exporter_reads_its_own_nodes_docker_socket(in_the_lab):
    # Catches a merge in which the bundle's environment wins over the lab file's (every
    # exporter would read a socket that does not exist in the lab).
    spec = container(in_the_lab["exporter"])
    wanted = LAB["services"]["exporter"]["environment"]["SWARMGUARD_EXPORTER_DOCKER_URL"]
    assert f"SWARMGUARD_EXPORTER_DOCKER_URL={wanted}" in spec["Env"]


def seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def test_in_the_lab_the_demo_service_keeps_the_bundles_policies(in_the_lab):
    # Catches a merge with the lab file that loses what the scenarios rely on: opt-in,
    # start-first with rollback, the health check's pace, the limits the thresholds are
    # relative to. Compared with stack.yml itself, as the CLI parsed it.
    spec = in_the_lab["stress"]
    bundle = STACK["services"]["stress"]
    # Workers only, where the lab's HAProxy entry point looks for it.
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role == worker"]
    assert spec["Labels"] == {**spec["Labels"], **bundle["deploy"]["labels"]}
    assert spec["UpdateConfig"]["Order"] == bundle["deploy"]["update_config"]["order"]
    assert spec["UpdateConfig"]["FailureAction"] == bundle["deploy"]["update_config"]["failure_action"]
    assert spec["RollbackConfig"]["Order"] == bundle["deploy"]["rollback_config"]["order"]
    assert container(spec)["Healthcheck"]["Interval"] == seconds(bundle["healthcheck"]["interval"]) * 1e9
    limits = bundle["deploy"]["resources"]["limits"]
    assert spec["TaskTemplate"]["Resources"]["Limits"] == {
        "NanoCPUs": int(float(limits["cpus"]) * 1e9),
        "MemoryBytes": int(limits["memory"].removesuffix("M")) * 1024 * 1024}


def test_in_the_lab_config_names_carry_the_content_version(in_the_lab):
    # Catches a config whose name does not change with its content: a redeploy after an
    # edit would be refused.
    version = lab_stack.config_version()
    for name, spec in in_the_lab.items():
        for config in container(spec).get("Configs", []):
            assert config["ConfigName"].endswith(f"_{version}"), (name, config)
