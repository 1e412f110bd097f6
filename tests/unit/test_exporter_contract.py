"""docs/contract.md ("Exporter metrics") names every label value the exporter publishes, and
the settings and limits of its HTTP endpoint as the code has them."""
import dataclasses
from pathlib import Path

import pytest

from exporter.collector import ERROR_REASONS
from exporter.config import ENV_PREFIX, ExporterConfig
from exporter.main import OPEN_FILES_WANTED
from exporter.server import CLOSE_REASONS, LISTEN_BACKLOG, MAX_HEAD_BYTES

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
EXPORTER = CONTRACT.split("## Exporter metrics", 1)[1].split("\n## ", 1)[0]


def test_every_scrape_error_reason_is_in_the_contract():
    for reason in ERROR_REASONS:
        assert f"`{reason}`" in EXPORTER, reason


def serving_section():
    return EXPORTER.split("### Serving /metrics", 1)[1].split("\n### ", 1)[0]


def test_every_reason_a_connection_is_closed_for_is_in_the_contract():
    for reason in CLOSE_REASONS:
        assert f"`{reason}`" in serving_section(), reason
        assert f"`{reason}`" in EXPORTER.split("### ", 1)[0], reason  # beside its metric


@pytest.mark.parametrize("name", ["request_timeout_seconds", "idle_timeout_seconds", "max_connections"])
def test_each_serving_setting_is_in_the_contract_with_its_flag_variable_and_default(name):
    default = {f.name: f.default for f in dataclasses.fields(ExporterConfig)}[name]
    rows = [row for row in serving_section().splitlines() if f"`{ENV_PREFIX}{name.upper()}`" in row]

    assert len(rows) == 1, name
    assert f"`--{name.replace('_', '-')}`" in rows[0]
    assert rows[0].endswith(f"| `{default:g}` |")


def test_the_serving_limits_in_the_contract_are_the_servers():
    assert f"longer than {MAX_HEAD_BYTES} bytes" in serving_section()
    assert f"listen backlog is {LISTEN_BACKLOG};" in serving_section()
    assert f"to the hard limit (at most {OPEN_FILES_WANTED})" in serving_section()
