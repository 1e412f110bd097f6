"""The bundle as `docker stack deploy` really renders it, for the unit tests.

The docker CLI the lab uses (tests/lab/infra/stack.py DOCKER_CLI, Debian's docker.io 20.10)
deploys against a fake swarm manager on a unix socket in a temporary directory
(fake_swarm_manager.py): the CLI's own compose parsing, variable interpolation and merge of
several files decide the service specs and the configs' content, and nothing runs.

The CLI is required, as promtool is for the rule tests: a machine without it fails here.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.lab.infra import stack as lab_stack
from tests.unit.fake_swarm_manager import FakeSwarmManager

ROOT = Path(__file__).resolve().parents[2]
# What a user sets at the least: stack.yml requires it (README, "Deploying").
REGISTRY = {"SWARMGUARD_REGISTRY": "registry.example.com/swarmguard"}


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
