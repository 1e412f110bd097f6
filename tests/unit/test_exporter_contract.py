"""docs/contract.md ("Exporter metrics") names every label value the exporter publishes, the
series of its /opted-in page, and the settings and limits of its HTTP endpoint as the code
has them."""
import dataclasses
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ERROR_REASONS
from exporter.config import ENV_PREFIX, ExporterConfig
from exporter.main import OPEN_FILES_WANTED
from exporter.opt_in import STALE_INTERVALS, Reading, page
from exporter.server import CLOSE_REASONS, LISTEN_BACKLOG, MAX_HEAD_BYTES, OPT_IN_PATH

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
EXPORTER = CONTRACT.split("## Exporter metrics", 1)[1].split("\n## ", 1)[0]


def test_every_scrape_error_reason_is_in_the_contract():
    for reason in ERROR_REASONS:
        assert f"`{reason}`" in EXPORTER, reason


def section(title):
    return EXPORTER.split(f"### {title}", 1)[1].split("\n### ", 1)[0]


def serving_section():
    return section("Serving /metrics")


def opted_in_section():
    return section("Opted-in services")


def test_every_reason_a_connection_is_closed_for_is_in_the_contract():
    for reason in CLOSE_REASONS:
        assert f"`{reason}`" in serving_section(), reason
        assert f"`{reason}`" in EXPORTER.split("### ", 1)[0], reason  # beside its metric


@pytest.mark.parametrize("name, title", [("request_timeout_seconds", "Serving /metrics"),
                                         ("idle_timeout_seconds", "Serving /metrics"),
                                         ("max_connections", "Serving /metrics"),
                                         ("opt_in_interval_seconds", "Opted-in services")])
def test_each_setting_of_the_endpoint_is_in_the_contract_with_its_flag_variable_and_default(name, title):
    default = {f.name: f.default for f in dataclasses.fields(ExporterConfig)}[name]
    rows = [row for row in section(title).splitlines() if f"`{ENV_PREFIX}{name.upper()}`" in row]

    assert len(rows) == 1, name
    assert f"`--{name.replace('_', '-')}`" in rows[0]
    assert rows[0].endswith(f"| `{default:g}` |")


def test_the_serving_limits_in_the_contract_are_the_servers():
    assert f"longer than {MAX_HEAD_BYTES} bytes" in serving_section()
    assert f"listen backlog is {LISTEN_BACKLOG};" in serving_section()
    assert f"to the hard limit (at most {OPEN_FILES_WANTED})" in serving_section()


def test_the_opted_in_page_is_in_the_contract_at_its_path():
    assert f"`GET {OPT_IN_PATH}`" in serving_section()
    assert f"`GET {OPT_IN_PATH}`" in opted_in_section()


def test_each_series_of_the_opted_in_page_is_in_the_contract_with_its_labels_type_and_help_text():
    stale_after = STALE_INTERVALS * ExporterConfig().opt_in_interval_seconds
    text = page(Reading(manager=True, services={"web": 1}, read_at=0.0), 0.0, stale_after).decode()
    families = list(text_string_to_metric_families(text))

    assert len(families) == 2
    for family in families:
        labels = sorted({name for sample in family.samples for name in sample.labels})
        shown = f"`{family.name}{{{', '.join(labels)}}}`" if labels else f"`{family.name}`"
        assert f"| {shown} | {family.type} | {family.documentation} |" in opted_in_section(), family.name
