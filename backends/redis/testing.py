"""Test support for the Redis backend: a reachability check that fails (not skips) in CI, and a
redis-server that a test starts, kills and restarts itself."""

from __future__ import annotations

import asyncio
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


def spare_port(cluster: bool = False) -> int:
    """A TCP port nothing listens on right now (with ``cluster``, nor on port + 10000, the
    cluster bus)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
                return port
    raise RuntimeError("no spare port for a Redis Cluster node")


class RedisServer:
    """A ``redis-server`` a test starts, kills and restarts on a spare port.

    ``persist`` turns on the append-only file with an fsync per write, so that data survives
    ``kill()`` + ``start()``; otherwise nothing is saved. ``unix_socket`` also listens on a
    socket file in ``directory``; ``tls`` serves TLS only (a self-signed certificate made with
    ``openssl``); ``password`` requires it (``requirepass``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        persist: bool = False,
        unix_socket: bool = False,
        tls: bool = False,
        password: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.directory = directory
        self.extra_args = list(extra_args or ())
        self.port = spare_port(cluster="--cluster-enabled" in self.extra_args)
        self.persist = persist
        self.socket_path = directory / "redis.sock" if unix_socket else None
        self.tls = tls
        self.password = password
        self.cert = directory / "cert.pem"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}localhost:{self.port}/0?ssl_ca_certs={self.cert}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _tls_args(self) -> list[str]:
        key = self.directory / "key.pem"
        if not self.cert.exists():
            command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            command += ["-keyout", str(key), "-out", str(self.cert), "-subj", "/CN=localhost"]
            command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
            subprocess.run(command, check=True, capture_output=True)
        args = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
        args += ["--tls-cert-file", str(self.cert), "--tls-key-file", str(key)]
        args += ["--tls-ca-cert-file", str(self.cert)]
        return args

    def start(self, timeout: float = 5.0) -> None:
        args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
        args += ["--dir", str(self.directory)]
        args += self._tls_args() if self.tls else ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
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
                client = self.client()
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save) and wait for it to exit."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None

    def client(self) -> redis.Redis:
        """A plain (synchronous) client of this server."""
        client: redis.Redis = redis.Redis.from_url(
            self.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=0.5
        )
        return client


class ReplyDroppingProxy:
    """A TCP proxy in front of a Redis server that can lose replies: while ``drop`` is set, a
    connection that receives a reply from the server is cut before the reply is passed on (the
    server did run the command; its client never hears of it)."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.drop = False
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self.drop:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


class RedisClusterServers:
    """A three-primary Redis Cluster on spare ports, made by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, nodes: int = 3) -> None:
        self.servers = []
        for i in range(nodes):
            folder = directory / f"node{i}"
            folder.mkdir(parents=True, exist_ok=True)
            args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "2000"]
            self.servers.append(RedisServer(folder, extra_args=args))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0?cluster=true"

    def start(self, timeout: float = 10.0) -> None:
        """Start every node and create the cluster; on failure no node is left running."""
        try:
            self._start(timeout)
        except BaseException:
            self.kill()
            raise

    def _start(self, timeout: float) -> None:
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        create = ["redis-cli", "--cluster", "create", *addresses]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for server in self.servers:
                client = server.client()
                try:
                    states.append(client.cluster("info").get("cluster_state"))
                finally:
                    client.close()
            if all(state == "ok" for state in states):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not become ready")

    def kill(self) -> None:
        for server in self.servers:
            server.kill()
