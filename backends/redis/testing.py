"""Test support for the Redis backend: a reachability check that fails (not skips) in CI, and a
redis-server that a test starts, kills and restarts itself."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from polyjobs.backends.redis.connection import RedisUrl
from polyjobs.redact import redact_url


def require_redis(url: str) -> None:
    """Skip the calling test when Redis at ``url`` does not answer, or fail it when the
    ``CI`` environment variable is set (CI never skips the Redis tests)."""
    try:
        client = redis.Redis.from_url(
            RedisUrl.parse(url).url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis at {redact_url(url)} does not answer: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def spare_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` a test starts, kills and restarts on a spare port.

    ``persist`` turns on the append-only file with an fsync per write, so that data survives
    ``kill()`` + ``start()``; otherwise nothing is saved. ``unix_socket`` also listens on a
    socket file in ``directory``.
    """

    def __init__(self, directory: Path, *, persist: bool = False, unix_socket: bool = False):
        self.directory = directory
        self.port = spare_port()
        self.persist = persist
        self.socket_path = directory / "redis.sock" if unix_socket else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--dir", str(self.directory), "--daemonize", "no"]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.socket_path is not None:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        log = (self.directory / "redis.log").open("ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save) and wait for it to exit."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)
