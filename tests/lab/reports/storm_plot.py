"""A storm's timeline as a picture (artifacts/storm.png), from what the storm lab test
records (artifacts/storm.json): one row per service, hot from the stress until its move
ends, each skip of its alert marked by reason, and the moments the neighbouring node
cooled and the last task left."""
from __future__ import annotations

from pathlib import Path

SKIP_MARKERS = {"no_eligible_node": ("x", "#c0392b"), "budget": ("o", "#e67e22"),
                "in_progress": ("|", "#7f8c8d")}


def render(storm: dict, path: str | Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global state, no backend

    path = Path(path)
    t0 = storm["started"]
    moves = {m["service"]: m for m in storm["moves"]}
    services = sorted(moves, key=lambda s: moves[s]["act"])
    fig = Figure(figsize=(11, 0.55 * len(services) + 2.2), dpi=110)
    ax = fig.subplots()
    for row, service in enumerate(services):
        m = moves[service]
        ax.broken_barh([(0, m["act"] - t0)], (row - 0.3, 0.6), color="#f5b7b1",
                       label="hot, on the hot node" if row == 0 else None)
        ax.broken_barh([(m["act"] - t0, m["end"] - m["act"])], (row - 0.3, 0.6),
                       color="#5dade2", label="moving (act -> outcome)" if row == 0 else None)
    seen = set()
    for skip in storm.get("skip_events", []):
        if skip["service"] not in services:
            continue
        marker, colour = SKIP_MARKERS.get(skip["reason"], ("s", "#34495e"))
        ax.plot(skip["at"] - t0, services.index(skip["service"]), marker=marker, color=colour,
                ls="none", ms=6, label=f"skip: {skip['reason']}" if skip["reason"] not in seen else None)
        seen.add(skip["reason"])
    for at, text, side in ((storm["neighbour_cooled"], " neighbour cooled", "left"),
                           (storm["all_moved"], "every task moved ", "right")):
        ax.axvline(at - t0, color="#555555", ls="--", lw=1)
        ax.text(at - t0, len(services) - 0.4, text, fontsize=8, va="bottom", ha=side)
    ax.set_yticks(range(len(services)), services)
    ax.set_ylim(-0.7, len(services) + 0.2)
    ax.set_xlabel("seconds since every task was made hot")
    ax.set_title("Storm: six hot tasks leave worker-1 one at a time, hottest first", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.12, right=0.78, bottom=0.18, top=0.88)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
