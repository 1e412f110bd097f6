"""The lab's network: one host bridge, a namespace per node, veth pairs, forwarding rules.

Node traffic stays inside the lab subnet: a REJECT rule makes any attempt to reach an
outside address fail at once (registry look-ups would otherwise hang ~15 s per task).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from ..config import LabConfig, Node
from .system import in_netns, output, run, say


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def _forward_rules(cfg: LabConfig) -> list[list[str]]:
    c = ["-m", "comment", "--comment", cfg.iptables_comment]
    return [
        # dockerd sets FORWARD to DROP in its namespace and the bridge is netfiltered:
        # node-to-node traffic (gossip, VXLAN) must be let through explicitly.
        ["-i", cfg.bridge, "-o", cfg.bridge, "-j", "ACCEPT", *c],
        ["-s", cfg.subnet, "!", "-d", cfg.subnet, "-j", "REJECT", *c],
    ]


def up(cfg: LabConfig) -> None:
    if not _link_exists(cfg.bridge):
        say(f"creating bridge {cfg.bridge} ({cfg.bridge_ip}/{cfg.prefix_len})")
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{cfg.bridge_ip}/{cfg.prefix_len}", "dev", cfg.bridge])
    run(["ip", "link", "set", cfg.bridge, "up"])
    for node in cfg.nodes:
        _node_up(cfg, node)
    _remember_sysctl(cfg, "net.ipv4.ip_forward")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    for rule in _forward_rules(cfg):
        if subprocess.run(["iptables", "-C", "FORWARD", *rule], capture_output=True).returncode:
            run(["iptables", "-I", "FORWARD", *rule])


def _node_up(cfg: LabConfig, node: Node) -> None:
    if not _netns_exists(node.netns):
        say(f"creating namespace {node.netns} ({node.ip})")
        run(["ip", "netns", "add", node.netns])
    if not _link_exists(node.host_veth):
        run(["ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0",
             "netns", node.netns])
    run(["ip", "link", "set", node.host_veth, "master", cfg.bridge, "up"])
    addrs = output(in_netns(node.netns, ["ip", "-o", "addr", "show", "dev", "eth0"]))
    if node.ip not in addrs:
        run(in_netns(node.netns, ["ip", "addr", "add", f"{node.ip}/{cfg.prefix_len}", "dev", "eth0"]))
    run(in_netns(node.netns, ["ip", "link", "set", "lo", "up"]))
    run(in_netns(node.netns, ["ip", "link", "set", "eth0", "up"]))
    run(in_netns(node.netns, ["ip", "route", "replace", "default", "via", cfg.bridge_ip]))


def _remember_sysctl(cfg: LabConfig, key: str) -> None:
    saved = cfg.state_dir / f"sysctl.{key}"
    if not saved.exists():
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(output(["sysctl", "-n", key]))


def down(cfg: LabConfig) -> None:
    for rule in _forward_rules(cfg):
        while subprocess.run(["iptables", "-D", "FORWARD", *rule], capture_output=True).returncode == 0:
            pass
    for node in cfg.nodes:
        if _link_exists(node.host_veth):
            run(["ip", "link", "del", node.host_veth], check=False)
        if _netns_exists(node.netns):
            say(f"removing namespace {node.netns}")
            run(["ip", "netns", "del", node.netns], check=False)
    if _link_exists(cfg.bridge):
        say(f"removing bridge {cfg.bridge}")
        run(["ip", "link", "del", cfg.bridge], check=False)
    saved = cfg.state_dir / "sysctl.net.ipv4.ip_forward"
    if saved.exists():
        run(["sysctl", "-qw", f"net.ipv4.ip_forward={saved.read_text().strip()}"], check=False)
        saved.unlink()


def healthy(cfg: LabConfig) -> bool:
    return _link_exists(cfg.bridge) and all(_netns_exists(n.netns) for n in cfg.nodes)
