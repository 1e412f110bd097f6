import dataclasses
from datetime import timedelta
from pathlib import Path

from receiver import actuator as A
from receiver import decisions as D
from receiver.metrics import Metrics
from receiver.payload import parse_webhook
from receiver.worker import DUPLICATE_WINDOW_S, Dispatcher, InlineExecutor

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"


def recorded(name):
    return list(parse_webhook((FIXTURES / name).read_bytes()).alerts)


class ManualExecutor:
    """Holds jobs until the test runs them: a service stays 'in flight' meanwhile."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, *args):
        self.jobs.append((fn, args))

    def shutdown(self, wait=True, cancel_futures=False):
        pass  # the test decides what runs

    def run_all(self):
        jobs, self.jobs = self.jobs, []
        for fn, args in jobs:
            fn(*args)


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


def test_firing_alerts_are_grouped_by_service_and_resolved_ones_dropped():
    seen = []
    dispatcher = Dispatcher(lambda alerts: seen.append(alerts) or [], Metrics(),
                            executor=InlineExecutor())
    receipt = dispatcher.submit(recorded("grouped_migrate.json"))
    assert receipt.queued == ("demo_web", "demo_api")
    assert [[a.fingerprint for a in group] for group in seen] == [
        ["8a4f2c1d9e7b6035", "1b2c3d4e5f607182"], ["0f1e2d3c4b5a6978"]]


def test_an_alert_for_a_service_being_acted_on_is_skipped_as_in_progress():
    metrics = Metrics()
    handled, inner = [], []

    def handle(alerts):
        handled.append(alerts)
        if len(handled) == 1:  # while the first is being handled, the same alert again
            inner.append(dispatcher.submit(recorded("firing_migrate.json")))
        return []
    dispatcher = Dispatcher(handle, metrics, executor=InlineExecutor())
    first = dispatcher.submit(recorded("firing_migrate.json"))
    assert (first.queued, inner[0].queued, inner[0].busy) == (("demo_web",), (), ("demo_web",))
    assert len(handled) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="in_progress") == 1
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_actions_in_flight") == 0


def test_a_newer_alert_for_a_waiting_service_replaces_the_waiting_one():
    executor, metrics = ManualExecutor(), Metrics()
    handled = []
    dispatcher = Dispatcher(lambda alerts: handled.append(alerts) or [], metrics,
                            executor=executor)
    older = recorded("firing_migrate.json")
    newer = [later(older[0])]
    assert dispatcher.submit(older).queued == ("demo_web",)
    assert dispatcher.submit(newer).queued == ("demo_web",)
    assert dispatcher.busy() == {"demo_web"}
    assert len(executor.jobs) == 1  # one piece of work per service, whatever arrives
    assert sample(metrics, "swarmguard_actions_in_flight") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="superseded") == 1

    executor.run_all()
    assert handled == [tuple(newer)]
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_actions_in_flight") == 0


def later(alert, seconds: float = 30):
    """The same alert, firing again from a later start: a new alert instance."""
    return dataclasses.replace(alert, starts_at=alert.starts_at + timedelta(seconds=seconds))


def test_the_same_alert_instance_handled_moments_ago_is_skipped_as_a_duplicate_without_reading_the_cluster():
    now = [100.0]
    handled = []
    metrics = Metrics()
    dispatcher = Dispatcher(lambda alerts: handled.append(alerts) or [], metrics,
                            executor=InlineExecutor(), monotonic=lambda: now[0])
    dispatcher.submit(recorded("firing_migrate.json"))
    now[0] += DUPLICATE_WINDOW_S - 0.1
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ()
    assert len(handled) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="duplicate") == 1
    # A new instance of the alert is handled at once; the old one again after the window.
    assert dispatcher.submit([later(recorded("firing_migrate.json")[0])]).queued == ("demo_web",)
    now[0] += 0.2
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ("demo_web",)
    assert len(handled) == 3


def test_the_guard_is_released_even_when_handling_crashes():
    def crash(alerts):
        raise RuntimeError("boom")
    metrics = Metrics()
    dispatcher = Dispatcher(crash, metrics, executor=InlineExecutor())
    dispatcher.submit(recorded("firing_migrate.json"))
    assert dispatcher.busy() == set()
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="internal_error") == 1


def test_outcomes_are_counted_by_kind_result_and_reason():
    alerts = recorded("firing_migrate.json") + recorded("firing_scale_up.json")
    stale = D.Skip(alerts[1], D.STALE, "service demo_web no longer exists")

    def handle(group):
        if group[0].kind == "migrate":
            return [A.Outcome(_action(group[0]), A.SUCCESS, duration=4.0)]
        return [A.Outcome(stale, A.SKIPPED)]

    metrics = Metrics()
    clock = iter([100.0, 106.5, 106.5])
    dispatcher = Dispatcher(handle, metrics, executor=InlineExecutor(),
                            monotonic=lambda: next(clock))
    # one service per submit, as Alertmanager groups by service
    dispatcher.submit(alerts[:1])
    assert sample(metrics, "swarmguard_actions_total", kind="migrate", result="success") == 1
    assert sample(metrics, "swarmguard_action_duration_seconds_sum", kind="migrate") == 4.0
    assert sample(metrics, "swarmguard_recovery_duration_seconds_sum", kind="migrate") == 6.5
    assert sample(metrics, "swarmguard_last_action_timestamp_seconds",
                  service="demo_web", kind="migrate") > 0

    clock = iter([200.0, 201.0, 201.0])
    dispatcher.submit(alerts[1:])
    assert sample(metrics, "swarmguard_stale_alerts_total", alertname="SwarmGuardScaleUp") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardScaleUp", reason="stale") == 1


def _action(alert):
    from receiver.cluster import service_from_dict
    from tests.fake_swarm_api import service_dict
    return D.Action("migrate", alert, service_from_dict(service_dict("demo_web")), "demo_web")


def test_a_resend_of_the_waiting_alerts_is_a_duplicate_not_a_replacement():
    executor, metrics = ManualExecutor(), Metrics()
    dispatcher = Dispatcher(lambda alerts: [], metrics, executor=executor)
    dispatcher.submit(recorded("firing_migrate.json"))
    assert dispatcher.submit(recorded("firing_migrate.json")).queued == ("demo_web",)
    assert len(executor.jobs) == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="duplicate") == 1
    assert sample(metrics, "swarmguard_alerts_skipped_total",
                  alertname="SwarmGuardMigrate", reason="superseded") == 0
