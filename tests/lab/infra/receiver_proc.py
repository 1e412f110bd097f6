"""The real receiver, under gunicorn, on the host, talking to the lab's manager.

Tests and benchmarks start it with the settings they need (cooldowns, limits), send it
webhooks as Alertmanager does, read its /metrics and its structured events, and may kill
it mid-action.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import webhooks

from ..config import PROJECT_ROOT, LabConfig
from ..instruments.events import read_events
from .system import LabError, wait_for


class ReceiverProcess:
    def __init__(self, cfg: LabConfig, port: int | None = None, **settings: str | int | float):
        self.cfg = cfg
        self.port = port or cfg.receiver_port
        self.url = f"http://127.0.0.1:{self.port}"
        # The lab makes a task hot by stressing the task itself, which to the futile check
        # (receiver/futile.py) is the task's own heat from the second move of a service on:
        # rightly so. Tests and benchmarks that move one service again and again to measure
        # something else run without it; the futile test turns it on.
        # It asks every Prometheus of the lab which alerts fire (docs/contract.md,
        # "Confirmation with Prometheus"): each node's detection Prometheus and the central
        # one. Tests that post alerts themselves (`send`) are not Prometheus's: they pass
        # confirm_with_prometheus=0.
        settings = {"futile_window": 0, "prometheus_url": ",".join(cfg.prometheus_urls), **settings}
        self.settings = {f"SWARMGUARD_{k.upper()}": str(v) for k, v in settings.items()}
        self.proc: subprocess.Popen | None = None
        self.log_path = cfg.log_dir / f"receiver-{self.port}.log"
        self.log_offset = 0  # where this run starts in the log, which runs append to

    @property
    def token(self) -> str:
        return self.cfg.token_file.read_text().strip()

    def start(self) -> "ReceiverProcess":
        # A leftover receiver (say, of a benchmark killed mid-run) would answer /readyz for
        # this one, whose gunicorn cannot bind and exits: everything after would silently
        # talk to old code, or to nothing.
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise LabError(f"port {self.port} is taken (a leftover receiver? "
                               f"`ss -ltnp 'sport = :{self.port}'` names its PID); stop it first")
        env = {**os.environ, "SWARMGUARD_TOKEN_FILE": str(self.cfg.token_file),
               "SWARMGUARD_DOCKER_HOST": self.cfg.docker_url(self.cfg.manager),
               "SWARMGUARD_BIND": f"127.0.0.1:{self.port}", **self.settings}
        env.pop("SWARMGUARD_TOKEN", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.log_offset = log.seek(0, os.SEEK_END)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "receiver/gunicorn.conf.py", "receiver.app:create_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(f"receiver on port {self.port} ready",
                     lambda: self._alive() and requests.get(f"{self.url}/readyz", timeout=1).ok, timeout=30)
        except Exception:  # `with` never reaches __exit__: stop it here, or it outlives the test
            self.stop()
            raise
        return self

    def _alive(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {self.proc.returncode}; see {self.log_path}")
        return True

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown. Returns once the port
        is free: the worker dies a moment after the master, holding the listening socket
        until then, and a successor on the same port would find it taken."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            wait_for(f"port {self.port} released by the killed receiver", self._port_free,
                     timeout=30, interval=0.1)

    def _port_free(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) != 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ReceiverProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def send(self, payload: dict) -> requests.Response:
        return requests.post(f"{self.url}/alerts", json=payload, timeout=10,
                             headers={"Authorization": f"Bearer {self.token}",
                                      "User-Agent": "Alertmanager/0.25.0"})

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels`."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def events(self) -> list[dict]:
        """This run's structured events (docs/contract.md, "Receiver events"), read from
        its log (tests/lab/instruments/events.py says why the log); also after it has exited."""
        level = self.settings.get("SWARMGUARD_LOG_LEVEL",
                                  os.environ.get("SWARMGUARD_LOG_LEVEL", "info")).lower()
        if level not in ("debug", "info"):
            raise ValueError(f"the receiver logs its events at INFO; it runs at {level}")
        return read_events(self.log_path, self.log_offset)

    def wait_idle(self, timeout: float = 90.0) -> None:
        """Until no action is in flight (the migration watch included). A webhook's work
        counts as in flight from before its 202 (receiver/worker.py, Dispatcher.submit), so
        what a test has sent is never missed."""
        wait_for("receiver idle", lambda: self.metric("swarmguard_actions_in_flight") == 0, timeout=timeout)


def webhook(alertname: str, labels: dict, *, starts_at: datetime | None = None,
            status: str = "firing", annotations: dict | None = None) -> dict:
    """A webhook body exactly as Alertmanager 0.25 sends it, for one alert."""
    scenario = {"SwarmGuardMigrate": "migrate", "SwarmGuardScaleUp": "scale_up",
                "SwarmGuardScaleDown": "scale_down"}[alertname]
    all_labels = {"alertname": alertname, "scenario": scenario, "severity": "warning", **labels}
    one = webhooks.alert(
        all_labels, webhooks.stamp(starts_at), status=status, ends_at=webhooks.STILL_FIRING,
        annotations={"summary": "lab", "description": "sent by the lab tests",
                     "runbook_url": "https://example.invalid/runbook", **(annotations or {})},
        generatorURL="http://127.0.0.1:9090/graph", fingerprint=f"{abs(hash(str(all_labels))):016x}"[:16])
    return webhooks.webhook(
        [one], status=status, group_key=f'{{}}:{{alertname="{alertname}", service="{labels["service"]}"}}',
        groupLabels={"alertname": alertname, "service": labels["service"]}, commonLabels=all_labels,
        commonAnnotations={}, externalURL="http://127.0.0.1:9093", truncatedAlerts=0)
