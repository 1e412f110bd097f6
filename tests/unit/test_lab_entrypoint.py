"""The lab's entry points (tests/lab/infra/entrypoint.py): one HAProxy frontend and
backend per published port, each over every worker, none on a port the lab uses else."""
import re

import pytest

from tests.lab.config import DEFAULT
from tests.lab.infra.entrypoint import config_text


def sections(text: str) -> dict[str, list[str]]:
    """HAProxy section header ("frontend app") -> its indented lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            current = line.strip()
            out[current] = []
        elif current and line.strip():
            out[current].append(line.strip())
    return out


def test_the_app_keeps_its_entry_point_and_every_extra_app_has_its_own():
    app, *extra = DEFAULT.entry_points
    assert (app.published_port, app.url, app.name) == (DEFAULT.app_published_port, DEFAULT.entrypoint_url, "app")
    assert len(extra) >= 3  # the drain benchmark follows four single-replica services
    for ports in ([e.published_port for e in DEFAULT.entry_points], [e.port for e in DEFAULT.entry_points],
                  [e.name for e in DEFAULT.entry_points]):
        assert len(set(ports)) == len(ports)
    taken = {DEFAULT.prometheus_port, DEFAULT.alertmanager_port, DEFAULT.haproxy_stats_port,
             DEFAULT.receiver_port, DEFAULT.receiver_port + 1}  # + 1: a second receiver
    assert not taken & {e.port for e in DEFAULT.entry_points}


def test_an_entry_url_is_found_by_the_published_port_it_balances():
    assert DEFAULT.entry_url(DEFAULT.app_published_port) == DEFAULT.entrypoint_url
    extra = DEFAULT.extra_apps[0]
    assert DEFAULT.entry_url(extra.published_port) == f"http://127.0.0.1:{extra.port}"
    with pytest.raises(ValueError, match="9999"):
        DEFAULT.entry_url(9999)


def test_haproxy_gets_a_frontend_and_a_backend_over_every_worker_per_entry_point():
    found = sections(config_text(DEFAULT))
    for entry in DEFAULT.entry_points:
        assert found[f"frontend {entry.name}"] == [f"bind 127.0.0.1:{entry.port}",
                                                   f"default_backend {entry.name}"]
        servers = [line for line in found[f"backend {entry.name}"] if line.startswith("server ")]
        assert servers == [f"server {n.name} {n.ip}:{entry.published_port} check" for n in DEFAULT.workers]


def test_every_backend_is_checked_and_retried_alike():
    found = sections(config_text(DEFAULT))
    settings = {name: [line for line in lines if not line.startswith("server ")]
                for name, lines in found.items() if name.startswith("backend ")}
    assert len(settings) == len(DEFAULT.entry_points)
    assert len({tuple(lines) for lines in settings.values()}) == 1
    assert "option httpchk GET /health" in settings["backend app"]
    # Retries and re-dispatch live in `defaults`, so they hold for every backend alike.
    assert any(re.fullmatch(r"retry-on conn-failure.*", line) for line in found["defaults"])
