"""The pure core stays apart from Docker and from the wire format: decisions, the model,
storm control and the labels are imported, and run, without the Docker SDK (receiver/README.md)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules_loaded_by(module: str) -> set[str]:
    """The modules that importing `module` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["receiver.decisions", "receiver.futile", "receiver.model",
                                    "receiver.storm", "receiver.labels", "receiver.actions",
                                    "receiver.safety"])
def test_the_pure_core_imports_no_docker(module):
    loaded = modules_loaded_by(module)
    assert module in loaded  # the check itself ran
    assert not {m for m in loaded if m == "docker" or m.startswith("docker.")}


def test_the_gateway_does_import_docker():
    # The same check on the module that must load it: the test above can fail.
    assert "docker" in modules_loaded_by("receiver.cluster")


@pytest.mark.parametrize("module", ["receiver.decisions", "receiver.storm", "receiver.actions",
                                    "receiver.labels"])
def test_the_pure_core_does_not_depend_on_the_webhook_parser(module):
    # It reads alerts as receiver/alerts.py defines them, not as Alertmanager sends them.
    loaded = modules_loaded_by(module)
    assert "receiver.alerts" in loaded or module == "receiver.labels"
    assert "receiver.payload" not in loaded


def test_the_webhook_parser_is_what_loads_it():
    # The same check on the module that must load it: the test above can fail.
    assert "receiver.payload" in modules_loaded_by("receiver.reporting")


def test_deciding_does_not_load_the_settings():
    # decide() is given a Policy: what it needs of the settings, without the token.
    loaded = modules_loaded_by("receiver.decisions")
    assert "receiver.decisions" in loaded and "receiver.config" not in loaded
    assert "receiver.config" in modules_loaded_by("receiver.actuator")


def test_the_dispatcher_does_not_depend_on_the_actuator():
    # It is handed the Actuator's `handle` (app.py); the types they share are in actions.py.
    assert "receiver.actuator" not in modules_loaded_by("receiver.worker")
