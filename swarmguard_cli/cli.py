"""`swarmguard`: drain, undrain, rebalance and status, through the receiver's maintenance API.

The CLI changes nothing itself: it asks the receiver, the one writer, and reports what
the receiver does. Where to find it and its token come from flags, else from the
environment the receiver itself reads (SWARMGUARD_TOKEN_FILE or SWARMGUARD_TOKEN), so
that `swarmguard status` works as it is inside the receiver's container.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

from swarmguard_cli import follow, render
from swarmguard_cli.client import Client, Refused, TokenRefused, Unreachable
from swarmguard_config import ConfigError, Layer, load

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
# What each status means, once: --help prints it, and swarmguard_cli/README.md's table is
# held to it by a test.
EXIT_MEANINGS = {
    EXIT_OK: "done: drained, rebalance finished or nothing to do, undrain answered, "
             "dry run or status printed, or started with --detach",
    EXIT_FAILED: "refused: a 4xx answer other than 401 (unknown node, 409...); or a drain "
                 "or rebalance that did not finish (stopped, or --wait-timeout passed)",
    EXIT_USAGE: "usage or configuration: a bad flag or NODE, no token or an unreadable or "
                "empty token file, or the receiver refused the token (401)",
    EXIT_UNREACHABLE: "the receiver could not be reached (refused, timed out, cut off), or "
                      "answered 5xx or something other than the API's JSON",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); what the receiver started goes on",
}

ENV_PREFIX = "SWARMGUARD_"
MAX_NODE_NAME = 256
POLL_SECONDS = 1.0
TIMEOUT_SECONDS = 10.0
WAIT_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True)
class Connection:
    # SWARMGUARD_URL, --url: by default the receiver on this host, on the port its default
    # SWARMGUARD_BIND listens on (docs/contract.md, "Receiver settings").
    url: str = "http://127.0.0.1:8000"
    # SWARMGUARD_TOKEN_FILE, --token-file: the receiver's own variable, so a Swarm secret
    # mounted for the receiver serves the CLI run in its container.
    token_file: str | None = None
    # SWARMGUARD_TOKEN only: a token on the command line would show in `ps`.
    token: str | None = field(default=None, repr=False)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_connection(flags: Mapping[str, object], environ: Mapping[str, str]) -> Connection:
    """Flags over environment over defaults; raises ConfigError naming what to fix."""
    connection = load(Connection, ENV_PREFIX, environ, above_env=Layer(flags, _flag))
    parts = urlsplit(connection.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url or {ENV_PREFIX}URL={connection.url!r} is not an http:// or "
                          f"https:// URL")
    return connection


def read_token(connection: Connection) -> str:
    """The token: from the token file if one is named (flag or variable), else
    SWARMGUARD_TOKEN. Raises ConfigError, before any request is sent."""
    if connection.token_file:
        try:
            with open(connection.token_file, encoding="utf-8") as fh:
                # Swarm secrets and `echo` end in a newline that is not part of the token.
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as error:
            why = getattr(error, "strerror", None) or str(error)
            raise ConfigError(f"cannot read the token file {connection.token_file}: {why}") \
                from None
        if not token:
            raise ConfigError(f"the token file {connection.token_file} is empty")
    elif connection.token:
        token = connection.token.strip()
    else:
        raise ConfigError(f"no token: pass --token-file, or set {ENV_PREFIX}TOKEN_FILE or "
                          f"{ENV_PREFIX}TOKEN (the receiver's token)")
    if not token.isascii() or not token.isprintable():
        raise ConfigError("the token holds characters an HTTP header cannot carry")
    return token


# -- argument types ----------------------------------------------------------------------

def node_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a node name (hostname or ID) cannot be empty")
    if len(text) > MAX_NODE_NAME:
        raise argparse.ArgumentTypeError(
            f"a node name is at most {MAX_NODE_NAME} characters, this one has {len(text)}")
    if not text.isprintable():
        raise argparse.ArgumentTypeError("a node name cannot hold control characters")
    return text


def _seconds(least: float, strictly: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < least or (strictly and value == least):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of seconds {'above' if strictly else 'of at least'} "
                f"{least:g}")
        return value
    return parse


positive_seconds = _seconds(0, strictly=True)
seconds = _seconds(0, strictly=False)


def build_parser() -> argparse.ArgumentParser:
    # The connection flags are accepted before and after the command; SUPPRESS keeps a
    # flag left out at one place from hiding the same flag given at the other.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--url", metavar="URL",
                        help=f"the receiver ({ENV_PREFIX}URL, default {Connection.url})")
    common.add_argument("--token-file", metavar="PATH",
                        help=f"file holding the receiver's token ({ENV_PREFIX}TOKEN_FILE; else "
                             f"{ENV_PREFIX}TOKEN holds the token itself)")
    common.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                        help=f"seconds to wait for each answer (default {TIMEOUT_SECONDS:g})")

    parser = argparse.ArgumentParser(
        prog="swarmguard", parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Maintenance of a Docker Swarm through SwarmGuard's receiver, which does\n"
                    "the work: this command only asks and reports.",
        epilog="exit status:\n" + "\n".join(
            textwrap.fill(meaning, width=78, initial_indent=f"  {code:<5}",
                          subsequent_indent=" " * 7)
            for code, meaning in EXIT_MEANINGS.items()),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drain = commands.add_parser(
        "drain", parents=[common], help="move a node's tasks away start-first, then drain it",
        description="Ask the receiver to move NODE's tasks to other nodes start-first, then "
                    "set it to drain; follow the moves until it is drained.")
    drain.add_argument("node", type=node_name, metavar="NODE", help="hostname or node ID")
    drain.add_argument("--force", action="store_true",
                       help="leave tasks no other node can take to Swarm's drain")
    drain.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _following(drain)

    undrain = commands.add_parser("undrain", parents=[common],
                                  help="let a drained node take work again")
    undrain.add_argument("node", type=node_name, metavar="NODE", help="hostname or node ID")
    undrain.add_argument("--dry-run", action="store_true", help="say what would change")

    rebalance = commands.add_parser(
        "rebalance", parents=[common], help="even out running tasks across the nodes",
        description="Move tasks start-first from the busiest nodes until every node taking "
                    "work is within the receiver's tolerance.")
    rebalance.add_argument("--dry-run", action="store_true",
                           help="print the plan, change nothing")
    _following(rebalance)

    status = commands.add_parser("status", parents=[common],
                                 help="nodes, services, work in flight and recent decisions")
    status.add_argument("--json", action="store_true", help="the receiver's answer as it is")
    return parser


def _following(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach", action="store_true",
                        help="start it and return; `swarmguard status` shows the progress")
    parser.add_argument("--wait-timeout", type=seconds, default=WAIT_TIMEOUT_SECONDS,
                        metavar="SECONDS",
                        help="stop following after this many seconds, exit 1 (the receiver "
                             "carries on; default %(default)g)")
    # Hidden: the seconds between two GET /status (tests follow without waiting).
    parser.add_argument("--poll", type=seconds, default=POLL_SECONDS, help=argparse.SUPPRESS)


# -- commands ----------------------------------------------------------------------------

def run_drain(client: Client, args: argparse.Namespace) -> int:
    try:
        answer = client.drain(args.node, force=args.force, dry_run=args.dry_run)
    except Refused as refusal:
        if refusal.status != 409:
            raise
        _err(render.drain_refused(str(refusal), refusal.answer.get("plan")))
        return EXIT_FAILED
    plan = answer["plan"]
    print(render.drain_plan(plan, dry_run=bool(answer["dry_run"])))
    if args.dry_run:
        return EXIT_OK
    if not answer["changed"]:
        _err("The receiver did not start the drain (it answered a dry run: is it running "
             "with SWARMGUARD_DRY_RUN?).")
        return EXIT_FAILED
    if args.detach:
        print("Not following (--detach): `swarmguard status` shows the drain.")
        return EXIT_OK
    outcome = follow.drain(client, plan, _screen(), follow.Pace(args.poll, args.wait_timeout))
    if outcome == follow.DRAINED:
        print(f"{plan['node']['hostname']} is drained.")
        return EXIT_OK
    if outcome == follow.TIMED_OUT:
        _err(f"Stopped following after {args.wait_timeout:g} s; the receiver carries on with "
             f"the drain (`swarmguard status` shows it).")
    else:
        _err(f"The drain ended {outcome}, not drained.")
    return EXIT_FAILED


def run_undrain(client: Client, args: argparse.Namespace) -> int:
    answer = client.undrain(args.node, dry_run=args.dry_run)
    print(answer["message"])
    if answer["dry_run"]:
        print("(dry run: nothing was changed)")
    return EXIT_OK


def run_rebalance(client: Client, args: argparse.Namespace) -> int:
    answer = client.rebalance(dry_run=args.dry_run)
    plan = answer["plan"]
    print(render.rebalance_plan(plan, dry_run=bool(answer["dry_run"])))
    if args.dry_run or not plan.get("moves"):
        return EXIT_OK
    if not answer["changed"]:
        _err("The receiver did not start the rebalance (it answered a dry run: is it running "
             "with SWARMGUARD_DRY_RUN?).")
        return EXIT_FAILED
    if args.detach:
        print("Not following (--detach): `swarmguard status` shows the rebalance.")
        return EXIT_OK
    outcome = follow.rebalance(client, plan, _screen(),
                               follow.Pace(args.poll, args.wait_timeout))
    if outcome == "finished":
        print("Rebalance finished.")
        return EXIT_OK
    if outcome == follow.TIMED_OUT:
        _err(f"Stopped following after {args.wait_timeout:g} s; the receiver carries on with "
             f"the rebalance (`swarmguard status` shows it).")
    elif outcome == follow.VANISHED:
        _err("The receiver no longer reports the rebalance (restarted?); `swarmguard status` "
             "shows where the tasks are.")
    else:
        _err(f"The rebalance ended {outcome}, not finished.")
    return EXIT_FAILED


def run_status(client: Client, args: argparse.Namespace) -> int:
    answer = client.status()
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(render.status_screen(answer, datetime.now(timezone.utc)))
    return EXIT_OK


COMMANDS: Mapping[str, Callable[[Client, argparse.Namespace], int]] = {
    "drain": run_drain, "undrain": run_undrain, "rebalance": run_rebalance,
    "status": run_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error, already printed (2)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    flags = {name: getattr(args, name) for name in ("url", "token_file") if hasattr(args, name)}
    try:
        connection = load_connection(flags, os.environ)
        token = read_token(connection)
    except ConfigError as error:
        _err(f"swarmguard: {error}")
        return EXIT_USAGE
    client = Client(connection.url, token, getattr(args, "timeout", TIMEOUT_SECONDS))
    try:
        return COMMANDS[args.command](client, args)
    except TokenRefused as error:
        _err(f"swarmguard: {error}")
        return EXIT_USAGE
    except Refused as error:
        _err(f"swarmguard: the receiver refused: {error}")
        return EXIT_FAILED
    except Unreachable as error:
        _err(f"swarmguard: {error}")
        return EXIT_UNREACHABLE
    except (KeyError, TypeError, AttributeError) as error:
        # An answer shaped otherwise than the API (an older or newer receiver): a
        # sentence, not a traceback.
        _err(f"swarmguard: the receiver's answer does not follow the maintenance API "
             f"({type(error).__name__}: {error})")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print()
        _err("Interrupted; what the receiver started goes on (`swarmguard status` shows it).")
        return EXIT_INTERRUPTED


def _screen() -> follow.Screen:
    return follow.Screen(sys.stdout, sys.stdout.isatty())


def _err(text: str) -> None:
    print(text, file=sys.stderr)
