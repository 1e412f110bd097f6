"""docs/contract.md is the one list of SwarmGuard's public facts, and the code is held to
it both ways: a fact the code has and the contract does not, or the contract has and the
code does not, fails here with a sentence saying which. One test per kind of fact: skip
reasons, action results, the receiver's metrics with their help texts, detection
health's metrics, the exporter's metric names, every setting with its variable and
default, the storm budgets, the service labels, the event schema, /readyz's answer.
Elsewhere: the alerts and their labels (tests/rules/test_rule_contract.py); the
exporter's label values, its /opted-in page's help texts and its endpoint's limits
(test_exporter_contract.py).

The contract's tables are read as tables: a row is `| cell | cell |`, a value is written
in backticks.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path
from typing import NamedTuple

from datetime import datetime, timezone
from types import SimpleNamespace

from prometheus_client.metrics import MetricWrapperBase

from receiver import events as E
from receiver import kinds
from receiver import labels as L
from receiver import maintenance
from receiver import reasons as R
from receiver import storm
from receiver.actions import Outcome, Skip
from receiver.cluster import connect
from receiver.config import CONFIG_FILE_ENV, Settings
from receiver.ground_truth import GroundTruth, Reading, families
from receiver.metrics import Metrics
from receiver.readiness import Readiness
from receiver.reporting import Reporter
from swarmguard_config import env_name
from swarmguard_config.opt_in import ENABLE
from tests.fake_docker_api_client import FakeDockerAPI

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CONTRACT = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")


# -- reading the contract -------------------------------------------------------------------

class Table(NamedTuple):
    header: list[str]
    rows: list[list[str]]

    def column(self, name: str) -> list[str]:
        return [row[self.header.index(name)] for row in self.rows]


def section(title: str, level: str = "##") -> str:
    """The text of the section whose heading starts with `title`, up to the next heading
    of its level."""
    parts = re.split(rf"^{level} {re.escape(title)}.*$", CONTRACT, maxsplit=1, flags=re.M)
    assert len(parts) == 2, f"docs/contract.md has no section {title!r}"
    return re.split(rf"^{level} ", parts[1], maxsplit=1, flags=re.M)[0]


def tables(text: str) -> list[Table]:
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            found.append(Table(cells(line), rows))
    return found


def cells(line: str) -> list[str]:
    # A pipe inside backticks is a value's, not a column's end.
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"\|(?=(?:[^`]*`[^`]*`)*[^`]*$)", inner)]


def table(text: str, first_column: str) -> Table:
    [found] = [t for t in tables(text) if t.header[0] == first_column]
    return found


def quoted(text: str) -> list[str]:
    """The values written in backticks, in order."""
    return re.findall(r"`([^`]+)`", text)


def assert_same(in_code, in_contract, facts: str) -> None:
    missing = sorted(set(in_code) - set(in_contract), key=str)
    extra = sorted(set(in_contract) - set(in_code), key=str)
    assert not missing and not extra, (
        f"{facts}: in the code but not in docs/contract.md: {missing or 'none'}; "
        f"in docs/contract.md but not in the code: {extra or 'none'}")


# -- skip reasons and action results -----------------------------------------------------------

REASONS = section("Skip reasons and action results")


def test_every_reasons_py_value_is_a_skip_reason_an_action_result_or_a_dropped_reason():
    # SKIPPED is the outcome of a skip inside the receiver, never a label or an event.
    listed = {*R.SKIP_REASONS, *R.ACTION_RESULTS, *R.DROPPED_REASONS, R.SKIPPED}
    defined = {v for k, v in vars(R).items() if k.isupper() and isinstance(v, str)}
    assert defined <= listed, (f"receiver/reasons.py defines {sorted(defined - listed)} "
                               f"without listing it in SKIP_REASONS, ACTION_RESULTS or "
                               f"DROPPED_REASONS")


def test_the_skip_reasons_are_the_contracts():
    documented = [quoted(cell)[0] for cell in table(REASONS, "reason").column("reason")]
    assert_same(R.SKIP_REASONS, documented, "skip reasons")


def test_the_action_results_are_the_contracts():
    documented = [quoted(cell)[0] for cell in table(REASONS, "result").column("result")]
    assert_same(R.ACTION_RESULTS, documented, "action results")


# -- metrics ----------------------------------------------------------------------------------

def receiver_metrics() -> dict[str, tuple[str, str]]:
    """`name{labels}` -> (type, help text), for every metric the receiver's registry holds."""
    metrics = Metrics()
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    registered = {family.name for family in metrics.registry.collect()}
    assert registered == {m._name for m in wrappers}, "a metric registered past Metrics' fields"
    return {f"{m._name}{'_total' if m._type == 'counter' else ''}"
            f"{'{' + ', '.join(m._labelnames) + '}' if m._labelnames else ''}":
            (m._type, m._documentation) for m in wrappers}


def test_the_receivers_metrics_are_the_contracts_with_their_types_and_help_texts():
    rows = table(section("Receiver metrics (`receiver/metrics.py`)"), "metric").rows
    documented = {quoted(name)[0]: (kind, help_text) for name, kind, help_text in rows}
    in_code = receiver_metrics()

    assert_same(in_code, documented, "receiver metrics (name{labels})")
    for name, (kind, help_text) in in_code.items():
        assert documented[name][0] == kind, f"{name} is a {kind}, the contract says otherwise"
        assert documented[name][1] == help_text, (
            f"{name}'s help text differs:\n code:     {help_text}\n contract: {documented[name][1]}")


def test_the_help_texts_name_every_skip_reason_and_action_result():
    in_code = receiver_metrics()
    skipped = in_code["swarmguard_alerts_skipped_total{alertname, reason}"][1]
    actions = in_code["swarmguard_actions_total{kind, result}"][1]
    assert_same(R.SKIP_REASONS, re.findall(r"\w+", skipped.split("(", 1)[1]),
                "skip reasons in swarmguard_alerts_skipped_total's help text")
    assert_same(R.ACTION_RESULTS, re.findall(r"\w+", actions.split("result (", 1)[1]),
                "action results in swarmguard_actions_total's help text")


def test_the_detection_health_metrics_are_the_contracts_with_their_labels():
    fresh = Reading(truth=GroundTruth(nodes=()), succeeded_at=0.0, last_ok=True)
    rendered = {family.name: family for family in families(fresh, now=0.0)}
    rows = table(section("Receiver metrics for detection health"), "metric").rows
    documented = {re.sub(r"\{.*", "", quoted(row[0])[0]): row for row in rows}

    assert_same(rendered, documented, "detection health metrics")
    for name, row in documented.items():
        assert row[1] == rendered[name].type, f"{name} is a {rendered[name].type}"


def test_the_exporters_metrics_are_the_contracts():
    # Every metric name the exporter's code writes, against every one the contract's
    # "Exporter metrics" names (a counter with or without its _total: the family's name).
    name = re.compile(r"swarmguard_[a-z_]+")
    in_code = {node.value.removesuffix("_total")
               for path in (ROOT / "exporter").glob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               and name.fullmatch(node.value)}
    documented = {name.match(q).group().removesuffix("_total")
                  for q in quoted(section("Exporter metrics")) if name.match(q)}
    assert_same(in_code, documented, "exporter metrics")


# -- settings ---------------------------------------------------------------------------------

PACKAGES = ("receiver", "exporter", "stress", "swarmguard_cli")
# Read by their own rules, not a field's: the token (exactly one of the two) and the file.
OWN_RULES = {"SWARMGUARD_TOKEN", "SWARMGUARD_TOKEN_FILE", CONFIG_FILE_ENV}


def loaded_dataclasses() -> list[tuple[type, str]]:
    """(dataclass, prefix) of every `load(cls, prefix, ...)` call of swarmguard_config in
    the components' code: whatever settings exist are checked, whoever adds them."""
    found = []
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for owner, call in _load_calls(tree):
            cls, prefix = (_resolve(tree, module, arg, owner) for arg in call.args[:2])
            found.append((cls, prefix))
    assert found, "no component loads its settings with swarmguard_config.load"
    return found


def _load_calls(tree: ast.Module):
    """(the enclosing class's name or None, the call) of each load(...) call."""
    def walk(node, owner):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.ClassDef) else owner
            if isinstance(child, ast.Call) and getattr(child.func, "id", None) == "load":
                yield owner, child
            yield from walk(child, inner)
    yield from walk(tree, None)


def _resolve(tree: ast.Module, module: str, node: ast.expr, owner: str | None):
    if isinstance(node, ast.Constant):
        return node.value
    name = owner if node.id == "cls" else node.id
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and any(
                (a.asname or a.name) == name for a in statement.names):
            return getattr(importlib.import_module(statement.module), name)
    return getattr(importlib.import_module(module), name)


def documented_settings() -> dict[str, list[str]]:
    """variable -> the default cell of each row of a settings table naming it. A settings
    table has an `environment` or `variable` column and a `default` column; a row may name
    several variables, `A` / `_B` being A's prefix with _B for its last word, and give
    their defaults in the same order, `1` / `2`."""
    found: dict[str, list[str]] = {}
    for t in tables(CONTRACT):
        names_column = next((c for c in ("environment", "variable") if c in t.header), None)
        if names_column is None or "default" not in t.header:
            continue
        for names_cell, default in zip(t.column(names_column), t.column("default")):
            names = []
            for name in (n for n in quoted(names_cell) if re.fullmatch(r"_?[A-Z][A-Z0-9_]+", n)):
                names.append(names[0].rsplit("_", 1)[0] + name if name.startswith("_") else name)
            defaults = default.split(" / ")
            for i, name in enumerate(names):
                found.setdefault(name, []).append(
                    defaults[i] if len(defaults) == len(names) else default)
    return found


def same_default(value: object, cell: str) -> bool:
    """Whether a default cell states `value`: a value in backticks at its start (a unit
    may follow), or words alone for no value (None, or an empty text)."""
    if not cell.startswith("`"):
        return value is None or value == ""
    text = quoted(cell)[0]
    if isinstance(value, bool):
        return text in (("1", "true") if value else ("0", "false"))
    if isinstance(value, (int, float)):
        try:
            return float(text) == value
        except ValueError:
            return False
    return text == str(value)


def test_every_setting_is_in_the_contract_with_its_variable_and_default():
    fields = {}
    for cls, prefix in loaded_dataclasses():
        for f in dataclasses.fields(cls):
            variable = env_name(f, prefix)
            if variable is not None:
                fields[variable] = (f"{cls.__name__}.{f.name}", f.default)
    documented = documented_settings()

    assert_same(set(fields) | OWN_RULES, documented,
                "settings (environment variables)")
    for variable, (where, default) in fields.items():
        for cell in documented[variable]:
            assert same_default(default, cell), (
                f"{variable} ({where}) defaults to {default!r}; docs/contract.md says {cell}")


def test_the_storm_budgets_in_the_contract_are_the_settings_and_storm_py_defaults():
    budgets = dict(re.findall(r"\(`(SWARMGUARD_MAX_\w+)`, (\d+)", section("Storms")))
    defaults = {env_name(f, "SWARMGUARD_"): f.default for f in dataclasses.fields(Settings)}
    assert len(budgets) == len(dataclasses.fields(storm.Budgets)), budgets
    for variable, value in budgets.items():
        assert defaults[variable] == int(value), f"{variable}: the contract says {value}"
    # storm.Budgets() is what a ledger built without settings uses: the same numbers.
    from_settings = storm.StormLedger.from_settings(Settings(token="t")).budgets
    assert storm.Budgets() == from_settings, (
        f"storm.Budgets' defaults are {storm.Budgets()}, the settings' {from_settings}")


# -- labels -----------------------------------------------------------------------------------

def test_every_service_label_is_in_the_contract_and_every_label_there_is_read_or_written():
    in_code = {ENABLE, L.REPLICAS_MIN, L.REPLICAS_MAX, L.STATEFUL, L.UNSAFE, L.LAST_ACTION,
               L.LAST_ACTION_AT, L.LAST_ACTION_REASON, L.PLACEMENT_EXCLUSION, L.FUTILE_UNTIL,
               *(k.last_at_label for k in kinds.KINDS)}
    text = section("Service labels")
    # `swarmguard.x=allow` names the label x; `swarmguard.last-*-at` stands for three.
    documented = {q.split("=")[0] for q in quoted(text)
                  if q.startswith("swarmguard.") and "*" not in q}
    assert_same(in_code, documented, "service labels")


def test_every_node_label_of_a_drain_is_in_the_contract():
    text = section("Maintenance")
    for label in (maintenance.DRAIN_STATE, maintenance.DRAIN_AT, maintenance.DRAIN_FORCE):
        assert f"`{label}" in text, f"the node label {label} is not in docs/contract.md"


# -- events -----------------------------------------------------------------------------------

EVENTS = section("Receiver events")


def event_keys() -> dict[str, str]:
    return {quoted(key)[0]: value for key, value in table(EVENTS, "key").rows}


def test_every_event_key_is_in_the_contract_in_order():
    assert list(event_keys()) == list(E.FIELDS), (
        f"the event keys differ: code {list(E.FIELDS)}, docs/contract.md {list(event_keys())}")


def test_every_event_type_is_in_the_contract():
    in_code = {E.DECISION, E.OUTCOME, E.DROPPED, E.STARTED, E.NOTIFICATION, E.MAINTENANCE}
    documented = set(re.findall(r"`(\w+)` \(", event_keys()["type"]))
    assert_same(in_code, documented, "event types")


def test_every_event_result_is_in_the_contract_by_type():
    results = dict(re.findall(r"(\w+): ([^;]+)", event_keys()["result"]))
    by_type = {
        E.DECISION: {E.ACT, E.SKIP},
        E.DROPPED: set(R.DROPPED_REASONS),
        E.STARTED: {E.LIVE, E.DRY_RUN},
        E.NOTIFICATION: {E.RESOLVED},
        E.MAINTENANCE: {E.BEGUN, E.RESUMED, E.FINISHED, E.STOPPED},
    }
    for kind, values in by_type.items():
        assert_same(values, quoted(results[kind]), f"results of {kind} events")
    assert "action result" in results[E.OUTCOME], "an outcome's result is an action result"


def emitted_by_the_reporter() -> dict[tuple[str, str, str], set[str]]:
    """(type, result, what it is about) -> the keys not null, for each event the Reporter
    writes, each written about the fullest subject there is: a migrate alert (it names a
    task and a node), an outcome with a detail and a duration, a drain's move of a task."""
    log = E.EventLog(64, clock=lambda: NOW)
    report = Reporter(Metrics(), log)
    alert = SimpleNamespace(name="SwarmGuardMigrate", kind="migrate", firing=True,
                            service="web", starts_at=NOW,
                            labels={"service": "web", "task_id": "t1", "node_id": "n1"})
    resolved = SimpleNamespace(**{**vars(alert), "firing": False})
    action = SimpleNamespace(alert=alert, kind="migrate", service=SimpleNamespace(name="web"),
                             plan="migrate web", sentence="Migrating web",
                             dry_run_sentence="**DRY-RUN**: would migrate web")
    move = SimpleNamespace(kind=maintenance.DRAIN, service=SimpleNamespace(name="web"),
                           from_node=SimpleNamespace(id="n1", hostname="worker-1"),
                           tasks=("t1",), sentence="Moving web off worker-1")
    written: dict[tuple[str, str, str], set[str]] = {}

    def about(subject, write):
        before = log.since(0)[1]
        write()
        for event in log.since(before)[0]:
            key = (event["type"], event["result"], subject)
            written[key] = {k for k, v in event.items() if v is not None}

    about("the receiver", lambda: report.started(dry_run=False, settings=""))
    about("an alert", lambda: report.skipped(Skip(alert, R.COOLDOWN, "why"), NOW))
    about("an alert", lambda: report.acting(action, dry_run=False))
    about("an alert's action", lambda: report.finished(
        Outcome(action, R.SUCCESS, duration=1.0, detail="new task running"), NOW, 1.0))
    about("an alert", lambda: report.received(SimpleNamespace(
        counts={}, copies={}, firing=(), alerts=(resolved,), truncated_alerts=0), NOW))
    about("an alert", lambda: report.dropped_waiting("web", (alert,), NOW))
    about("a service", lambda: report.dropped_unfinished("web", 20.0))
    about("a service", lambda: report.unwatched("web", 20.0))
    about("a drain's or rebalance's move", lambda: report.moving(move))
    about("a drain's or rebalance's move", lambda: report.moved(move, R.SUCCESS, "done", 1.0))
    about("a drain's or rebalance's move", lambda: report.move_unwatched(move))
    about("a drain, undrain or rebalance", lambda: report.maintenance(
        maintenance.DRAIN, E.BEGUN, "n1", "Draining worker-1"))
    return written


def test_each_event_carries_the_keys_the_contract_lists():
    always = {"seq", "type", "at", "result"}
    documented = {}
    for event, subject, keys in table(EVENTS, "event").rows:
        kind, *result = quoted(event)
        for result in (result or [None]):
            documented[(kind, result, subject)] = always | set(quoted(keys))
    written = emitted_by_the_reporter()
    # An outcome's or a started event's result varies: the contract names none.
    written = {(kind, None if kind in (E.OUTCOME, E.STARTED, E.MAINTENANCE) else result,
                subject): keys for (kind, result, subject), keys in written.items()}

    assert_same(written, documented, "events (type, result, what about)")
    for event, keys in written.items():
        assert keys == documented[event], (
            f"{event} carries {sorted(keys)} in the code, {sorted(documented[event])} in "
            f"docs/contract.md")


# -- endpoints ----------------------------------------------------------------------------------

def test_readyz_answers_with_the_keys_the_contract_lists():
    readiness = Readiness(connect(Settings(token="t"), FakeDockerAPI()), monotonic=lambda: 0.0)
    before = set(readiness.current()[1])
    readiness.check()
    after = set(readiness.current()[1])
    documented = [quoted(row[0])[0] for row in table(section("Receiver HTTP API"), "key").rows]

    assert_same(before | after, documented, "keys of /readyz's answer")
