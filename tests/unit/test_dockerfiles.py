"""The three Dockerfiles build offline from any base and check health the way they say.

No image is built here (no dockerd in unit tests): the files are parsed, their RUN step
is executed by sh against a fake python3, what they COPY is laid out as in the image and
their CMD's modules are imported from it alone, and their HEALTHCHECK command is run
against a server on 127.0.0.1.
"""

import http.server
import json
import os
import shutil
import site
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
def test_the_base_image_is_a_build_argument_defaulting_to_a_python_the_project_supports(image):
    # Catches a base the lab cannot replace (it builds from a local base, offline) and a
    # default Python older than pyproject's requires-python.
    first, second = instructions(image)[:2]
    assert first[0] == "ARG" and first[1].startswith("BASE_IMAGE=")
    assert second == ("FROM", "${BASE_IMAGE}")
    version = re.fullmatch(r"python:(\d+)\.(\d+)[\w.-]*", args(image)["BASE_IMAGE"])
    assert version, args(image)["BASE_IMAGE"]
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.fullmatch(r">=(\d+)\.(\d+)", required).groups())
    assert (int(version[1]), int(version[2])) >= minimum


@pytest.mark.parametrize("image", IMAGES)
def test_pinned_dependencies_are_the_ones_in_pyproject(image):
    # Catches an image with other dependency versions than the ones the tests ran with.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = args(image)["PIP_DEPS"].split()
    assert wanted and set(wanted) <= set(declared)


@pytest.mark.parametrize("image", IMAGES)
def test_with_install_deps_0_no_pip_runs_only_the_import_check(image, tmp_path):
    # Catches an offline build (the lab's) that still calls pip.
    calls = run_dependency_step(image, tmp_path, install_deps="0")
    assert not any("pip" in call for call in calls)
    assert calls and calls[-1].startswith("-c import ")


@pytest.mark.parametrize("image", IMAGES)
def test_by_default_pip_installs_the_pinned_dependencies(image, tmp_path):
    # Catches a default build that installs nothing, or other versions.
    calls = run_dependency_step(image, tmp_path, install_deps=args(image)["INSTALL_DEPS"])
    assert calls[0] == "-m pip install --no-cache-dir " + args(image)["PIP_DEPS"]


def copied(image: str, into: Path) -> Path:
    """What the image's COPY steps put under its WORKDIR, laid out in `into`; the build
    context is the repository root, less what .dockerignore leaves out."""
    workdir = Path(only(image, "WORKDIR"))
    ignored = (ROOT / ".dockerignore").read_text().split()
    for rest in (r for kw, r in instructions(image) if kw == "COPY"):
        *sources, target = rest.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"{image}: COPY {source}: not in the build context"
            assert source.rstrip("/").split("/")[0] not in ignored, f"{image}: {source} is ignored"
            destination = into / Path(target).relative_to(workdir)
            shutil.copytree(path, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def in_image(image: str, app: Path, code: str) -> subprocess.CompletedProcess:
    """Run `code` with the image's copied files as the only project code on the path (the
    installed dependencies stay importable; this checkout does not)."""
    paths = [str(app), *site.getsitepackages()]
    script = f"import sys; sys.path[:0] = {paths!r}\n{code}"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-S", "-c", script], cwd=app, env=clean,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("image", IMAGES)
def test_every_module_of_the_package_imports_from_what_the_image_copies(image, tmp_path):
    # Catches an image that would crash at start: a COPY source that is missing, or a
    # module that imports project code the image does not copy (tests/, another package).
    app = copied(image, tmp_path / "app")
    modules = [".".join(p.relative_to(app).with_suffix("").parts)
               for p in sorted((app / image).rglob("*.py"))
               if p.name not in ("__main__.py", "gunicorn.conf.py")]
    result = in_image(image, app, "\n".join(f"import {m}" for m in modules) + "\n"
                      f"assert {image}.__file__.startswith({str(app)!r})")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_the_command_starts_what_the_image_copies(image, tmp_path):
    # Catches a CMD naming a module, a gunicorn config or an app factory that is not in
    # the image (renamed, moved), so the container would exit at once.
    app = copied(image, tmp_path / "app")
    command = exec_form(only(image, "CMD"))
    assert command[:2] == ["python3", "-m"]
    if command[2] == "gunicorn":
        config = command[command.index("-c") + 1]
        assert (app / config).is_file(), config
        module, _, factory = command[-1].partition(":")
        code = (f"import runpy, {module}; runpy.run_path({config!r}); "
                f"assert callable({module}.{factory.removesuffix('()')})")
    else:
        code = (f"import importlib.util; "
                f"spec = importlib.util.find_spec('{command[2]}.__main__'); "
                f"assert spec and spec.origin.startswith({str(app)!r}), spec")
    result = in_image(image, app, code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_every_project_package_the_image_s_code_imports_is_copied(image):
    # Without this an image builds and then fails at its first import.
    copied_packages = {rest.split("/")[0] for kw, rest in instructions(image) if kw == "COPY"}
    assert project_packages_imported_by(image) <= copied_packages


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


def test_the_receiver_image_has_a_swarmguard_command_running_the_cli_it_copies(tmp_path):
    # Catches a `swarmguard` command missing from the image, not executable, losing its
    # arguments, or running a CLI the image does not copy.
    app = copied("receiver", tmp_path / "app")
    [run] = [rest for kw, rest in instructions("receiver") if kw == "RUN" and "swarmguard" in rest]
    command = tmp_path / "swarmguard"
    assert "/usr/local/bin/swarmguard" in run
    subprocess.run(["sh", "-c", run.replace("/usr/local/bin/swarmguard", str(command))],
                   check=True, timeout=10)
    # python3 sees the image's copied code and the installed dependencies, not this checkout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin",
           "PYTHONPATH": os.pathsep.join([str(app), *site.getsitepackages()])}
    result = subprocess.run([str(command), "drain", "--help"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: swarmguard drain")


def test_stress_runs_as_a_numeric_non_root_user():
    # Catches the demo app running as root, or as a user name the base image (any base,
    # the lab's included) may not have in its /etc/passwd.
    user = only("stress", "USER")
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", user), user


def test_the_exporter_runs_as_root_to_read_the_docker_socket_and_other_processes_net_dev():
    # Catches an exporter that cannot read the Docker socket or other processes'
    # /proc/<pid>/net/dev.
    assert not [rest for kw, rest in instructions("exporter") if kw == "USER"]


def test_the_receiver_runs_as_root_unless_built_otherwise_for_the_docker_socket():
    # Catches a receiver that cannot open the Docker socket by default, or whose user
    # cannot be changed at build time.
    assert args("receiver")["RUN_AS"] == "0"
    assert only("receiver", "USER") == "${RUN_AS}"


@pytest.mark.parametrize("image", IMAGES)
def test_health_is_checked_every_1_to_5_seconds_without_engine_25_options(image):
    # Catches a health check Engine 20.10 refuses (--start-interval), or one too slow for
    # start-first migrations.
    options = only(image, "HEALTHCHECK")
    assert "--start-interval" not in options
    interval = re.search(r"--interval=(\d+)s", options)
    assert interval and 1 <= int(interval.group(1)) <= 5
    assert re.search(r"--retries=\d+", options)


def test_the_stress_health_check_passes_against_the_real_app_and_fails_without_it(tmp_path):
    # Catches a health check that asks the wrong port or path, or passes with no app.
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
    # Catches a health check that asks the wrong port or path, or passes on an error.
    with StubServer(healthy_path=path) as stub:
        assert health_check(image, env_for_port(stub.port)) == 0
        stub.healthy_path = "/elsewhere"  # now the checked path answers 500
        assert health_check(image, env_for_port(stub.port)) != 0


def test_the_build_context_leaves_out_the_venv_git_and_tests():
    # Catches a build context of hundreds of MB, or local state and tests copied into an
    # image.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def run_dependency_step(image: str, tmp_path: Path, install_deps: str) -> list[str]:
    """Run the Dockerfile's dependency step in sh with a python3 that only records its args."""
    [run] = [rest for kw, rest in instructions(image) if kw == "RUN" and "PIP_DEPS" in rest]
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
