import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.payload import (ParseCache, PayloadError, parse_time, parse_webhook,
                              webhook_from_dict)

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_a_firing_migrate_alert_parses_into_its_labels_and_times():
    webhook = parse_webhook((FIXTURES / "firing_migrate.json").read_bytes())
    (alert,) = webhook.alerts
    assert alert.name == "SwarmGuardMigrate"
    assert alert.kind == "migrate"
    assert alert.firing
    assert alert.service == "demo_web"
    assert alert.task_id == "t1p4r7s0u3w6y9a2c5e8g1i4k"
    assert alert.node_id == "w1a9d3f5h7j2l4n6p8r0t2v4x"
    assert alert.fingerprint == "8a4f2c1d9e7b6035"
    assert alert.starts_at == datetime(2026, 11, 27, 10, 0, 1, 123456, tzinfo=timezone.utc)
    assert alert.ends_at is None  # Go's zero time means "still firing"
    assert webhook.receiver == "swarmguard"
    assert webhook.truncated_alerts == 0


def test_a_resolved_alert_keeps_its_end_time():
    (alert,) = parse_webhook((FIXTURES / "resolved_migrate.json").read_bytes()).alerts
    assert not alert.firing
    assert alert.ends_at == datetime(2026, 11, 27, 10, 3, 16, 520000, tzinfo=timezone.utc)


def test_a_grouped_payload_keeps_every_alert_in_order():
    alerts = parse_webhook((FIXTURES / "grouped_migrate.json").read_bytes()).alerts
    assert [(a.service, a.status) for a in alerts] == [
        ("demo_web", "firing"), ("demo_web", "firing"), ("demo_web", "resolved"),
        ("demo_api", "firing")]
    # "+01:00" is converted to UTC
    assert alerts[3].starts_at == datetime(2026, 11, 27, 9, 0, 3, tzinfo=timezone.utc)


def test_scale_alerts_need_only_the_service_label():
    up = parse_webhook((FIXTURES / "firing_scale_up.json").read_bytes()).alerts[0]
    down = parse_webhook((FIXTURES / "firing_scale_down.json").read_bytes()).alerts[0]
    assert (up.kind, down.kind) == ("scale_up", "scale_down")
    assert up.task_id is None


@pytest.mark.parametrize("name, reason", [
    ("malformed.json", "not valid JSON"),
    ("wrong_version.json", "unsupported webhook version '3'"),
    ("missing_labels.json", "SwarmGuardMigrate is missing label(s) task_id"),
    ("unknown_alert.json", "unknown alertname 'HighLatency'"),
])
def test_recorded_bad_payloads_are_refused_with_a_reason(name, reason):
    with pytest.raises(PayloadError) as err:
        parse_webhook((FIXTURES / name).read_bytes())
    assert reason in err.value.reason


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(alerts=[]), "alerts must be a non-empty list"),
    (lambda d: d.update(alerts="x"), "alerts must be a non-empty list"),
    (lambda d: d["alerts"][0].update(status="pending"), "alerts[0].status"),
    (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
    (lambda d: d["alerts"][0].update(startsAt="2026-02-30T10:00:00Z"), "not a valid time"),
    (lambda d: d["alerts"][0]["labels"].update(service=""), "missing label(s) service"),
    (lambda d: d["alerts"][0]["labels"].update(service=3), "labels.service must be a string"),
    (lambda d: d["alerts"][0]["labels"].pop("alertname"), "has no alertname"),
    (lambda d: d.update(version=4), "unsupported webhook version 4"),
    (lambda d: d.update(truncatedAlerts=-1), "truncatedAlerts"),
])
def test_each_broken_field_is_named_in_the_reason(change, reason):
    data = load("firing_migrate.json")
    change(data)
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert reason in err.value.reason


def test_one_bad_alert_refuses_the_whole_payload():
    data = load("grouped_migrate.json")
    data["alerts"][2]["labels"]["alertname"] = "Watchdog"
    with pytest.raises(PayloadError, match=r"alerts\[2\]: unknown alertname"):
        webhook_from_dict(data)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-27T10:00:01Z", datetime(2026, 11, 27, 10, 0, 1, tzinfo=timezone.utc)),
    ("2026-11-27T10:00:01.123456789Z",
     datetime(2026, 11, 27, 10, 0, 1, 123456, tzinfo=timezone.utc)),
    ("2026-11-27T10:00:01.5Z", datetime(2026, 11, 27, 10, 0, 1, 500000, tzinfo=timezone.utc)),
    ("2026-11-27t10:00:01-02:30", datetime(2026, 11, 27, 12, 30, 1, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
])
def test_rfc3339_times_parse_to_utc_including_nanoseconds(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "2026-11-27", "2026-11-27 10:00:01Z", "10:00:01",
                                  "0001-01-01T00:00:00+01:00", "2026-13-01T00:00:00Z", None, 5])
def test_anything_else_is_not_a_time(text):
    with pytest.raises(PayloadError):
        parse_time(text)


def test_deeply_nested_json_is_a_payload_error_not_a_crash():
    with pytest.raises(PayloadError):
        parse_webhook(b"[" * 100000 + b"]" * 100000)


def test_bytes_that_are_not_utf8_are_a_payload_error():
    with pytest.raises(PayloadError):
        parse_webhook(b"\xff\xfe{\x00")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)
texts = st.sampled_from([
    "firing", "resolved", "4", "SwarmGuardMigrate", "SwarmGuardScaleUp", "service", "",
    "2026-11-27T10:00:01Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
]) | st.text(max_size=12)
alert_like = st.fixed_dictionaries({}, optional={
    "status": texts | json_values,
    "labels": st.dictionaries(st.sampled_from(["alertname", "service", "task_id", "node_id"]),
                              texts | json_values, max_size=4) | json_values,
    "annotations": st.dictionaries(st.text(max_size=5), texts | json_values, max_size=3),
    "startsAt": texts | json_values,
    "endsAt": texts | json_values,
    "fingerprint": texts | json_values,
})
webhook_like = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from(["4", 4, "3"]) | json_values,
    "alerts": st.lists(alert_like | json_values, max_size=4) | json_values,
    "truncatedAlerts": st.integers() | json_values,
    "receiver": texts | json_values,
    "groupKey": texts | json_values,
})


RECORDED = [load(name) for name in ["firing_migrate.json", "grouped_migrate.json",
                                    "firing_scale_up.json", "resolved_migrate.json"]]
FIELDS = ["status", "labels", "annotations", "startsAt", "endsAt", "fingerprint",
          "generatorURL", "alertname", "service", "task_id", "node_id"]


@st.composite
def mutated_recorded(draw):
    """A recorded payload with a few fields of its alerts replaced or removed: reaches the
    deep validation that arbitrary JSON rarely gets to."""
    data = json.loads(json.dumps(draw(st.sampled_from(RECORDED))))
    for _ in range(draw(st.integers(0, 3))):
        alert = draw(st.sampled_from(data["alerts"]))
        field = draw(st.sampled_from(FIELDS))
        target = alert.get("labels") if field in ("alertname", "service", "task_id",
                                                  "node_id") else alert
        if not isinstance(target, dict):
            continue  # the labels themselves were replaced by an earlier mutation
        if draw(st.booleans()):
            target.pop(field, None)
        else:
            target[field] = draw(texts | json_values)
    return data


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, webhook_like, mutated_recorded()))
def test_arbitrary_json_never_raises_anything_but_payload_error(data):
    try:
        webhook_from_dict(data)
        parse_webhook(json.dumps(data))
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_payload_error(body):
    try:
        parse_webhook(body)
    except PayloadError:
        pass


# -- hostile label text: what is accepted is safe to log and to put in a Docker URL -------

hostile_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                     exclude_categories=()), max_size=10) | st.sampled_from([
    "../images/alpine/get", "web\nINFO receiver.actuator: Scaling up web", "\ud800", "a\u2028b",
    "demo_web", "stack_web-2", "t1p4r7s0u3w6y9a2c5e8g1i4k", "W1A9D3F5H7J2L4N6P8R0T2V4X", "-web",
])
LABEL_KEYS = ["service", "task_id", "node_id", "team", "instance"]


@st.composite
def hostile_payload(draw):
    data = json.loads(json.dumps(draw(st.sampled_from(RECORDED))))
    for alert in data["alerts"]:
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(LABEL_KEYS) | hostile_text)
            alert["labels"][key] = draw(hostile_text)
        if draw(st.booleans()):
            alert["annotations"][draw(hostile_text)] = draw(hostile_text)
    return data


@settings(max_examples=300, deadline=None)
@given(hostile_payload())
def test_labels_that_get_through_are_valid_unicode_without_controls_and_name_docker_objects(data):
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a hostile sender writes them.
    try:
        webhook = parse_webhook(json.dumps(data, ensure_ascii=True))
    except PayloadError as exc:
        exc.reason.encode("utf-8")  # the reason itself can be logged and sent back
        assert not any(c in exc.reason for c in "\n\r\x00\x1b\u2028")
        return
    for alert in webhook.alerts:
        for key, value in alert.labels.items():
            (key + value).encode("utf-8")
            assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", key + value)
        for key, value in alert.annotations.items():
            (key + value).encode("utf-8")
        assert re.fullmatch(r"[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*", alert.service)
        assert len(alert.service) <= 63
        for name in ("task_id", "node_id"):
            assert alert.labels.get(name) is None or re.fullmatch(r"[a-z0-9]{25}",
                                                                  alert.labels[name])


# -- ParseCache: identical bodies (HA pairs, retries, repeats) parsed once ------------------

def test_an_identical_body_is_parsed_once_and_gives_the_same_alerts():
    cache = ParseCache()
    now = datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc)
    data = (FIXTURES / "grouped_migrate.json").read_bytes()
    first = cache.parse(data, now, 30)
    assert cache.parse(bytes(data), now, 30) is first
    assert first == parse_webhook(data)


def test_a_bad_body_is_refused_again_with_the_same_reason():
    cache = ParseCache()
    now = datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc)
    data = (FIXTURES / "wrong_version.json").read_bytes()
    reasons = []
    for _ in range(2):
        with pytest.raises(PayloadError) as caught:
            cache.parse(data, now, 30)
        reasons.append(caught.value.reason)
    assert reasons[0] == reasons[1] == "unsupported webhook version '3', expected \"4\""


def test_the_time_check_runs_at_every_parse_of_a_cached_body():
    cache = ParseCache()
    data = (FIXTURES / "firing_scale_up.json").read_bytes()
    starts = parse_webhook(data).alerts[0].starts_at
    with pytest.raises(PayloadError, match="in the future"):
        cache.parse(data, starts - timedelta(seconds=60), 30)
    assert cache.parse(data, starts, 30).alerts[0].starts_at == starts


def test_the_cache_holds_a_bounded_number_of_small_bodies():
    cache = ParseCache(entries=2, max_body=2000)
    now = datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc)
    small = [json.dumps({**load("firing_scale_up.json"), "groupKey": str(i)}).encode()
             for i in range(3)]
    kept = [cache.parse(body, now, 30) for body in small]
    assert cache.parse(small[2], now, 30) is kept[2]
    assert cache.parse(small[0], now, 30) is not kept[0]  # the oldest was forgotten
    large = (FIXTURES / "grouped_migrate.json").read_bytes()
    assert len(large) > 2000
    assert cache.parse(large, now, 30) is not cache.parse(large, now, 30)  # never kept
