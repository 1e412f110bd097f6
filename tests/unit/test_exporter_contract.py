"""docs/contract.md ("Exporter metrics") names every label value the exporter publishes."""
from pathlib import Path

from exporter.collector import ERROR_REASONS

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
EXPORTER = CONTRACT.split("## Exporter metrics", 1)[1].split("\n## ", 1)[0]


def test_every_scrape_error_reason_is_in_the_contract():
    for reason in ERROR_REASONS:
        assert f"`{reason}`" in EXPORTER, reason
