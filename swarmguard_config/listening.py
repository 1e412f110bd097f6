"""What a gunicorn `bind` setting may hold, checked at start for the receiver and the
stress app alike (their SWARMGUARD_BIND and STRESS_BIND)."""
from __future__ import annotations

UNIX_PREFIX = "unix:"
FD_PREFIX = "fd://"


def listen_address(text: str) -> None:
    """Raise ValueError unless `text` is host:port (port 0-65535, 0: any free port),
    unix:PATH or fd://N. gunicorn takes a bare host too, on port 8000; refused here, since
    the images' health checks read the port from the address."""
    if text.startswith(UNIX_PREFIX):
        if not text[len(UNIX_PREFIX):]:
            raise ValueError("names no socket path")
        return
    if text.startswith(FD_PREFIX):
        if not text[len(FD_PREFIX):].isdigit():
            raise ValueError("names no file descriptor")
        return
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("is not host:port (port 0-65535), unix:PATH or fd://N")
