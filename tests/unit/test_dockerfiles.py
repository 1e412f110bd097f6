"""The three Dockerfiles build offline from any base and check health the way they say.

No image is built here (no dockerd in unit tests): the files are parsed, their RUN step
is executed by sh against a fake python3, and their HEALTHCHECK command is run against
a server on 127.0.0.1.
"""

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("stress", "receiver", "exporter")


def instructions(image: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / image / "Dockerfile").read_text()
    logical, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def args(image: str) -> dict[str, str]:
    values = {}
    for keyword, rest in instructions(image):
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            values[name] = value.strip('"')
    return values


def only(image: str, keyword: str) -> str:
    found = [rest for kw, rest in instructions(image) if kw == keyword]
    assert len(found) == 1, f"{image}: expected one {keyword}, got {found}"
    return found[0]


def exec_form(text: str) -> list[str]:
    return json.loads(text)


@pytest.mark.parametrize("image", IMAGES)
def test_the_base_image_is_a_build_argument_defaulting_to_python_slim(image):
    first, second = instructions(image)[:2]
    assert first == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert second == ("FROM", "${BASE_IMAGE}")


@pytest.mark.parametrize("image", IMAGES)
def test_pinned_dependencies_are_the_ones_in_pyproject(image):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = args(image)["PIP_DEPS"].split()
    assert wanted and set(wanted) <= set(declared)


@pytest.mark.parametrize("image", IMAGES)
def test_with_install_deps_0_no_pip_runs_only_the_import_check(image, tmp_path):
    calls = run_dependency_step(image, tmp_path, install_deps="0")
    assert not any("pip" in call for call in calls)
    assert calls and calls[-1].startswith("-c import ")


@pytest.mark.parametrize("image", IMAGES)
def test_by_default_pip_installs_the_pinned_dependencies(image, tmp_path):
    calls = run_dependency_step(image, tmp_path, install_deps=args(image)["INSTALL_DEPS"])
    assert calls[0] == "-m pip install --no-cache-dir " + args(image)["PIP_DEPS"]


SHARED_PACKAGES = ("swarmguard_config",)


@pytest.mark.parametrize("image", IMAGES)
def test_the_image_copies_only_its_own_package_and_the_shared_ones(image):
    copies = [rest for kw, rest in instructions(image) if kw == "COPY"]
    assert copies == [f"{p}/ /app/{p}/" for p in (image, *SHARED_PACKAGES)]
    assert (ROOT / image / "__init__.py").exists()


@pytest.mark.parametrize("image", IMAGES)
def test_every_project_package_the_image_s_code_imports_is_copied(image):
    # Without this an image builds and then fails at its first import.
    copied = {rest.split("/")[0] for kw, rest in instructions(image) if kw == "COPY"}
    assert project_packages_imported_by(image) <= copied


def project_packages_imported_by(package: str) -> set[str]:
    """Top-level packages of this repository that `package`'s modules import."""
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    found = set()
    for module in (ROOT / package).rglob("*.py"):
        for line in module.read_text().splitlines():
            match = re.match(r"\s*(?:from|import)\s+(\w+)", line)
            if match and match.group(1) in ours:
                found.add(match.group(1))
    return found


def test_stress_runs_as_a_numeric_non_root_user():
    user = only("stress", "USER")
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", user), user


def test_the_exporter_runs_as_root_to_read_the_docker_socket_and_other_processes_net_dev():
    assert not [rest for kw, rest in instructions("exporter") if kw == "USER"]


def test_the_receiver_runs_as_root_unless_built_otherwise_for_the_docker_socket():
    assert args("receiver")["RUN_AS"] == "0"
    assert only("receiver", "USER") == "${RUN_AS}"


@pytest.mark.parametrize("image", IMAGES)
def test_health_is_checked_every_1_to_5_seconds_without_engine_25_options(image):
    options = only(image, "HEALTHCHECK")
    assert "--start-interval" not in options
    interval = re.search(r"--interval=(\d+)s", options)
    assert interval and 1 <= int(interval.group(1)) <= 5
    assert re.search(r"--retries=\d+", options)


def test_the_commands_start_the_apps_named_by_the_project():
    assert exec_form(only("stress", "CMD")) == [
        "python3", "-m", "gunicorn", "-c", "stress/gunicorn.conf.py", "stress.app:create_app()"]
    assert exec_form(only("receiver", "CMD")) == [
        "python3", "-m", "gunicorn", "-c", "receiver/gunicorn.conf.py",
        "receiver.app:create_app()"]
    assert exec_form(only("exporter", "CMD")) == ["python3", "-m", "exporter"]
    assert (ROOT / "stress" / "gunicorn.conf.py").exists()


def test_the_stress_health_check_passes_against_the_real_app_and_fails_without_it(tmp_path):
    from werkzeug.serving import make_server

    from stress.app import create_app
    from tests.unit.stress_support import RefusingController, config_for

    app = create_app(config_for(tmp_path), RefusingController())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert health_check("stress", {"STRESS_PORT": str(port)}) == 0
        assert health_check("stress", {"STRESS_BIND": f"127.0.0.1:{port}"}) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert health_check("stress", {"STRESS_PORT": str(port)}) != 0


@pytest.mark.parametrize(
    "image, path, env_for_port",
    [
        ("receiver", "/healthz", lambda port: {"SWARMGUARD_BIND": f"0.0.0.0:{port}"}),
        ("exporter", "/metrics", lambda port: {"SWARMGUARD_EXPORTER_LISTEN_PORT": str(port)}),
    ],
)
def test_the_health_check_asks_the_right_path_and_fails_on_errors(image, path, env_for_port):
    with StubServer(healthy_path=path) as stub:
        assert health_check(image, env_for_port(stub.port)) == 0
        stub.healthy_path = "/elsewhere"  # now the checked path answers 500
        assert health_check(image, env_for_port(stub.port)) != 0


def test_the_build_context_leaves_out_the_venv_git_and_tests():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def run_dependency_step(image: str, tmp_path: Path, install_deps: str) -> list[str]:
    """Run the Dockerfile's RUN line in sh with a python3 that only records its args."""
    [run] = [rest for kw, rest in instructions(image) if kw == "RUN"]
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "calls"
    fake = fake_bin / "python3"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "INSTALL_DEPS": install_deps,
           "PIP_DEPS": args(image)["PIP_DEPS"]}
    subprocess.run(["sh", "-c", run], env=env, check=True, timeout=10)
    return log.read_text().splitlines() if log.exists() else []


def health_check(image: str, env: dict[str, str]) -> int:
    """Run the image's HEALTHCHECK command here, with this interpreter as python3."""
    options = only(image, "HEALTHCHECK")
    command = exec_form(options[options.index("CMD") + 3:].strip())
    assert command[0] == "python3"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("STRESS_", "SWARMGUARD_"))}
    return subprocess.run([sys.executable, *command[1:]], env={**clean, **env},
                          capture_output=True, timeout=10).returncode


class StubServer:
    """An HTTP server on 127.0.0.1 that answers 200 on one path and 500 elsewhere."""

    def __init__(self, healthy_path: str):
        self.healthy_path = healthy_path
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == stub.healthy_path else 500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
