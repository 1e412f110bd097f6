"""Run the exporter: serve /metrics and /opted-in until SIGTERM (what `docker service`
sends) or SIGINT."""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict

import docker
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from exporter import cgroups, server as metrics_server
from exporter.capacity import resolve_capacity
from exporter.collector import TaskCollector, read_node
from exporter.config import ExporterConfig, parse_config
from exporter.inventory import Inventory
from exporter.opt_in import OptInWatch

logger = logging.getLogger("exporter")

# The most open files the exporter asks for when the hard limit is higher, or unlimited.
OPEN_FILES_WANTED = 1 << 20


def lift_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one, as every Go program (cAdvisor,
    node exporter) does at start since Go 1.19. Each task holds four files open (exporter/cgroups.py) and each
    connection one, and a container's soft limit can be 1024 (moby#45534 made 1024 soft,
    524288 hard Docker's default)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        logger.warning("Cannot raise the open files limit from %d to %d: %s", soft, wanted, error)
    else:
        logger.info("Open files limit raised from %d to %d", soft, wanted)


def docker_connector(config: ExporterConfig) -> Callable[[], docker.APIClient]:
    """A new client of this node's Docker per call: each thread that reads Docker has its own."""
    def connect() -> docker.APIClient:
        # "auto": the version the daemon speaks, so Engine 29's API floor is no obstacle.
        return docker.APIClient(base_url=config.docker_url, version="auto",
                                timeout=config.docker_timeout_seconds)

    return connect


def build_inventory(config: ExporterConfig) -> Inventory:
    def locate(container_id: str, pid: int, cgroup_parent: str):
        return cgroups.locate(container_id, pid, proc_root=config.proc_root,
                              cgroup_root=config.cgroup_root, cgroup_parent=cgroup_parent)

    return Inventory(docker_connector(config), locate, resync_seconds=config.resync_seconds)


def build_registry(config: ExporterConfig, inventory: Inventory) -> tuple[CollectorRegistry, TaskCollector]:
    registry = CollectorRegistry()
    collector = TaskCollector(config, inventory, read_node(config.proc_root))
    registry.register(collector)
    # process_cpu_seconds_total gives the exporter's own CPU cost per scrape.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry, collector


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv, os.environ)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = " ".join(f"{key}={value}" for key, value in asdict(config).items())
    logger.info("Starting the SwarmGuard exporter with %s", settings)
    lift_open_files_limit()

    capacity = resolve_capacity(config.interface, config.capacity_mbps, config.sysfs_root)
    if capacity is None:
        # Without a capacity there is no percentage to publish: say so now rather than
        # run and publish nothing. (A later change of link speed is read at each scrape.)
        logger.error(
            "Cannot tell the capacity of interface %s: %s/class/net/%s/speed is missing or "
            "reports no speed. Set --capacity-mbps (SWARMGUARD_EXPORTER_CAPACITY_MBPS).",
            config.interface,
            config.sysfs_root,
            config.interface,
        )
        return 2
    logger.info(
        "100 %% stands for %.0f Mbit/s on %s (%s)",
        capacity.bits_per_second / 1e6,
        capacity.interface,
        capacity.source,
    )

    inventory = build_inventory(config)
    registry, collector = build_registry(config, inventory)
    opt_in = OptInWatch(docker_connector(config), interval=config.opt_in_interval_seconds,
                        on_error=lambda: collector.count_error("docker_unreachable"))
    inventory.start_watching()
    opt_in.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: stop.set())
    try:
        server, thread = metrics_server.start(config, collector.render_tasks, registry, opt_in.page)
    except OSError as error:
        logger.error(
            "Cannot listen on %s:%s: %s", config.listen_address, config.listen_port, error
        )
        return 1
    logger.info("Serving /metrics and /opted-in on %s:%s", config.listen_address, server.server_port)

    stop.wait()
    logger.info("Stopping: shutting the metrics server down")
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    collector.close()
    opt_in.close()
    logger.info("Stopped")
    return 0
