"""Only Prometheus's own alerts move anything. Pure: no HTTP, no DNS, no clock.

Anyone who can post to Alertmanager's API (or holds the webhook's token) could otherwise
make SwarmGuard move a task: the freshness check needs only a real task and node ID, and
the exporter's and receiver's /metrics publish those. So before it decides, the receiver
asks every Prometheus it is given which alerts are firing there (receiver/prometheus.py,
one round of questions per decision) and acts only on an alert that one of them fires with
the same labels; any other is skipped `unconfirmed` and changes nothing.

The same answer bounds what the storm ledger believes about other tasks: a task counts
as hot (its node no destination, its node's cooler tasks held back; receiver/storm.py)
only while a Prometheus fires its SwarmGuardMigrate alert. A forged or long-resolved
alert then never makes a node hot.

Labels are compared whole: a forged copy of a firing alert with one label changed (a
larger `replicas_needed`, another task) is not that alert. The one exception is the
external labels named in the settings: a Prometheus adds them to what it sends
Alertmanager but not to its own list, so they are left out on both sides.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from receiver.alerts import Alert
from receiver.kinds import MIGRATE

MIGRATE_ALERT = MIGRATE.alert
# Swarm's DNS name for every task of a service: `tasks.<service>` has one A record per task.
TASKS_PREFIX = "tasks."


class Unanswered(Exception):
    """Prometheus could not say which alerts fire: nothing may be confirmed."""


@dataclass(frozen=True)
class FiringAlerts:
    """What Prometheus fires right now: each alert's whole label set."""
    label_sets: frozenset[frozenset[tuple[str, str]]]
    # (task_id, node_id) of every firing SwarmGuardMigrate alert.
    hot_tasks: frozenset[tuple[str, str]]
    # Why each Prometheus that did not answer did not, when others did (merge).
    unanswered: tuple[str, ...] = ()

    @classmethod
    def of(cls, label_sets: Iterable[Mapping[str, str]]) -> "FiringAlerts":
        sets, hot = set(), set()
        for labels in label_sets:
            sets.add(frozenset(labels.items()))
            if labels.get("alertname") == MIGRATE_ALERT and "task_id" in labels \
                    and "node_id" in labels:
                hot.add((labels["task_id"], labels["node_id"]))
        return cls(frozenset(sets), frozenset(hot))

    def confirms(self, alert: Alert, ignoring: Collection[str] = frozenset()) -> bool:
        """Whether a Prometheus fires `alert`, its labels named in `ignoring` (external
        labels) left out on both sides: Prometheus adds an external label only to an alert
        that has no label of that name, so a rule's own label of that name is dropped too."""
        return without(alert.labels.items(), ignoring) in {
            without(labels, ignoring) for labels in self.label_sets}

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


def without(labels: Iterable[tuple[str, str]], names: Collection[str]
            ) -> frozenset[tuple[str, str]]:
    """A label set without the labels of these names."""
    return frozenset((name, value) for name, value in labels if name not in names)


def merge(answered: Sequence[FiringAlerts], unanswered: Sequence[str]) -> FiringAlerts:
    """What several Prometheus servers fire, from the answers of those that answered;
    `unanswered`: why each of the others did not. Unanswered if none did.

    One answer is enough: the Prometheus that fires an alert (the one on the alert's
    node, or the central one) is the one that must answer for it. A silent one leaves
    exactly its own alerts unconfirmed, the safe outcome; saying that it is down is
    detection health's task, not this one's. Only when no one answers can nothing be
    confirmed at all (prometheus_unreachable)."""
    if not answered:
        raise Unanswered("; ".join(unanswered) or "no Prometheus to ask")
    return FiringAlerts(frozenset().union(*(f.label_sets for f in answered)),
                        frozenset().union(*(f.hot_tasks for f in answered)),
                        tuple(unanswered))


def tasks_host(url: str) -> str | None:
    """The `tasks.<service>` host of a URL, or None for any other host."""
    host = urlsplit(url).hostname or ""
    return host if host.startswith(TASKS_PREFIX) and len(host) > len(TASKS_PREFIX) else None


def instance_urls(urls: Sequence[str], resolve: Callable[[str], Iterable[str]]
                  ) -> tuple[list[str], list[str]]:
    """(the URL of every Prometheus to ask, why each `tasks.` host gave none).

    A URL whose host is `tasks.<service>` stands for one URL per address `resolve` gives
    for that host (its IPv4 addresses: one per task of the service), in order, each once,
    with the same scheme, port and path; `resolve` raises Unanswered saying why it has
    none. Any other URL stands for itself."""
    found: list[str] = []
    unresolved: list[str] = []
    for url in urls:
        host = tasks_host(url)
        if host is None:
            found.append(url)
            continue
        try:
            addresses = sorted(set(resolve(host)), key=ipaddress.ip_address)
        except Unanswered as exc:
            unresolved.append(str(exc))
            continue
        if not addresses:
            unresolved.append(f"{host} has no address (no task of the service runs)")
        found.extend(_with_host(url, address) for address in addresses)
    return list(dict.fromkeys(found)), unresolved


def _with_host(url: str, address: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=address + port))
