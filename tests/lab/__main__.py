"""python -m tests.lab {up,down,status,demo-service}: the lab controller's command line."""
from __future__ import annotations

import argparse
import os
import sys

from .infra import controller, services
from .config import DEFAULT
from .infra.system import LabError, say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab",
                                     description="A real three-node Docker Swarm with monitoring, on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing and start the lab (idempotent)")
    sub.add_parser("down", help="remove everything `up` created; keep the download cache")
    st = sub.add_parser("status", help="nodes, services, tasks and URLs")
    st.add_argument("--json", action="store_true")
    sub.add_parser("fits", help="exit 0 when a lab of the asked flavour and size "
                                "(SWARMGUARD_LAB_FLAVOUR, SWARMGUARD_LAB_WORKERS) runs")
    sub.add_parser("demo-service", help="deploy the health-checked web service behind the entry point")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces, dockerd, iptables)", file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            controller.up(DEFAULT)
        elif args.command == "down":
            controller.down(DEFAULT)
        elif args.command == "fits":
            return 0 if controller.fits(DEFAULT) else 1
        elif args.command == "status":
            print(controller.status_json(DEFAULT) if args.json else controller.format_status(controller.status(DEFAULT)))
        elif args.command == "demo-service":
            say("deploying service web (busybox httpd, health-checked, host-mode port "
                f"{DEFAULT.app_published_port}, workers only)")
            services.deploy_web(DEFAULT)
            print(controller.format_status(controller.status(DEFAULT)))
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
