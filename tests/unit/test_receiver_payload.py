import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.payload import (ParseCache, PayloadError, TooManyServices, parse_time,
                              parse_webhook, webhook_from_dict)

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


@pytest.mark.parametrize("value, shown", [
    ("s" * 64, repr("s" * 64)),
    ("s" * 65, f"{'s' * 64!r}... (65 characters)"),
    (int("9" * 64), "9" * 64),
    (int("9" * 65), f"{'9' * 64}... (65 characters)"),
])
def test_a_value_is_quoted_whole_up_to_64_characters_and_cut_past_them(value, shown):
    data = load("firing_migrate.json")
    data["alerts"][0]["status"] = value
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason.endswith(f"got {shown}")


def test_a_time_too_long_to_be_one_is_quoted_cut():
    with pytest.raises(PayloadError) as err:
        parse_time("2" * 65, "startsAt")
    assert err.value.reason == f"startsAt {'2' * 64!r}... (65 characters) is not an RFC 3339 timestamp"


def test_a_label_name_may_have_1024_characters_and_its_value_no_more():
    name = "n" * 1024
    data = load("firing_migrate.json")
    data["alerts"][0]["labels"][name] = "v"
    webhook_from_dict(data)  # accepted
    data["alerts"][0]["labels"][name] = "v" * 1025
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == (f"alerts[0].labels.{'n' * 64}... (1024 characters) is 1025 characters "
                                f"long; a label may have at most 1024")


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
    # With a bound on services, the services are counted before the alerts are built.
    try:
        webhook_from_dict(data, max_services=1)
    except (PayloadError, TooManyServices):
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


# -- the webhook's envelope and optional fields ---------------------------------------------

def test_the_webhooks_envelope_is_kept_as_alertmanager_sent_it():
    webhook = webhook_from_dict(load("firing_scale_up.json"))
    assert (webhook.receiver, webhook.status, webhook.external_url) == (
        "swarmguard", "firing", "http://manager-1:9093")
    assert webhook.group_key == '{}:{alertname="SwarmGuardScaleUp",service="demo_web"}'
    (alert,) = webhook.alerts
    assert alert.generator_url.startswith("http://manager-1:9090/graph?g0.expr=")


def test_optional_fields_left_out_or_null_read_as_empty():
    data = load("firing_scale_up.json")
    for key in ("receiver", "status", "groupKey", "truncatedAlerts"):
        data.pop(key)
    data["externalURL"] = None
    alert = data["alerts"][0]
    for key in ("annotations", "endsAt", "generatorURL", "fingerprint"):
        alert.pop(key)
    webhook = webhook_from_dict(data)
    assert (webhook.receiver, webhook.status, webhook.group_key, webhook.external_url,
            webhook.truncated_alerts) == ("", "", "", "", 0)
    (parsed,) = webhook.alerts
    assert (dict(parsed.annotations), parsed.ends_at, parsed.generator_url,
            parsed.fingerprint) == ({}, None, "", "")


@pytest.mark.parametrize("where, change", [
    ("receiver", lambda d: d.update(receiver=5)),
    ("status", lambda d: d.update(status=["firing"])),
    ("groupKey", lambda d: d.update(groupKey={})),
    ("externalURL", lambda d: d.update(externalURL=1.5)),
    ("alerts[0].fingerprint", lambda d: d["alerts"][0].update(fingerprint=7)),
    ("alerts[0].generatorURL", lambda d: d["alerts"][0].update(generatorURL=True)),
])
def test_an_optional_field_that_is_not_a_string_is_named(where, change):
    data = load("firing_scale_up.json")
    change(data)
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == f"{where} must be a string"


def test_a_lone_surrogate_in_the_group_key_is_refused_naming_it():
    body = json.dumps({**load("firing_scale_up.json"), "groupKey": "\ud800"}, ensure_ascii=True)
    with pytest.raises(PayloadError) as err:
        parse_webhook(body)
    assert err.value.reason == "groupKey contains a lone surrogate (not valid Unicode)"


@pytest.mark.parametrize("body, reason", [
    (b"[1, 2]", "body must be a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "body is nested too deeply to be an Alertmanager webhook"),
    (json.dumps({"version": "4", "alerts": []}).encode(), "alerts must be a non-empty list"),
    (json.dumps({"version": "4", "alerts": [5]}).encode(), "alerts[0] must be an object"),
    (json.dumps({**load("firing_scale_up.json"), "truncatedAlerts": True}).encode(),
     "truncatedAlerts must be a non-negative integer"),
])
def test_a_malformed_body_is_refused_with_a_reason_that_says_what_is_wrong(body, reason):
    with pytest.raises(PayloadError) as err:
        parse_webhook(body)
    assert err.value.reason == reason


@pytest.mark.parametrize("change, reason", [
    (lambda a: a.update(status="maybe"), 'alerts[0].status must be "firing" or "resolved", got \'maybe\''),
    (lambda a: a.update(status=5), 'alerts[0].status must be "firing" or "resolved", got 5'),
    (lambda a: a["labels"].update(task_id="Not-A-Task"),
     "alerts[0].labels.task_id 'Not-A-Task' is not a Swarm ID (25 lower-case letters and digits)"),
    (lambda a: a.update(labels=None), "alerts[0].labels must be an object of strings"),
    (lambda a: a.update(annotations=["x"]), "alerts[0].annotations must be an object of strings"),
    (lambda a: a["labels"].update({"bad\nkey": 5}), "alerts[0].labels.bad\\nkey must be a string"),
    # A printable key is quoted as it is, backslash included: only controls are escaped.
    (lambda a: a["labels"].update({"dir\\name": 5}), "alerts[0].labels.dir\\name must be a string"),
    (lambda a: a["labels"].update({"team": "a\tb"}),
     "alerts[0].labels.team contains a control character"),
    (lambda a: a.update(endsAt="soon"), "alerts[0].endsAt 'soon' is not an RFC 3339 timestamp"),
    (lambda a: a.update(startsAt=5), "alerts[0].startsAt must be an RFC 3339 string"),
    (lambda a: [a["labels"].pop(k) for k in ("task_id", "node_id")],
     "alerts[0]: SwarmGuardMigrate is missing label(s) task_id, node_id"),
    (lambda a: a["labels"].update(alertname="Watchdog"),
     "alerts[0]: unknown alertname 'Watchdog'; this receiver handles SwarmGuardMigrate, "
     "SwarmGuardScaleUp, SwarmGuardScaleDown"),
])
def test_a_bad_alert_is_refused_with_a_reason_naming_the_field(change, reason):
    data = load("firing_migrate.json")
    change(data["alerts"][0])
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == reason


def test_annotations_may_hold_line_breaks():
    data = load("firing_scale_up.json")
    data["alerts"][0]["annotations"]["description"] = "CPU 91 %\nnetwork 3 %"
    (alert,) = webhook_from_dict(data).alerts
    assert alert.annotations["description"] == "CPU 91 %\nnetwork 3 %"


def test_a_service_name_of_the_longest_length_docker_allows_is_accepted():
    data = load("firing_scale_up.json")
    data["alerts"][0]["labels"]["service"] = "s" * 63
    assert webhook_from_dict(data).alerts[0].service == "s" * 63


def test_a_leap_second_is_read_as_the_second_before():
    assert parse_time("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59,
                                                          tzinfo=timezone.utc)


def test_times_are_given_in_utc_whatever_the_hosts_zone(host_in_tokyo):
    moment = parse_time("2026-11-27T10:00:03+01:00")
    assert moment.utcoffset() == timedelta(0)
    assert moment.hour == 9


# -- how far ahead an alert may start ---------------------------------------------------------

def test_an_alert_may_start_exactly_the_allowed_skew_ahead_of_now():
    data = (FIXTURES / "firing_scale_up.json").read_bytes()
    starts = parse_webhook(data).alerts[0].starts_at
    assert parse_webhook(data, now=starts - timedelta(seconds=30), max_future_skew=30)


def test_by_default_thirty_seconds_of_clock_skew_are_allowed():
    data = (FIXTURES / "firing_scale_up.json").read_bytes()
    starts = parse_webhook(data).alerts[0].starts_at
    assert parse_webhook(data, now=starts - timedelta(seconds=30))
    with pytest.raises(PayloadError, match="31 s in the future"):
        parse_webhook(data, now=starts - timedelta(seconds=31))


# -- how many services a webhook may name -----------------------------------------------------

def _naming(*services):
    data = load("firing_scale_up.json")
    one_alert = data["alerts"][0]
    data["alerts"] = [json.loads(json.dumps(one_alert)) for _ in services]
    for alert, service in zip(data["alerts"], services):
        alert["labels"]["service"] = service
    return data


def test_a_webhook_naming_exactly_as_many_services_as_may_wait_is_accepted():
    webhook = webhook_from_dict(_naming("a", "b", "a"), max_services=2)
    assert [a.service for a in webhook.alerts] == ["a", "b"]  # the second "a" is a copy


def test_a_webhook_naming_more_services_than_may_wait_is_refused_whole():
    from receiver.payload import TooManyServices
    with pytest.raises(TooManyServices):
        webhook_from_dict(_naming("a", "b", "c"), max_services=2)


def test_a_non_object_among_many_alerts_is_a_payload_error_not_a_crash():
    data = _naming("a", "b", "c")
    data["alerts"][1] = 5
    with pytest.raises(PayloadError, match=r"alerts\[1\] must be an object"):
        webhook_from_dict(data, max_services=2)


# -- ParseCache, continued ---------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc)


def _bodies(count):
    return [json.dumps({**load("firing_scale_up.json"), "groupKey": str(i)}).encode()
            for i in range(count)]


def test_the_cache_keeps_the_last_bodies_up_to_its_size():
    cache = ParseCache(entries=2)
    first, second, third = _bodies(3)
    kept = [cache.parse(body, NOW, 30) for body in (first, second, third)]
    assert cache.parse(second, NOW, 30) is kept[1]
    assert cache.parse(third, NOW, 30) is kept[2]


def test_by_default_the_cache_keeps_32_bodies():
    cache = ParseCache()
    bodies = _bodies(33)
    kept = [cache.parse(body, NOW, 30) for body in bodies]
    assert cache.parse(bodies[1], NOW, 30) is kept[1]
    assert cache.parse(bodies[0], NOW, 30) is not kept[0]


def test_a_body_of_exactly_the_size_limit_is_kept():
    body = _bodies(1)[0]
    cache = ParseCache(max_body=len(body))
    assert cache.parse(body, NOW, 30) is cache.parse(body, NOW, 30)


def test_a_body_too_large_to_keep_is_still_checked_for_alerts_from_the_future():
    body = _bodies(1)[0]
    starts = parse_webhook(body).alerts[0].starts_at
    with pytest.raises(PayloadError, match="in the future"):
        ParseCache(max_body=10).parse(body, starts - timedelta(seconds=60), 30)


@pytest.mark.parametrize("max_body", [10, 16 * 1024])
def test_a_body_naming_too_many_services_is_refused_whether_kept_or_not(max_body):
    from receiver.payload import TooManyServices
    body = json.dumps(_naming("a", "b", "c")).encode()
    with pytest.raises(TooManyServices):
        ParseCache(max_body=max_body).parse(body, NOW, 30, max_services=2)


def test_many_alerts_whose_service_is_not_a_string_are_a_payload_error_not_a_crash():
    # More alerts than may wait makes the parser count the services they name before it
    # builds them; a list cannot be counted as a name, and is refused as what it is.
    data = _naming(*(["web"] for _ in range(3)))
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data, max_services=2)
    assert err.value.reason == "alerts[0].labels.service must be a string"


# -- when an alert can have started --------------------------------------------------------

@pytest.mark.parametrize("starts_at", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z"])
def test_an_alert_starting_before_1970_is_refused_naming_its_start(starts_at):
    # Alertmanager writes Go's zero time only for an unset endsAt; a real alert's start
    # is a real time.
    data = load("firing_scale_up.json")
    data["alerts"][0]["startsAt"] = starts_at
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == (f"alerts[0].startsAt {starts_at!r} is before 1970: not the "
                                f"start of a real alert")


def test_an_alert_may_start_at_1970_and_end_at_the_zero_time_meaning_not_yet():
    data = load("firing_scale_up.json")
    data["alerts"][0].update(startsAt="1970-01-01T00:00:00Z", endsAt="0001-01-01T00:00:00Z")
    (alert,) = webhook_from_dict(data).alerts
    assert (alert.starts_at, alert.ends_at) == (datetime(1970, 1, 1, tzinfo=timezone.utc), None)


# -- how a reason quotes what it refuses ------------------------------------------------------

HUGE = "x" * 900 * 1024


@pytest.mark.parametrize("change", [
    lambda d: d.update(version=HUGE),
    lambda d: d.update(version=int("9" * 4300)),
    lambda d: d["alerts"][0].update(status=HUGE),
    lambda d: d["alerts"][0].update(status=[HUGE]),
    lambda d: d["alerts"][0]["labels"].update(alertname=HUGE),
    lambda d: d["alerts"][0]["labels"].update(service=HUGE),
    lambda d: d["alerts"][0]["labels"].update(task_id=HUGE),
    lambda d: d["alerts"][0]["labels"].update({HUGE: 5}),
    lambda d: d["alerts"][0]["labels"].update({HUGE + "\n": "x"}),
    lambda d: d["alerts"][0]["labels"].update(team=HUGE + "\n"),
    lambda d: d["alerts"][0]["labels"].update(team=HUGE + "\ud800"),
    lambda d: d["alerts"][0]["annotations"].update({HUGE + "\ud800": "x"}),
    lambda d: d["alerts"][0].update(startsAt=HUGE),
    lambda d: d["alerts"][0].update(endsAt=HUGE),
])
def test_a_reason_quotes_at_most_a_short_prefix_of_a_huge_value(change):
    # The reason is the 400's body and a log line: a 900 KB label must not come back whole.
    data = load("firing_migrate.json")
    change(data)
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert len(err.value.reason) < 300, err.value.reason[:300]


def test_a_long_value_is_quoted_by_its_first_64_characters_and_its_length():
    data = load("firing_scale_up.json")
    data["alerts"][0]["labels"]["service"] = "s" * 999 + "!"
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason.startswith(
        f"alerts[0].labels.service {'s' * 64!r}... (1000 characters) is not a Docker "
        f"service name")


def test_a_long_label_name_is_shown_by_its_first_64_characters_and_its_length():
    data = load("firing_scale_up.json")
    data["alerts"][0]["labels"]["k" * 100] = 5
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == f"alerts[0].labels.{'k' * 64}... (100 characters) must be a string"


def test_a_long_label_name_with_controls_is_shown_escaped_by_its_first_64_characters():
    data = load("firing_scale_up.json")
    data["alerts"][0]["labels"]["\n" + "k" * 99] = 5
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == (f"alerts[0].labels.\\n{'k' * 63}... (100 characters) must be "
                                f"a string")


@pytest.mark.parametrize("version, said", [([4], "a JSON array"), ({"v": 4}, "a JSON object")])
def test_a_json_array_or_object_where_a_value_belongs_is_named_not_quoted(version, said):
    data = load("firing_scale_up.json")
    data["version"] = version
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == f"unsupported webhook version {said}, expected \"4\""


# -- how much an alert may carry ------------------------------------------------------------

def _with_labels(**extra):
    data = load("firing_scale_up.json")
    data["alerts"][0]["labels"].update(extra)
    return data


def test_a_label_value_of_1024_characters_is_accepted_and_one_more_is_refused_naming_it():
    assert webhook_from_dict(_with_labels(team="t" * 1024)).alerts[0].labels["team"] == "t" * 1024
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(_with_labels(team="t" * 1025))
    assert err.value.reason == ("alerts[0].labels.team is 1025 characters long; a label may "
                                "have at most 1024")


def test_a_label_name_longer_than_1024_characters_is_refused():
    assert webhook_from_dict(_with_labels(**{"n" * 1024: "x"}))
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(_with_labels(**{"n" * 1025: "x"}))
    assert err.value.reason == (f"alerts[0].labels name {'n' * 64}... (1025 characters) is "
                                f"longer than the 1024 characters a label may have")


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_an_alert_may_carry_64_labels_and_64_annotations_and_no_more(field):
    data = load("firing_scale_up.json")
    carried = data["alerts"][0][field]
    carried.update({f"extra_{i}": "x" for i in range(64 - len(carried))})
    assert len(getattr(webhook_from_dict(data).alerts[0], field)) == 64
    carried["one_more"] = "x"
    with pytest.raises(PayloadError) as err:
        webhook_from_dict(data)
    assert err.value.reason == f"alerts[0].{field} has 65 entries; an alert may have at most 64"


# -- copies of one alert in a webhook ---------------------------------------------------------

def test_copies_of_an_alert_in_one_webhook_are_kept_once_in_the_order_first_seen_and_counted():
    data = load("grouped_migrate.json")  # web firing, web firing, web resolved, api firing
    first, second, resolved, api = data["alerts"]
    data["alerts"] = [first, first, second, resolved, first, resolved, api, api]
    webhook = webhook_from_dict(data)
    assert [a.fingerprint for a in webhook.alerts] == [
        first["fingerprint"], second["fingerprint"], resolved["fingerprint"], api["fingerprint"]]
    assert webhook.positions == (0, 2, 3, 6)
    assert dict(webhook.copies) == {("SwarmGuardMigrate", "firing"): 3,
                                    ("SwarmGuardMigrate", "resolved"): 1}
    assert dict(webhook.counts) == {("SwarmGuardMigrate", "firing"): 3,
                                    ("SwarmGuardMigrate", "resolved"): 1}


def test_alerts_differing_in_a_label_their_start_or_their_status_are_not_copies():
    data = load("firing_scale_up.json")
    one = data["alerts"][0]
    data["alerts"] = [one, {**one, "labels": {**one["labels"], "team": "b"}},
                      {**one, "startsAt": "2026-11-27T09:59:00Z"}, {**one, "status": "resolved"},
                      {**one, "annotations": {"summary": "another"}, "fingerprint": "other"}]
    webhook = webhook_from_dict(data)
    assert len(webhook.alerts) == 4  # the last differs in what does not make an alert
    assert dict(webhook.copies) == {("SwarmGuardScaleUp", "firing"): 1}


def test_an_alert_from_the_future_is_named_by_its_place_in_the_body_after_copies():
    data = load("firing_scale_up.json")
    one = data["alerts"][0]
    data["alerts"] = [one, one, {**one, "startsAt": "2026-11-27T11:00:00Z"}]
    with pytest.raises(PayloadError, match=r"^alerts\[2\]\.startsAt is"):
        parse_webhook(json.dumps(data), now=datetime(2026, 11, 27, 10, 1, tzinfo=timezone.utc))
