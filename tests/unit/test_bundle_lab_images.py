"""The lab's Prometheus and Alertmanager images: the build context the lab prepares from
Debian's packages holds everything the programs need to run on busybox.

No image is built (no dockerd in unit tests): the prepared rootfs is run with chroot,
which sees exactly the files the image would have (busybox's own add nothing these
programs use). Needs root for chroot and the Debian packages `prometheus` and
`prometheus-alertmanager`, like the rule tests; a missing one fails, never skips.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.lab.infra import rootfs
from tests.lab.infra.bundle_images import (ALERTMANAGER, MONITORING_IMAGES, PROMETHEUS, monitoring_images,
                                     prepare_context, shared_libraries)
from tests.lab.config import LabConfig
from tests.lab.infra.images import BUSYBOX
from tests.lab.infra.monitoring import render_swarm_template

ROOT = Path(__file__).resolve().parents[2]


def require(image) -> None:
    if not image.binary.exists():
        pytest.fail(f"{image.binary} is missing; apt-get install -y prometheus prometheus-alertmanager")


def dockerfile(image) -> list[str]:
    return [line for line in image.dockerfile.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("image", MONITORING_IMAGES, ids=lambda i: i.name)
def test_the_dockerfile_copies_the_prepared_rootfs_onto_the_lab_busybox(image):
    lines = dockerfile(image)
    assert lines[0] == f"ARG BASE_IMAGE={BUSYBOX}"
    assert lines[1] == "FROM ${BASE_IMAGE}"
    assert "COPY rootfs/ /" in lines
    assert f'ENTRYPOINT ["/bin/{image.name}"]' in lines
    # Classic builder only (Engine 20.10): no BuildKit syntax.
    assert not any(line.startswith(("# syntax", "RUN --mount")) for line in lines)


@pytest.mark.parametrize("image", MONITORING_IMAGES, ids=lambda i: i.name)
def test_ldd_finds_glibc_and_its_loader_for_the_debian_binaries(image):
    require(image)
    names = {lib.name for lib in shared_libraries(image.binary)}
    assert "libc.so.6" in names and any(n.startswith("ld-linux") for n in names), names


def test_a_static_program_needs_no_library(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert shared_libraries(script) == []


@pytest.mark.parametrize("image", MONITORING_IMAGES, ids=lambda i: i.name)
def test_the_context_holds_the_dockerfile_the_program_its_libraries_and_data(image, tmp_path):
    require(image)
    prepare_context(image, tmp_path)
    assert (tmp_path / image.dockerfile.name).read_text() == image.dockerfile.read_text()
    assert (tmp_path / "rootfs" / "bin" / image.name).stat().st_size == image.binary.stat().st_size
    for library in shared_libraries(image.binary):
        assert (tmp_path / "rootfs" / library.relative_to("/")).is_file(), library
    for directory in image.data:
        assert (tmp_path / "rootfs" / directory.relative_to("/")).is_dir()
    assert (tmp_path / "rootfs" / "usr/share/prometheus/alertmanager/default.tmpl").exists() == (
        image is ALERTMANAGER)


def chroot(rootfs: Path, *args: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.fail("chroot needs root (the project's tests run as root, see README.md)")
    return [shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), *args]


@pytest.mark.parametrize("image", MONITORING_IMAGES, ids=lambda i: i.name)
def test_the_program_starts_from_the_prepared_rootfs_alone(image, tmp_path):
    require(image)
    rootfs = prepare_context(image, tmp_path) / "rootfs"
    result = subprocess.run(chroot(rootfs, f"/bin/{image.name}", "--version"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "version" in result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alertmanager_loads_the_bundle_config_from_the_prepared_rootfs(tmp_path):
    """Debian's Alertmanager reads its default template from the package's data
    directory and exits when it is missing: the rootfs must carry it."""
    require(ALERTMANAGER)
    rootfs = prepare_context(ALERTMANAGER, tmp_path) / "rootfs"
    (rootfs / "etc" / "alertmanager").mkdir(parents=True)
    shutil.copy(ROOT / "alertmanager" / "alertmanager.yml", rootfs / "etc/alertmanager/alertmanager.yml")
    (rootfs / "alertmanager").mkdir()
    port = free_port()
    proc = subprocess.Popen(
        chroot(rootfs, "/bin/alertmanager", "--config.file=/etc/alertmanager/alertmanager.yml",
               "--storage.path=/alertmanager", f"--web.listen-address=127.0.0.1:{port}",
               "--cluster.listen-address="),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ready = False
    try:
        deadline = time.monotonic() + 15
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            try:
                ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).status == 200
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert ready, f"Alertmanager did not become ready:\n{output}"
    assert "failed to parse templates" not in output, output


@pytest.mark.parametrize("config, groups", [
    ("prometheus.yml", {"swarmguard-thresholds", "swarmguard-scale-down", "swarmguard-health"}),
    ("prometheus-detection.yml", {"swarmguard-thresholds", "swarmguard-detection",
                                  "swarmguard-node-aggregates"})])
def test_prometheus_loads_the_bundle_config_and_rules_from_the_prepared_rootfs(tmp_path, config, groups):
    require(PROMETHEUS)
    rootfs = prepare_context(PROMETHEUS, tmp_path) / "rootfs"
    (rootfs / "etc" / "prometheus" / "rules").mkdir(parents=True)
    # As Swarm renders a config template for a task (the detection one is).
    (rootfs / "etc/prometheus/prometheus.yml").write_text(render_swarm_template(
        (ROOT / "prometheus" / config).read_text(), slot=1,
        env={"SWARMGUARD_DETECTION_INSTANCES": "1"}))
    for rules in (ROOT / "prometheus" / "rules").glob("*.yml"):
        shutil.copy(rules, rootfs / "etc/prometheus/rules" / rules.name)
    (rootfs / "prometheus").mkdir()
    port = free_port()
    proc = subprocess.Popen(
        chroot(rootfs, "/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml",
               "--storage.tsdb.path=/prometheus", f"--web.listen-address=127.0.0.1:{port}"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        loaded = None
        deadline = time.monotonic() + 20
        while loaded is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=1))
                loaded = {g["name"] for g in body["data"]["groups"]} or None
            except OSError:
                time.sleep(0.2)
        assert loaded == groups
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_on_current_the_images_carry_the_releases_stack_yml_pins(tmp_path):
    """sid's Prometheus 3.5 and Alertmanager 0.33 (stack.yml pins v3.5.3 and v0.33.1), run
    from the prepared context with nothing but what the image will hold."""
    cfg = LabConfig(flavour="current", min_api=None)
    rootfs.ensure(cfg)
    prometheus, alertmanager = monitoring_images(cfg)
    for image, release in ((prometheus, "3.5."), (alertmanager, "0.33.")):
        tree = prepare_context(image, tmp_path / image.name) / "rootfs"
        out = subprocess.run([str(tree / "bin" / image.name), "--version"],
                             capture_output=True, text=True, timeout=30)
        assert f"version {release}" in out.stdout + out.stderr, out
    assert (tmp_path / "alertmanager" / "rootfs" / "usr/share/prometheus/alertmanager").is_dir()
