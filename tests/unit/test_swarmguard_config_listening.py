"""What a gunicorn bind address may be (swarmguard_config/listening.py): host:port, a unix
socket or an inherited descriptor; anything else is refused with the reason."""

import pytest

from swarmguard_config import listen_address


@pytest.mark.parametrize("address", [
    "0.0.0.0:8000", "127.0.0.1:0", "[::1]:8080", "receiver:65535", "unix:/run/receiver.sock",
    "fd://3",
])
def test_gunicorn_s_forms_of_address_are_taken(address):
    listen_address(address)


@pytest.mark.parametrize("address, why", [
    ("0.0.0.0", "is not host:port"),  # gunicorn's port 8000 would escape the health check
    (":8000", "is not host:port"),
    ("0.0.0.0:http", "is not host:port"),
    ("0.0.0.0:65536", "is not host:port"),
    ("unix:", "names no socket path"),
    ("fd://three", "names no file descriptor"),
])
def test_anything_else_is_refused_with_the_reason(address, why):
    with pytest.raises(ValueError, match=why):
        listen_address(address)
