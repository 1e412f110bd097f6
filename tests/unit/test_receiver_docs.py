"""The contract states the webhook parser's bounds (docs/contract.md, "Receiver HTTP API");
every other fact of the contract is held to the code by test_contract.py."""
from pathlib import Path


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
