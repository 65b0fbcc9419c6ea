"""The listening TCP socket of a server polyjobs runs (the board, the metrics endpoint)."""

from __future__ import annotations

import socket

from polyjobs.errors import ConfigError


def listening_socket(host: str, port: int, what: str, backlog: int = 128) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (port 0: any free port) for ``what``
    (e.g. "the board"); one-line ``ConfigError`` when the address cannot be had (taken, not
    this machine's, unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {exc.strerror}") from None
    return sock
