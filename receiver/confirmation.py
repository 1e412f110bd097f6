"""Only Prometheus's own alerts move anything. Pure: no HTTP, no clock.

Anyone who can post to Alertmanager's API (or holds the webhook's token) could otherwise
make SwarmGuard move a task: the freshness check needs only a real task and node ID, and
the exporter's and receiver's /metrics publish those. So before it decides, the receiver
asks Prometheus which alerts are firing there (receiver/prometheus.py, one query per
decision) and acts only on an alert that Prometheus fires with exactly the same labels;
any other is skipped `unconfirmed` and changes nothing.

The same answer bounds what the storm ledger believes about other tasks: a task counts
as hot (its node no destination, its node's cooler tasks held back; receiver/storm.py)
only while Prometheus fires its SwarmGuardMigrate alert. A forged or long-resolved
alert then never makes a node hot.

Labels are compared whole: a forged copy of a firing alert with one label changed (a
larger `replicas_needed`, another task) is not that alert. The bundle's Prometheus has no
external labels, which it would add to what Alertmanager sends but not to its own list.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from receiver.payload import Alert

MIGRATE_ALERT = "SwarmGuardMigrate"


class Unanswered(Exception):
    """Prometheus could not say which alerts fire: nothing may be confirmed."""


@dataclass(frozen=True)
class FiringAlerts:
    """What Prometheus fires right now: each alert's whole label set."""
    label_sets: frozenset[frozenset[tuple[str, str]]]
    # (task_id, node_id) of every firing SwarmGuardMigrate alert.
    hot_tasks: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, label_sets: Iterable[Mapping[str, str]]) -> "FiringAlerts":
        sets, hot = set(), set()
        for labels in label_sets:
            sets.add(frozenset(labels.items()))
            if labels.get("alertname") == MIGRATE_ALERT and "task_id" in labels \
                    and "node_id" in labels:
                hot.add((labels["task_id"], labels["node_id"]))
        return cls(frozenset(sets), frozenset(hot))

    def confirms(self, alert: Alert) -> bool:
        return frozenset(alert.labels.items()) in self.label_sets

    def fires_for_task(self, task_id: str, node_id: str) -> bool:
        return (task_id, node_id) in self.hot_tasks


def firing_from_answer(answer: object) -> FiringAlerts:
    """The firing alerts in Prometheus's `GET /api/v1/alerts` answer; Unanswered if the
    answer is not one (pending alerts are not firing: their `for:` has not passed)."""
    try:
        if answer.get("status") != "success":  # type: ignore[union-attr]
            raise Unanswered(f"Prometheus answered status {answer.get('status')!r}")  # type: ignore[union-attr]
        alerts = answer["data"]["alerts"]  # type: ignore[index]
        label_sets = []
        for alert in alerts:
            labels = alert["labels"]
            if not isinstance(labels, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                raise Unanswered("an alert's labels are not strings")
            if alert.get("state") == "firing":
                label_sets.append(labels)
    except (AttributeError, KeyError, TypeError) as exc:
        raise Unanswered(f"not an answer of /api/v1/alerts ({type(exc).__name__}: {exc})") from None
    return FiringAlerts.of(label_sets)
