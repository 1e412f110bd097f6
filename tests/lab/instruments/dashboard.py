"""The SwarmGuard dashboard's Prometheus queries, as Prometheus receives them.

Grafana substitutes its variables before it sends a query; the tests must do the same
to check the queries (promtool offline, the lab's Prometheus live). Each variable gets
the value the dashboard opens with: "All" for a multi-value variable with an allValue.
A variable this module does not know is an error, never left in place, so a new
variable cannot slip past the checks as a syntax error or an empty match.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "grafana" / "dashboards" / "swarmguard.json"
# Grafana's built-in interval variables, at values a 30-minute view would give them.
BUILTINS = {"__rate_interval": "1m", "__interval": "5s", "__range": "30m",
            "__interval_ms": "5000", "__range_s": "1800"}
# $name, ${name}, ${name:format}, [[name]]. Not $1: label_replace's capture references
# are PromQL, and Grafana leaves them alone too.
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]|\$([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Query:
    where: str  # "panel 3 (Task network %) target B", "annotation SwarmGuard actions"
    expr: str   # as written in the dashboard


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def _is_prometheus(datasource) -> bool:
    # Panels name the datasource variable; a query without one uses the panel's.
    return isinstance(datasource, dict) and datasource.get("type") == "prometheus"


def queries(dashboard: dict) -> list[Query]:
    """Every Prometheus query of the dashboard: panel targets (rows' panels included)
    and annotations."""
    found = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
        for target in panel.get("targets", []):
            if "expr" in target and _is_prometheus(target.get("datasource", panel.get("datasource"))):
                found.append(Query(f"panel {panel['id']} ({panel['title']}) target {target['refId']}",
                                   target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation and _is_prometheus(annotation.get("datasource")):
            found.append(Query(f"annotation {annotation['name']}", annotation["expr"]))
    return found


def variable_values(dashboard: dict) -> dict[str, str]:
    """What each dashboard variable stands for when the dashboard opens."""
    values = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("includeAll") and "allValue" in variable:
            values[variable["name"]] = variable["allValue"]
        elif variable["type"] == "datasource":
            values[variable["name"]] = variable["current"]["value"]
    return values


def substitute(expr: str, dashboard: dict) -> str:
    values = variable_values(dashboard)

    def replace(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]
    return _VARIABLE.sub(replace, expr)


def promql(dashboard: dict | None = None) -> list[Query]:
    """Every query with its variables substituted: what Prometheus receives."""
    dashboard = load() if dashboard is None else dashboard
    return [Query(q.where, substitute(q.expr, dashboard)) for q in queries(dashboard)]
