"""The bundle as `docker stack deploy` really renders it, for the unit tests.

The docker CLI the lab uses (tests/lab/infra/stack.py DOCKER_CLI, Debian's docker.io 20.10)
deploys against a fake swarm manager on a unix socket in a temporary directory
(fake_swarm_manager.py): the CLI's own compose parsing, variable interpolation and merge of
several files decide the service specs and the configs' content, and nothing runs.

The CLI is required, as promtool is for the rule tests: a machine without it fails here.
"""
from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.lab.config import DEFAULT
from tests.lab.infra import stack as lab_stack
from tests.unit.fake_swarm_manager import FakeSwarmManager

ROOT = Path(__file__).resolve().parents[2]
# What a user sets at the least: stack.yml requires it (docs/operating.md, "Deploying").
REGISTRY = {"SWARMGUARD_REGISTRY": "registry.example.com/swarmguard"}
SECRETS_DIR = PurePosixPath("/run/secrets")


def run_deploy(tmp_path: Path, files: list[Path], env: dict[str, str],
               manager: FakeSwarmManager) -> subprocess.CompletedProcess:
    cli = Path(lab_stack.DOCKER_CLI)
    if not cli.exists():
        pytest.fail(f"{cli} is missing; install it: apt-get install -y docker.io")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SWARMGUARD_", "DOCKER_"))}
    args = [str(cli), "-H", manager.url, "stack", "deploy", "--resolve-image", "never"]
    for f in files:
        args += ["-c", str(f)]
    return subprocess.run([*args, lab_stack.NAME], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "HOME": str(tmp_path), **env}, timeout=60)


def deploy(tmp_path: Path, files: list[Path], env: dict[str, str]) -> FakeSwarmManager:
    with FakeSwarmManager(tmp_path / "docker.sock", secrets=lab_stack.SECRETS) as manager:
        result = run_deploy(tmp_path, files, env, manager)
    assert result.returncode == 0, result.stdout + result.stderr
    assert manager.unexpected == []
    return manager


@dataclass
class Rendered:
    """What one deploy sends: service name (without the stack prefix) -> service spec
    (Engine API), and config name -> the bytes Swarm would mount."""
    services: dict[str, dict]
    configs: dict[str, bytes]

    @classmethod
    def of(cls, manager: FakeSwarmManager) -> "Rendered":
        return cls({name.removeprefix(f"{lab_stack.NAME}_"): spec for name, spec in manager.services.items()},
                   {name: base64.b64decode(config["Spec"]["Data"]) for name, config in manager.configs.items()})

    def container(self, service: str) -> dict:
        return self.services[service]["TaskTemplate"]["ContainerSpec"]

    def env(self, service: str) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.container(service).get("Env", []))

    def secret_files(self, service: str) -> dict[PurePosixPath, str]:
        """Where each secret of the service is mounted -> the secret's name."""
        return {SECRETS_DIR / s["File"]["Name"]: s["SecretName"]
                for s in self.container(service).get("Secrets", [])}

    def mounted_config(self, service: str, target: str) -> bytes:
        """The content of the config the service mounts at `target`."""
        [name] = [c["ConfigName"] for c in self.container(service).get("Configs", [])
                  if c["File"]["Name"] == target]
        return self.configs[name]

    def published(self) -> list[tuple[int, str, dict]]:
        """(published port, service, the port's spec) of every port the stack publishes."""
        return sorted(((p["PublishedPort"], name, p) for name, spec in self.services.items()
                       for p in spec.get("EndpointSpec", {}).get("Ports", [])), key=lambda t: t[:2])


def by_default(tmp_path: Path) -> Rendered:
    """stack.yml alone, with only the variable a user must set."""
    return Rendered.of(deploy(tmp_path, [lab_stack.STACK_FILE], REGISTRY))


def in_the_lab(tmp_path: Path) -> Rendered:
    """stack.yml merged with the lab's override and the third file the lab writes (images
    by ID, the lab's configs), with the lab's variables: as tests/lab/infra/stack.py
    deploys it."""
    tags = {lab_stack.load(lab_stack.LAB_FILE)["services"][n].get("image")
            for n in lab_stack.service_names()} - {None}
    ids = {tag: f"sha256:{i:064x}" for i, tag in enumerate(sorted(tags))}
    override = lab_stack.write_override(DEFAULT, ids, tmp_path)
    files = [Path(a) for a in lab_stack.compose_args(override)[1::2]]
    return Rendered.of(deploy(tmp_path, files, lab_stack.environment(DEFAULT)))
