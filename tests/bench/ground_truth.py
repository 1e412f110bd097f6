"""Unit benchmark (no lab): the cost of the receiver's ground truth for detection health
with 500 services and 5,000 tasks, against a fake Docker API.

    make bench-ground-truth

Times, over many rounds: a scrape of /metrics's ground-truth part (what Prometheus waits
for, every 500 ms: it only renders the last reading), and one background refresh without
Docker's own time (building the truth from the three list answers, every 5 s). The goal
asks for the scrape to stay under 100 ms. Printed as a table, written as JSON; no
assertion on timing (a benchmark, not a test).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest

from receiver import ground_truth
from tests.bench.common import progress, summarise, table, write_json
from tests.unit.swarm_reads import large_swarm


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)

    api = large_swarm(args.services, args.tasks, args.nodes)
    api.copy_answers = False  # Docker's JSON decoding is not the receiver's to time
    loop = ground_truth.GroundTruthLoop(lambda: ground_truth.read(api))
    progress(f"{args.services} services, {args.tasks} running tasks on {args.nodes} nodes")
    refresh = timed(loop.refresh, max(args.rounds // 4, 10))
    registry = CollectorRegistry()
    registry.register(ground_truth.GroundTruthCollector(loop))
    scrape = timed(lambda: generate_latest(registry), args.rounds)
    body = generate_latest(registry)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))

    rows = [["scrape (render the last reading)", *(summarise(scrape)[k] for k in ("n", "p50", "p95", "max"))],
            ["refresh (build from the 3 list answers)", *(summarise(refresh)[k] for k in ("n", "p50", "p95", "max"))]]
    print(table(["ms", "n", "p50", "p95", "max"], rows))
    print(f"{series} series, {len(body)} bytes per scrape; the goal: scrape under 100 ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    path = write_json("ground-truth", {
        "services": args.services, "tasks": args.tasks, "nodes": args.nodes,
        "opted_in_services": sum(1 for s in api.service_list
                                 if s["Spec"]["Labels"].get("swarmguard.enable") == "true"),
        "series": series, "bytes": len(body),
        "scrape_ms": summarise(scrape), "refresh_ms": summarise(refresh),
        "scrape_bound_ms": 100, "load_average_1m": os.getloadavg()[0]})
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
