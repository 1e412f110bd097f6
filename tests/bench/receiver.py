"""make bench-receiver: the receiver's speed, in two parts, on the lab.

1. Acknowledgements: wrk posts Alertmanager webhooks (1 alert and 10 alerts per payload)
   to the receiver under gunicorn, and the same load to a bare Flask endpoint that only
   returns 200 under the same gunicorn settings, in the same run. The receiver runs in
   dry-run mode against the lab's manager, so every webhook is fully validated, counted
   and handed to the background worker, and nothing in the swarm changes.
2. Actuation overhead: a migration by the receiver (webhook sent -> new task healthy and
   the old task shut down) against the same start-first `docker service update` issued
   by hand, watched by the same code, alternating, in the same run.
Prints tables, writes artifacts/bench-receiver.json and artifacts/bench-receiver.png.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import command_line, lab_up, progress, publish, pyplot, save_figure, summarise, table
from tests.lab.infra import services
from tests.lab.config import DEFAULT, PROJECT_ROOT, LabConfig
from tests.lab.infra.receiver_proc import ReceiverProcess, webhook
from tests.lab.infra.system import wait_for

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.body = io.open("%(body)s"):read()
"""


def payload(alerts: int, service: str) -> dict:
    """One Alertmanager group of `alerts` migrate alerts for one service."""
    # IDs in Swarm's format (25 lower-case letters and digits), or the receiver says 400.
    body = webhook("SwarmGuardMigrate", {"service": service, "task_id": f"task{0:021d}",
                                         "node_id": f"node{0:021d}"})
    template = body["alerts"][0]
    body["alerts"] = [{**template, "labels": {**template["labels"], "task_id": f"task{i:021d}"},
                       "fingerprint": f"{i:016x}"} for i in range(alerts)]
    return body


def wrk(url: str, token: str, body: dict, seconds: int, connections: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        body_file, script = Path(tmp) / "body.json", Path(tmp) / "post.lua"
        body_file.write_text(json.dumps(body))
        script.write_text(WRK_SCRIPT % {"token": token, "body": body_file})
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                             capture_output=True, text=True, check=True).stdout
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms(lat["50"]), "p99_ms": ms(lat["99"]),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))}


class BareApp:
    def __init__(self, port: int):
        self.port, self.proc = port, None

    def __enter__(self):
        env = {**os.environ, "SWARMGUARD_BIND": f"127.0.0.1:{self.port}", "SWARMGUARD_LOG_LEVEL": "warning"}
        # The receiver's own gunicorn settings (access log included), its log to a file
        # as the receiver's: the only difference left is the application.
        log = open(DEFAULT.log_dir / f"bare-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "receiver/gunicorn.conf.py",
                                      "tests.bench.bare_app:create_app()"],
                                     cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        import requests
        wait_for("bare app", lambda: requests.post(f"http://127.0.0.1:{self.port}/alerts", timeout=1).ok)
        return self

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


def acknowledgements(cfg: LabConfig, seconds: int, connections: int) -> list[dict]:
    services.deploy_web(cfg, "bench-ack")
    rows = []
    token = cfg.token_file.read_text().strip()
    try:
        with ReceiverProcess(cfg, confirm_with_prometheus=0, dry_run=1, log_level="warning") as receiver, BareApp(cfg.receiver_port + 10) as bare:
            for alerts in (1, 10):
                body = payload(alerts, "bench-ack")
                for name, url in (("bare flask", f"http://127.0.0.1:{bare.port}/alerts"),
                                  ("receiver", f"{receiver.url}/alerts")):
                    progress(f"wrk {seconds}s, {connections} connections: {name}, {alerts}-alert payloads")
                    rows.append({"endpoint": name, "alerts_per_payload": alerts,
                                 **wrk(url, token, body, seconds, connections)})
    finally:
        services.remove_service(cfg, "bench-ack")
    return rows


def migration_overhead(cfg: LabConfig, pairs: int) -> dict:
    services.deploy_web(cfg, "bench-move")
    by_hand, by_receiver, runs = [], [], []
    try:
        with ReceiverProcess(cfg, confirm_with_prometheus=0, cooldown_migrate=0) as receiver:
            for n in range(1, pairs + 1):
                # Alternate who goes first: with two workers the task goes back and forth,
                # so each kind moves it in both directions equally often.
                for who in (("hand", "receiver") if n % 2 else ("receiver", "hand")):
                    [task] = services.running_tasks(cfg, "bench-move")
                    old = services.node_name(cfg, task["NodeID"])
                    wait_for("no update under way", lambda: (services.client(cfg, cfg.manager).api.inspect_service(
                        "bench-move").get("UpdateStatus") or {}).get("State") != "updating")
                    # The previous move's old container holds the host-mode port on the node
                    # we are about to move back to until its stop grace period ends; a move
                    # started before that waits for it (seen: 4.4 s instead of 2.6 s).
                    wait_for("the previous task's container to be gone",
                             lambda: len(services.containers(cfg, "bench-move")) == 1)
                    started = time.monotonic()
                    if who == "hand":
                        services.update_service(cfg, "bench-move", exclude(old))
                    else:
                        receiver.send(webhook("SwarmGuardMigrate", {"service": "bench-move", "task_id": task["ID"],
                                                                     "node_id": task["NodeID"]}))
                    services.wait_moved_off(cfg, "bench-move", old, poll=0.05)
                    took = time.monotonic() - started
                    (by_hand if who == "hand" else by_receiver).append(took)
                    runs.append({"who": who, "from": old, "seconds": took})
                    progress(f"pair {n}/{pairs}: {who:<8} moved off {old} in {took:.2f} s")
                    receiver.wait_idle()
                    if who == "hand":
                        # The receiver rightly treats a constraint it did not add as the
                        # user's own; take ours back (no task moves: it still fits).
                        services.update_service(cfg, "bench-move", exclude(None))
    finally:
        services.remove_service(cfg, "bench-move")
    hand, recv = summarise(by_hand), summarise(by_receiver)
    # Compare like with like: per direction (the node a task lands on may differ).
    directions = {}
    for origin in sorted({r["from"] for r in runs}):
        h = [r["seconds"] for r in runs if r["from"] == origin and r["who"] == "hand"]
        v = [r["seconds"] for r in runs if r["from"] == origin and r["who"] == "receiver"]
        if h and v:
            directions[origin] = {"by_hand_p50": summarise(h)["p50"], "by_receiver_p50": summarise(v)["p50"],
                                  "ratio": summarise(v)["p50"] / summarise(h)["p50"]}
    ratio = (sum(d["ratio"] for d in directions.values()) / len(directions)) if directions else recv["p50"] / hand["p50"]
    return {"runs": runs, "by_hand_s": by_hand, "by_receiver_s": by_receiver, "by_hand": hand, "by_receiver": recv,
            "per_origin": directions, "ratio": ratio}


def exclude(node: str | None):
    """What an operator types: docker service update --constraint-add node.hostname!=X
    --update-order start-first (replacing an earlier exclusion, as the receiver does)."""
    def mutate(spec):
        placement = spec["TaskTemplate"].setdefault("Placement", {})
        kept = [c for c in placement.get("Constraints", []) if not c.startswith("node.hostname!=")]
        placement["Constraints"] = kept + ([f"node.hostname!={node}"] if node else [])
        spec["UpdateConfig"] = {**spec.get("UpdateConfig", {}), "Order": "start-first"}
    return mutate


def ack_ratios(acks: list[dict]) -> dict[int, float]:
    """Receiver acknowledgements per second over the bare endpoint's, by alerts per payload."""
    rate = {(r["endpoint"], r["alerts_per_payload"]): r["requests_per_second"] for r in acks}
    return {alerts: rate[("receiver", alerts)] / rate[("bare flask", alerts)]
            for alerts in sorted({r["alerts_per_payload"] for r in acks})}


def plot(acks: list[dict], overhead: dict, path: Path) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{r['endpoint']}\n{r['alerts_per_payload']} alert(s)" for r in acks]
    colours = ["#9aa5b1" if r["endpoint"] == "bare flask" else "#2e86de" for r in acks]
    a.bar(labels, [r["requests_per_second"] for r in acks], color=colours)
    a.set_ylabel("acknowledgements per second")
    a.set_title("Webhook acknowledgements (wrk, gunicorn)")
    for i, r in enumerate(acks):
        a.text(i, r["requests_per_second"], f"p99 {r['p99_ms']:.1f} ms", ha="center", va="bottom", fontsize=8)
    b.boxplot([overhead["by_hand_s"], overhead["by_receiver_s"]], tick_labels=["docker service update\nby hand",
                                                                         "SwarmGuard receiver\n(webhook -> moved)"])
    b.set_ylabel("seconds until new task healthy, old task shut down")
    b.set_title(f"Migration: receiver / by hand, ratio {overhead['ratio']:.2f}")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=6, help="migrations by hand and by receiver, each (even)")
    args = parser.parse_args(argv)
    cfg = lab_up()
    acks = acknowledgements(cfg, args.seconds, args.connections)
    overhead = migration_overhead(cfg, args.pairs)
    print("\nWebhook acknowledgements (gunicorn: 1 worker, 8 threads; wrk: 2 threads, "
          f"{args.connections} connections, {args.seconds} s each)")
    print(table(["endpoint", "alerts/payload", "req/s", "p50 ms", "p99 ms", "non-2xx", "errors"],
                [[r["endpoint"], r["alerts_per_payload"], r["requests_per_second"], r["p50_ms"], r["p99_ms"],
                  r["non_2xx"], r["errors"]] for r in acks]))
    for alerts, ratio in ack_ratios(acks).items():
        print(f"receiver / bare, {alerts}-alert payloads: {ratio:.0%}")
    print(f"\nMigration, seconds (n={args.pairs} each)")
    print(table(["who", "p50", "p95", "min", "max"],
                [["by hand", *(overhead["by_hand"][k] for k in ("p50", "p95", "min", "max"))],
                 ["receiver", *(overhead["by_receiver"][k] for k in ("p50", "p95", "min", "max"))]]))
    for origin, d in overhead["per_origin"].items():
        print(f"  off {origin}: by hand p50 {d['by_hand_p50']:.2f} s, receiver p50 {d['by_receiver_p50']:.2f} s, "
              f"ratio {d['ratio']:.2f}")
    print(f"ratio receiver / by hand (mean of the per-direction p50 ratios): {overhead['ratio']:.2f}")
    publish("bench-receiver", {"acknowledgements": acks, "migration": overhead},
            lambda png: plot(acks, overhead, png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
