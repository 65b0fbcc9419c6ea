"""The one listening-socket helper the board and the metrics endpoint share."""

from __future__ import annotations

import socket

import pytest

from polyjobs.errors import ConfigError
from polyjobs.listen import listening_socket
from polyjobs.prometheus import bind


def test_a_taken_port_is_one_line_naming_what_would_have_been_served() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=rf"^cannot serve metrics on 127\.0\.0\.1:{port}: "):
            bind("127.0.0.1", port)
        with pytest.raises(ConfigError, match=r"^cannot serve the board on "):
            listening_socket("127.0.0.1", port, "the board")
    finally:
        taken.close()


def test_port_zero_listens_on_a_free_port_without_blocking() -> None:
    sock = listening_socket("127.0.0.1", 0, "the board")
    try:
        assert sock.getsockname()[1] > 0
        assert sock.getblocking() is False
        client = socket.create_connection(sock.getsockname()[:2], timeout=2)
        client.close()
    finally:
        sock.close()
