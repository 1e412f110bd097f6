"""Where the network stress sends its UDP datagrams.

The point of the network stress is to move the container's own interface counters, so
the exporter sees "network %" rise. Sending UDP does that for tx on this container, and
for rx on whatever receives it (interface counters count a datagram even when no socket
listens on its port). Choice of sink, in order:

1. the request's `target` ("host:port"): another task (its rx moves too) or a sink the
   lab provides;
2. STRESS_NETWORK_SINK, set by the operator in the stack;
3. the container's own default gateway, on the discard port. In Swarm that is the
   node's docker_gwbridge address: the datagrams leave through the container's
   interface (tx moves) and are dropped by the node itself, so they never leave the
   node. ICMP "port unreachable" replies are rate-limited by the kernel and ignored
   (the sender's socket is unconnected, so it does not even see them).

No address is hard-coded: the traffic goes only where the operator or the requester
pointed it, or to the node this task runs on.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass


class SinkError(ValueError):
    """The sink cannot be used; the message says why (it becomes a 400's reason)."""


@dataclass(frozen=True)
class Sink:
    host: str
    port: int
    source: str  # "request", "environment" or "default gateway"

    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_sink(text: str, source: str = "request") -> Sink:
    """'host:port' or '[v6addr]:port' -> Sink; raises SinkError with the reason."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise SinkError(f"sink {text!r} must look like [address]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise SinkError(f"sink {text!r} must look like host:port")
        if ":" in host:
            raise SinkError(f"sink {text!r}: write IPv6 addresses as [address]:port")
    if not host:
        raise SinkError(f"sink {text!r} has no host")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SinkError(f"sink {text!r} needs a port between 1 and 65535")
    return Sink(host=host, port=int(port_text), source=source)


def parse_default_gateway(route_table: str) -> str | None:
    """The IPv4 default gateway from the text of /proc/net/route, or None.

    Columns: Iface Destination Gateway Flags ...; addresses are little-endian hex.
    """
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        destination, gateway, flags = fields[1], fields[2], fields[3]
        try:
            is_up_gateway = int(flags, 16) & 0x3 == 0x3  # RTF_UP | RTF_GATEWAY
            if destination != "00000000" or not is_up_gateway:
                continue
            return str(ipaddress.IPv4Address(struct.pack("<I", int(gateway, 16))))
        except ValueError:
            continue
    return None


def choose_sink(
    requested: str | None,
    configured: str | None,
    route_table: str | None,
    default_port: int,
) -> Sink:
    """Apply the order described in the module docstring."""
    if requested:
        return parse_sink(requested, "request")
    if configured:
        return parse_sink(configured, "environment")
    gateway = parse_default_gateway(route_table or "")
    if gateway is None:
        raise SinkError(
            "no network sink: pass target=host:port or set STRESS_NETWORK_SINK "
            "(this container has no IPv4 default gateway to fall back on)"
        )
    return Sink(host=gateway, port=default_port, source="default gateway")


def resolve(sink: Sink) -> tuple[int, tuple]:
    """Sink -> (address family, sockaddr) for sendto; SinkError when it does not resolve.

    Resolved once, in the app, so a bad name is a 400 now rather than a silent failure
    inside a background process.
    """
    try:
        infos = socket.getaddrinfo(sink.host, sink.port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SinkError(f"sink host {sink.host!r} does not resolve: {exc}") from None
    if not infos:
        raise SinkError(f"sink host {sink.host!r} does not resolve")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr
