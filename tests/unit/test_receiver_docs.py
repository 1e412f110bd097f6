"""receiver/README.md lists what the code defines: every setting and every skip reason
(docs/contract.md is held to the same by test_contract.py); the contract states the
webhook parser's bounds."""
import dataclasses
from pathlib import Path

from receiver.config import Settings
from receiver.reasons import DOCKER_ERROR, SKIP_REASONS

README = (Path(__file__).resolve().parents[2] / "receiver" / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_receivers_readme_lists_every_setting():
    # A table row names a setting in full, or as a suffix after its neighbour's name
    # (`SWARMGUARD_COOLDOWN_MIGRATE` / `_SCALE_UP`).
    table = section("Settings")
    assert "`SWARMGUARD_FUTILE_WINDOW` | `600` s" in table
    for f in dataclasses.fields(Settings):
        if f.name == "token":
            continue
        name = f.name.upper()
        assert f"`SWARMGUARD_{name}`" in table or f"`_{name.split('_', 1)[1]}`" in table, name


def test_the_receivers_readme_explains_every_skip_reason():
    skips = section("Skip reasons")
    for reason in SKIP_REASONS[:SKIP_REASONS.index(DOCKER_ERROR) + 1]:
        assert f"`{reason}`" in skips, reason


def test_the_contract_states_the_bounds_the_webhook_parser_applies():
    from receiver import payload
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    api = contract.split("## Receiver HTTP API", 1)[1].split("\n## ", 1)[0]
    api = " ".join(api.split())  # one line: the numbers may sit at a line break
    assert (payload.LABEL_MAX, payload.ENTRIES_MAX, payload.QUOTED_MAX) == (1024, 64, 64)
    assert (f"more than {payload.ENTRIES_MAX} labels or {payload.ENTRIES_MAX} annotations"
            in api)
    assert f"longer than {payload.LABEL_MAX:,} characters" in api
    assert f"at most the first {payload.QUOTED_MAX} characters of the value at fault" in api
