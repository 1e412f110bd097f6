"""The receiver's own metrics, in a registry per application.

A registry per app (not the global default) lets create_app() be called many times, as the
tests do. One gunicorn worker with threads serves the app, so these in-process counters are
the whole truth; several worker processes would each count alone (see gunicorn.conf.py).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from receiver.kinds import KINDS
from receiver.labels import LAST_KIND_AT
from receiver.maintenance import MOVE_KINDS
from receiver.reasons import ACTION_RESULTS, FAILED_RESULTS, PROMETHEUS_UNREACHABLE, SKIP_REASONS

# Migrations take seconds to a few minutes (start-first, health checks); scales a moment.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
# From Prometheus's `for:` through Alertmanager's group_wait to us: seconds to minutes.
AGE_BUCKETS = (1, 5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600)
# Results of swarmguard_actions_total that mean SwarmGuard could not act. Exported at 0
# from the start, per kind: the alert SwarmGuardCannotAct{reason="actions_failing"} reads
# their increase, and a counter that first appears already at 1 has no increase
# (prometheus/rules/swarmguard-health.yml).
FAILED_ACTION_RESULTS = FAILED_RESULTS


# Why receiver/serving.py closed a connection before a whole request reached the app.
CONNECTION_CLOSE_REASONS = ("read_timeout", "over_capacity", "over_buffer_budget",
                            "malformed", "length_required")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self._children: dict = {}
        r = self.registry
        self.alerts_received = Counter(
            "swarmguard_alerts_received_total",
            "Alerts received from Alertmanager, by alert name and status.",
            ["alertname", "status"], registry=r)
        self.alerts_skipped = Counter(
            "swarmguard_alerts_skipped_total",
            # The values come from reasons.py, so that the help text cannot list others.
            f"Firing alerts not acted on, by reason ({', '.join(SKIP_REASONS)}).",
            ["alertname", "reason"], registry=r)
        self.stale_alerts = Counter(
            "swarmguard_stale_alerts_total",
            "Alerts ignored because they were no longer true of the live cluster.",
            ["alertname"], registry=r)
        self.actions = Counter(
            "swarmguard_actions_total",
            f"Actions on Swarm services, by kind ({', '.join(k.name for k in KINDS)}; "
            f"{' and '.join(MOVE_KINDS)} moves) and result ({', '.join(ACTION_RESULTS)}).",
            ["kind", "result"], registry=r)
        self.action_duration = Histogram(
            "swarmguard_action_duration_seconds",
            "From the service update call to its end: for a migration, new task running "
            "(healthy where checked) and old task shut down.",
            ["kind"], buckets=DURATION_BUCKETS, registry=r)
        self.recovery_duration = Histogram(
            "swarmguard_recovery_duration_seconds",
            "From the webhook's arrival to the end of the action it caused.",
            ["kind"], buckets=DURATION_BUCKETS, registry=r)
        self.alert_age = Histogram(
            "swarmguard_alert_age_seconds",
            "Age of firing alerts at receipt (now minus startsAt).",
            ["alertname"], buckets=AGE_BUCKETS, registry=r)
        self.last_action = Gauge(
            "swarmguard_last_action_timestamp_seconds",
            "Unix time of the last successful action on a service (Grafana annotations).",
            ["service", "kind"], registry=r)
        self.docker_errors = Counter(
            "swarmguard_docker_errors_total",
            "Docker API calls that failed, by operation (conflicts included).",
            ["operation"], registry=r)
        self.rejected_requests = Counter(
            "swarmguard_rejected_requests_total",
            "Webhook requests refused, by HTTP status code.",
            ["code"], registry=r)
        self.confirmation_duration = Histogram(
            "swarmguard_confirmation_duration_seconds",
            "Time to ask Prometheus which alerts fire, once per decision (answered or not).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=r)
        self.connections_closed = Counter(
            "swarmguard_connections_closed_total",
            "Connections the server closed before a whole request, by reason "
            "(docs/contract.md, Receiver HTTP API).",
            ["reason"], registry=r)
        for reason in CONNECTION_CLOSE_REASONS:
            self.connections_closed.labels(reason)
        self.in_flight = Gauge(
            "swarmguard_actions_in_flight",
            "Services with work waiting, being decided or being carried out right now; "
            "decremented only after the outcome is counted.",
            registry=r)
        self.pending_services = Gauge(
            "swarmguard_pending_services",
            "Services whose work waits for a background thread (bounded by "
            "SWARMGUARD_MAX_PENDING_SERVICES; beyond it webhooks get 503).",
            registry=r)
        self.work_dropped = Counter(
            "swarmguard_work_dropped_total",
            "Acknowledged work not done because the receiver shut down, by reason "
            "(shutdown_waiting: not started; shutdown_unfinished: running at the shutdown "
            "deadline, nothing written; shutdown_unwatched: running at the deadline after "
            "its update was sent, its outcome unrecorded).",
            ["reason"], registry=r)
        # From 0: SwarmGuardCannotAct{reason="prometheus_unreachable"} reads its increase.
        for kind in KINDS:
            self.alerts_skipped.labels(kind.alert, PROMETHEUS_UNREACHABLE)
        for kind in (*LAST_KIND_AT, *MOVE_KINDS):
            for result in FAILED_ACTION_RESULTS:
                self.actions.labels(kind, result)

    # The webhook's hot path touches these once per alert: the labelled child is looked
    # up in a dict instead of through prometheus_client's labels() (which validates and
    # locks on every call; ten alerts per payload made it a fifth of the request). The
    # label values are bounded: unknown alert names are refused before they get here.
    def count_received(self, alertname: str, status: str, alerts: int = 1) -> None:
        self._child(self.alerts_received, alertname, status).inc(alerts)

    def observe_age(self, alertname: str, seconds: float) -> None:
        self._child(self.alert_age, alertname).observe(seconds)

    def count_skipped(self, alertname: str, reason: str) -> None:
        self._child(self.alerts_skipped, alertname, reason).inc()

    def _child(self, metric, *values: str):
        key = (id(metric), values)
        try:
            return self._children[key]
        except KeyError:
            return self._children.setdefault(key, metric.labels(*values))
