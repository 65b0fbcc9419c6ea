"""Serve a backend on a local Unix socket, so that other processes of the same user reach it.

``polyjobs start --backend memory://`` keeps its jobs in its own memory; it serves that
backend at ``<state dir>/polyjobs.sock`` and every other command (``enqueue``, ``stats``,
``jobs``, ``queue``, the board) acts on the running instance through the ``socket://``
backend. The protocol is :mod:`polyjobs.wire`: one JSON request per line, one JSON reply per
line, matched by id; every request runs as its own task, so a blocking ``fetch`` holds up
nothing else.

Only the owner may connect: the socket file is created owner-only (mode 0600) and, where the
platform tells (``SO_PEERCRED`` on Linux), a connection from another user is closed unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyjobs import wire
from polyjobs.errors import ConfigError, PolyjobsError

if TYPE_CHECKING:
    from polyjobs.backend import Backend

log = logging.getLogger(__name__)

SOCKET_FILE = "polyjobs.sock"
SCHEME = "socket"
#: Longest line accepted (a job's data is at most 512 KiB of JSON by default).
MAX_LINE = 16 * 1024 * 1024
#: The longest path a Unix socket can have on Linux (108 bytes with the final NUL).
MAX_PATH = 107
HELLO = "hello"


def socket_path(home: Path) -> Path:
    """Where a ``polyjobs start`` serving its backend listens, in the state directory."""
    return Path(home).absolute() / SOCKET_FILE


def socket_url(path: Path) -> str:
    """The ``socket://`` URL of the backend served at ``path``."""
    return f"{SCHEME}://{Path(path).absolute()}"


def _check_length(path: Path) -> None:
    if len(os.fsencode(str(path))) > MAX_PATH:
        raise ConfigError(
            f"the state directory {path.parent} is too long a path for a local socket "
            f"({MAX_PATH} bytes at most); set POLYJOBS_HOME to a shorter directory"
        )


def _peer_is_owner(sock: socket.socket | None) -> bool:
    """Whether the connecting process runs as this user (True where that cannot be told)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


class BackendServer:
    """Answers :mod:`polyjobs.wire` requests against one open backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.writers: set[asyncio.StreamWriter] = set()

    async def call(self, method: str, raw_args: Any) -> Any:
        if method == HELLO:
            return {
                "capabilities": sorted(self.backend.capabilities),
                "methods": sorted(n for n in wire.SIGNATURES if hasattr(self.backend, n)),
            }
        args = wire.decode_args(method, raw_args)
        function = getattr(self.backend, method, None)
        if function is None:
            raise ConfigError(f"the served backend has no method {method!r}")
        return await function(*args)

    async def _answer(self, message: Any, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        call_id = message.get("id") if isinstance(message, dict) else None
        try:
            if not isinstance(message, dict) or not isinstance(message.get("method"), str):
                raise ConfigError("a request must be an object with a method")
            result = await self.call(message["method"], message.get("args", []))
            line = wire.reply(call_id, result)
        except PolyjobsError as exc:
            line = wire.reply(call_id, error=exc)
        except Exception as exc:
            log.exception("served backend call %r failed", message.get("method"))
            line = wire.reply(call_id, error=exc)
        async with lock:
            writer.write(line)
            await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _peer_is_owner(writer.get_extra_info("socket")):
            log.warning("refused a connection to the served backend from another user")
            writer.close()
            return
        lock = asyncio.Lock()
        calls: set[asyncio.Task[None]] = set()
        self.writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    log.warning("a request to the served backend was over %d bytes", MAX_LINE)
                    break
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    break
                task = asyncio.create_task(self._answer(message, writer, lock))
                calls.add(task)
                task.add_done_callback(calls.discard)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in calls:
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


@asynccontextmanager
async def serve_backend(backend: Backend, path: Path) -> AsyncIterator[Path]:
    """Serve the open ``backend`` at the Unix socket ``path`` (owner-only) until the block
    ends; a stale socket file (no process behind it) is replaced."""
    path = Path(path).absolute()
    _check_length(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if await _answers(path):
            raise ConfigError(f"another polyjobs process already serves {path}")
        path.unlink()
    server_impl = BackendServer(backend)
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(server_impl.handle, path, limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    try:
        yield path
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        for writer in list(server_impl.writers):
            writer.close()
        await server.wait_closed()


async def _answers(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
