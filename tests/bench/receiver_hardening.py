"""make bench-receiver-hardening: the receiver against hostile load, no lab needed.

The receiver runs under gunicorn with its own settings (receiver/gunicorn.conf.py), on
loopback, in dry-run mode, against a stand-in Docker daemon on a unix socket
(tests/bench/fake_docker_daemon.py: one opted-in service, `bench-web`). Five parts
(`--parts`):

1. Slow clients: 50 connections that trickle a request (half the headers, half a body)
   stay open the whole time (reopened when the receiver closes them), while webhooks and
   /healthz are sent one after another on fresh connections: latency of each.
2. Flood: 12 webhooks of 9,200 distinct services each (1.01 MiB), all at once;
   the gunicorn worker's RSS, sampled throughout; then one real alert, and the time until
   its dry-run outcome is counted in /metrics.
3. Attacks (tests/bench/receiver_attacks.py): a chunk trickle from 64 connections, 500
   idle connections, 200 keep-alive senders, each for --attack-seconds against a fresh
   receiver, with /healthz and a real webhook probed every 0.1 s: p99 of each (2 s
   without an answer = failed), the worker's RSS peak.
4. The exporter (tests/bench/exporter_attack.py): 5,000 idle connections while it is
   scraped every 0.1 s: scrape p50/p99, failures, its RSS peak.
5. Acknowledgements: wrk posts 1- and 10-alert webhooks to the receiver and to a bare
   Flask endpoint (tests/bench/bare_app.py) under the same gunicorn settings.

`--baseline DIR` runs every part against the receiver in DIR too (e.g. an export of
main: `git archive main | tar -x -C DIR`), for a before/after table.
Prints tables; writes artifacts/bench-receiver-hardening.json and .png.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import webhooks
from tests.bench import receiver_attacks as attacks_
from tests.bench.common import progress, publish, pyplot, rss_mb, save_figure, summarise, table
from tests.bench.fake_docker_daemon import SERVICE
from tests.bench.receiver import payload, wrk
from tests.lab.infra.system import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"
SLOW_CLIENTS = 50
FLOOD_WEBHOOKS, FLOOD_SERVICES = 12, 9200
# 9,200 of the smallest valid alerts take 1.01 MiB: the receivers under test take bodies a
# little over their default 1 MiB, so that the flood is what reaches them (not a 413).
FLOOD_MAX_BODY_BYTES = 1100000


class Gunicorn:
    """gunicorn serving `app` from `tree` with the receiver's settings, on a free port."""

    def __init__(self, tree: Path, app: str, workdir: Path, docker_socket: Path, name: str,
                 extra_args: tuple[str, ...] = ()):
        self.tree, self.app, self.name, self.extra_args = tree, app, name, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        self.env = {**os.environ, "SWARMGUARD_TOKEN": TOKEN, "SWARMGUARD_DRY_RUN": "1",
                    "SWARMGUARD_BIND": f"127.0.0.1:{self.port}",
                    "SWARMGUARD_DOCKER_HOST": f"unix://{docker_socket}",
                    "SWARMGUARD_MAX_BODY_BYTES": str(FLOOD_MAX_BODY_BYTES),
                    "SWARMGUARD_LOG_LEVEL": "warning", "PYTHONPATH": str(tree),
                    # Alerts here are the benchmark's own, not a Prometheus's.
                    "SWARMGUARD_CONFIRM_WITH_PROMETHEUS": "0"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "receiver/gunicorn.conf.py",
             "--access-logfile", "/dev/null", *self.extra_args, self.app],
            cwd=self.tree, env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within 30 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def post(self, body: bytes, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/alerts", data=body, timeout=timeout, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def base36(number: int, width: int) -> str:
    digits = ""
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    return digits


def scale_up_body(services: list[str], starts_at: str) -> bytes:
    alerts = [webhooks.alert({"alertname": "SwarmGuardScaleUp", "service": s}, starts_at) for s in services]
    return webhooks.encoded(webhooks.webhook(alerts), compact=True)


# -- 1. slow clients ----------------------------------------------------------------------

class SlowClients(threading.Thread):
    """Keeps `count` connections open, each trickling a request a few bytes at a time and
    never finishing it; a connection the server closes is replaced at once."""

    def __init__(self, port: int, count: int, pause: float = 0.5):
        super().__init__(daemon=True)
        self.port, self.count, self.pause = port, count, pause
        self.stop = threading.Event()
        self.opened = self.closed_by_server = 0

    def _open(self, index: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        head = b"POST /alerts HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        sock.sendall(head + (b"Content-Length: 100000\r\n\r\n" if index % 2 else b""))
        sock.setblocking(False)
        self.opened += 1
        return sock

    def run(self) -> None:
        socks = [self._open(i) for i in range(self.count)]
        while not self.stop.wait(self.pause):
            for i, sock in enumerate(socks):
                try:
                    sock.send(b"{" if i % 2 else b"X-Slow: 1\r\n")
                    if sock.recv(4096, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_by_server += 1
                    sock.close()
                    socks[i] = self._open(i)
        for sock in socks:
            sock.close()


def timed(fn) -> float | None:
    started = time.perf_counter()
    try:
        fn()
    except requests.RequestException:
        return None  # timed out: counted as a failure
    return (time.perf_counter() - started) * 1000


def slow_clients(receiver: Gunicorn, requests_each: int) -> dict:
    body = scale_up_body([SERVICE], webhooks.stamp())
    clients = SlowClients(receiver.port, SLOW_CLIENTS)
    clients.start()
    time.sleep(1.0)
    webhook_ms, healthz_ms = [], []
    try:
        for _ in range(requests_each):
            webhook_ms.append(timed(lambda: receiver.post(body, timeout=10).raise_for_status()))
            healthz_ms.append(timed(lambda: requests.get(f"{receiver.url}/healthz", timeout=10)
                                    .raise_for_status()))
            if webhook_ms[-3:] == [None] * 3:
                # Starved: the rest would time out too; ten seconds each is enough to know.
                missing = requests_each - len(webhook_ms)
                webhook_ms += [None] * missing
                healthz_ms += [None] * missing
                break
    finally:
        clients.stop.set()
        clients.join()
    def stats(values):
        ok = [v for v in values if v is not None]
        return {**summarise(ok), "failed": len(values) - len(ok), "values_ms": values}
    return {"slow_connections": SLOW_CLIENTS, "slow_connections_opened": clients.opened,
            "closed_by_receiver": clients.closed_by_server,
            "webhook_ms": stats(webhook_ms), "healthz_ms": stats(healthz_ms)}


# -- 2. flood -----------------------------------------------------------------------------

def flood(receiver: Gunicorn, wait_limit: float) -> dict:
    # Short names and whole seconds: 9,200 alerts in about 1 MiB (FLOOD_MAX_BODY_BYTES).
    starts_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = [scale_up_body([base36(w * FLOOD_SERVICES + i, 4) for i in range(FLOOD_SERVICES)],
                            starts_at) for w in range(FLOOD_WEBHOOKS)]
    pid = receiver.worker_pid()
    samples: list[tuple[float, float]] = []
    sampling = threading.Event()
    t0 = time.monotonic()

    def sample():
        while not sampling.is_set():
            samples.append((time.monotonic() - t0, rss_mb(pid)))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    rss_before = rss_mb(pid)
    sampler.start()
    with ThreadPoolExecutor(max_workers=FLOOD_WEBHOOKS) as pool:
        codes = list(pool.map(lambda b: receiver.post(b, timeout=120).status_code, bodies))
    flood_done = time.monotonic() - t0
    before = receiver.metric("swarmguard_actions_total", kind="scale_up", result="dry_run")
    sent = time.monotonic()
    real = receiver.post(scale_up_body([SERVICE], webhooks.stamp()), timeout=60)
    acted = None
    while time.monotonic() - sent < wait_limit:
        if receiver.metric("swarmguard_actions_total", kind="scale_up",
                           result="dry_run") > before:
            acted = time.monotonic() - sent
            break
        time.sleep(0.05)
    sampling.set()
    sampler.join()
    return {"webhooks": FLOOD_WEBHOOKS, "services_each": FLOOD_SERVICES,
            "body_bytes": len(bodies[0]), "status_codes": codes,
            "flood_answered_s": flood_done, "rss_before_mb": rss_before,
            "rss_peak_mb": max(v for _, v in samples), "rss_after_mb": rss_mb(pid),
            "rss_samples": samples, "real_alert_status": real.status_code,
            "real_alert_acted_on_s": acted, "waited_at_most_s": wait_limit}


# -- 3. attacks (tests/bench/receiver_attacks.py) -----------------------------------------

def run_attacks(run: str, tree: Path, workdir: Path, docker_socket: Path, extra, seconds: float
                ) -> list[dict]:
    """Each attack against a fresh receiver (one attack's leftovers never weigh on the next)."""
    body = scale_up_body([SERVICE], webhooks.stamp())
    rows = []
    attacks = [
        ("chunk trickle", lambda r: attacks_.chunk_trickle(
            r.url, r.port, r.worker_pid(), lambda t: r.post(body, timeout=t), seconds)),
        ("idle", lambda r: attacks_.idle(
            r.url, r.port, r.worker_pid(), lambda t: r.post(body, timeout=t), seconds)),
        ("keep-alive senders", lambda r: attacks_.keepalive_senders(
            r.url, r.port, r.worker_pid(), lambda t: r.post(body, timeout=t), seconds,
            body, TOKEN)),
    ]
    for name, attack in attacks:
        progress(f"{run}: {name} for {seconds:.0f} s, probing /healthz and a webhook")
        with Gunicorn(tree, "receiver.app:create_app()", workdir, docker_socket,
                      run.replace(" ", "-"), extra) as receiver:
            rows.append(attack(receiver))
        last = rows[-1]
        progress(f"{run}: {last['attack']}: /healthz p99 {fmt_ms(last['healthz_ms'])}, "
                 f"webhook p99 {fmt_ms(last['webhook_ms'])}, RSS peak {last['rss_peak_mb']:.0f} MB")
    return rows


def fmt_ms(stats: dict) -> str:
    if stats["p99_failed"]:
        return f"failed ({stats['failed']}/{stats['sent']} unanswered in 2 s)"
    return f"{stats['p99']:.0f} ms"


# -- 4. acknowledgements ------------------------------------------------------------------

def acknowledgements(receiver: Gunicorn, bare: Gunicorn, seconds: int, connections: int,
                     rounds: int) -> list[dict]:
    """wrk against both, in alternating order, `rounds` times: the machine is shared, and
    a ratio from back-to-back pairs is steadier than one from two separate runs."""
    rows = []
    for alerts in (1, 10):
        body = payload(alerts, SERVICE)
        for n in range(rounds):
            order = [("bare flask", bare), ("receiver", receiver)]
            for name, server in order if n % 2 == 0 else order[::-1]:
                progress(f"wrk {seconds}s, {connections} connections: {name}, "
                         f"{alerts}-alert payloads, round {n + 1}/{rounds}")
                rows.append({"endpoint": name, "alerts_per_payload": alerts, "round": n,
                             **wrk(f"{server.url}/alerts", TOKEN, body, seconds, connections)})
    return rows


def paired_ratios(acks: list[dict]) -> dict[int, list[float]]:
    """Per payload size, receiver / bare acknowledgements per second of each round."""
    rate = {(r["endpoint"], r["alerts_per_payload"], r["round"]): r["requests_per_second"]
            for r in acks}
    return {alerts: [rate[("receiver", alerts, n)] / rate[("bare flask", alerts, n)]
                     for n in sorted({r["round"] for r in acks})]
            for alerts in sorted({r["alerts_per_payload"] for r in acks})}


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, (a, b, c, d) = plt.subplots(1, 4, figsize=(20, 4.2))
    plot_attacks(results, d)
    for run, data in results["runs"].items():
        if "slow_clients" not in data or "flood" not in data:
            continue
        slow = data["slow_clients"]
        for kind, style in (("webhook_ms", "-"), ("healthz_ms", "--")):
            values = sorted(v if v is not None else 10_000 for v in slow[kind]["values_ms"])
            a.plot(values, [i / len(values) for i in range(1, len(values) + 1)], style,
                   label=f"{run}: {kind.split('_')[0]}")
        b.plot([t for t, _ in data["flood"]["rss_samples"]],
               [v for _, v in data["flood"]["rss_samples"]], label=run)
    a.set_xscale("log")
    a.set_xlabel("latency, ms (10 s = timed out)")
    a.set_ylabel("fraction of requests")
    a.set_title(f"With {SLOW_CLIENTS} slow connections open")
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=8)
    b.set_xlabel("seconds since the flood began")
    b.set_ylabel("gunicorn worker RSS, MB")
    b.set_title(f"{FLOOD_WEBHOOKS} webhooks x {FLOOD_SERVICES} services")
    b.axhline(150, color="grey", linestyle=":")
    if b.get_legend_handles_labels()[0]:
        b.legend(fontsize=8)
    runs = [(run, d["ack_ratio"]) for run, d in results["runs"].items() if "ack_ratio" in d]
    for i, (run, ratio) in enumerate(runs):
        sizes = sorted(ratio, key=int)
        c.bar([x + 0.4 * i for x in range(len(sizes))], [ratio[k] for k in sizes], width=0.4,
              label=run)
        c.set_xticks([x + 0.2 * (len(runs) - 1) for x in range(len(sizes))],
                     [f"{k} alert(s)/webhook" for k in sizes])
    if runs:
        c.axhline(0.8, color="grey", linestyle=":")
        c.set_ylabel("receiver / bare Flask, acknowledgements per second")
        c.set_title("wrk, median of paired rounds")
        c.legend(fontsize=8)
    save_figure(fig, path)


def plot_attacks(results: dict, ax) -> None:
    """p99 of /healthz and of a webhook under each attack, per receiver; an unanswered
    p99 is drawn at the probe's 2 s timeout, hatched."""
    runs = [(run, d["attacks"]) for run, d in results["runs"].items() if d.get("attacks")]
    if not runs:
        ax.set_axis_off()
        return
    names = [a["attack"] for a in runs[0][1]]
    width = 0.8 / (2 * len(runs))
    for i, (run, attacks) in enumerate(runs):
        for j, kind in enumerate(("healthz_ms", "webhook_ms")):
            offset = (2 * i + j) * width
            values = [a[kind]["p99"] if not a[kind]["p99_failed"] else 2000 for a in attacks]
            bars = ax.bar([x + offset for x in range(len(attacks))], values, width,
                          label=f"{run}: {kind.split('_')[0]}")
            for bar, attack in zip(bars, attacks):
                if attack[kind]["p99_failed"]:
                    bar.set_hatch("//")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, fontsize=7)
    ax.set_yscale("log")
    ax.axhline(1000, color="grey", linestyle=":")
    ax.set_ylabel("p99 latency, ms (hatched: unanswered in 2 s)")
    ax.set_title("Under attack")
    ax.legend(fontsize=7)


def report(results: dict, waited: float, args) -> None:
    rows = [[run, kind.split("_")[0], *(data["slow_clients"][kind][k] for k in ("p50", "p95", "max",
                                                                            "failed"))]
            for run, data in results["runs"].items() if "slow_clients" in data
            for kind in ("webhook_ms", "healthz_ms")]
    if rows:
        print(f"\nWith {SLOW_CLIENTS} slow connections open (ms; failed = no answer within "
              f"10 s, or not sent after three such in a row)")
        print(table(["receiver", "request", "p50", "p95", "max", "failed"], rows))
    rows = [[run, " ".join(f"{c}x{f['status_codes'].count(c)}"
                           for c in sorted(set(f["status_codes"]))),
             f["rss_before_mb"], f["rss_peak_mb"], f["rss_after_mb"],
             f["real_alert_acted_on_s"] if f["real_alert_acted_on_s"] is not None
             else f"> {waited:.0f} (not yet)"]
            for run, f in ((run, d["flood"]) for run, d in results["runs"].items()
                           if "flood" in d)]
    if rows:
        print(f"\nFlood: {FLOOD_WEBHOOKS} webhooks x {FLOOD_SERVICES} distinct services, then "
              f"one real alert")
        print(table(["receiver", "answers", "RSS before MB", "RSS peak MB", "RSS after MB",
                     "real alert acted on after s"], rows))
    rows = [[run, a["attack"], fmt_ms(a["healthz_ms"]), fmt_ms(a["webhook_ms"]),
             a["healthz_ms"]["failed"] + a["webhook_ms"]["failed"], round(a["rss_peak_mb"] or 0),
             a.get("senders_never_answered", "")]
            for run, data in results["runs"].items() for a in data.get("attacks", [])]
    if rows:
        print("\nAttacks: /healthz and a webhook every 0.1 s on fresh connections (p99; "
              "unanswered within 2 s = failed); the gunicorn worker's RSS (stack.yml: 256M)")
        print(table(["receiver", "attack", "/healthz p99", "webhook p99", "failed",
                     "RSS peak MB", "senders never answered"], rows))
    rows = [[run, d["exporter"].get("connections_opened"), d["exporter"].get("scrapes"),
             d["exporter"].get("scrape_p50_ms"), d["exporter"].get("scrape_p99_ms"),
             d["exporter"].get("scrape_failed"), d["exporter"].get("rss_peak_mb")]
            for run, d in results["runs"].items() if "exporter" in d]
    if rows:
        print(f"\nThe exporter with {args.exporter_connections} idle connections "
              f"(scrapes every 0.1 s; stack.yml: 128M)")
        print(table(["exporter", "connections opened", "scrapes", "p50 ms", "p99 ms",
                     "failed", "RSS peak MB"], rows))
    for run, data in results["runs"].items():
        if "acknowledgements" not in data:
            continue
        print(f"\nAcknowledgements, {run} (wrk: 2 threads, {args.connections} connections, "
              f"{args.seconds} s each; the bare endpoint under the same gunicorn settings)")
        print(table(["endpoint", "alerts/payload", "round", "req/s", "p50 ms", "p99 ms",
                     "non-2xx", "errors"],
                    [[r["endpoint"], r["alerts_per_payload"], r["round"] + 1,
                      r["requests_per_second"], r["p50_ms"], r["p99_ms"], r["non_2xx"],
                      r["errors"]] for r in data["acknowledgements"]]))
        for alerts, ratio in data["ack_ratio"].items():
            print(f"{run} / bare, {alerts}-alert payloads: median {ratio:.2f} of rounds "
                  + ", ".join(f"{r:.2f}" for r in data["ack_ratios"][alerts]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100,
                        help="webhooks and /healthz requests each, with slow clients open")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="how long to wait for the real alert after the flood")
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="wrk pairs per payload size")
    parser.add_argument("--baseline", type=Path, help="a tree with an older receiver/")
    parser.add_argument("--attack-seconds", type=float, default=20.0,
                        help="how long each attack lasts")
    parser.add_argument("--exporter-connections", type=int, default=5000)
    parser.add_argument("--parts", default="slow,flood,attacks,exporter,acks",
                        help="which parts to run, comma-separated")
    parser.add_argument("--gunicorn-arg", action="append", default=[],
                        help="extra gunicorn argument for every server, e.g. -k=gthread")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    extra = tuple(args.gunicorn_arg)
    trees = {"this receiver": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    results: dict = {"runs": {}}
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        workdir = Path(tmp)
        docker_socket = workdir / "docker.sock"
        fake = subprocess.Popen([sys.executable, "-m", "tests.bench.fake_docker_daemon",
                                 str(docker_socket)], cwd=ROOT, start_new_session=True)
        try:
            while not docker_socket.exists():
                time.sleep(0.05)
            for run, tree in trees.items():
                results["runs"][run] = {}
                if "slow" in parts:
                    with Gunicorn(tree, "receiver.app:create_app()", workdir, docker_socket,
                                  run.replace(" ", "-"), extra) as receiver:
                        progress(f"{run}: {args.requests} webhooks and /healthz with "
                                 f"{SLOW_CLIENTS} slow connections open")
                        results["runs"][run]["slow_clients"] = slow_clients(receiver,
                                                                            args.requests)
                if "flood" in parts:
                    with Gunicorn(tree, "receiver.app:create_app()", workdir, docker_socket,
                                  run.replace(" ", "-"), extra) as receiver:
                        progress(f"{run}: flood of {FLOOD_WEBHOOKS} x {FLOOD_SERVICES} "
                                 f"services")
                        results["runs"][run]["flood"] = flood(receiver, args.wait)
                if "attacks" in parts:
                    results["runs"][run]["attacks"] = run_attacks(
                        run, tree, workdir, docker_socket, extra, args.attack_seconds)
                if "exporter" in parts:
                    progress(f"{run}: the exporter with {args.exporter_connections} idle "
                             f"connections for {args.attack_seconds:.0f} s")
                    from tests.bench.exporter_attack import attack_idle_connections
                    results["runs"][run]["exporter"] = attack_idle_connections(
                        tree, args.exporter_connections, args.attack_seconds)
                if "acks" in parts:
                    # The bare endpoint under the same tree's gunicorn settings.
                    with Gunicorn(tree, "receiver.app:create_app()", workdir, docker_socket,
                                  run.replace(" ", "-"), extra) as receiver, \
                            Gunicorn(tree, "tests.bench.bare_app:create_app()", workdir,
                                     docker_socket, "bare", extra) as bare:
                        acks = acknowledgements(receiver, bare, args.seconds,
                                                args.connections, args.rounds)
                    ratios = paired_ratios(acks)
                    results["runs"][run].update(
                        acknowledgements=acks,
                        ack_ratios={str(k): v for k, v in ratios.items()},
                        ack_ratio={str(k): statistics.median(v) for k, v in ratios.items()})
        finally:
            os.killpg(fake.pid, signal.SIGTERM)
            fake.wait()

    report(results, args.wait, args)
    publish("bench-receiver-hardening", results, lambda png: plot(results, png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
