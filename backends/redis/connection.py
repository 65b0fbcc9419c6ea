"""Redis connections: URL parsing, the clients, error translation, and the blocking wait.

Two clients per backend: one pool for ordinary commands and scripts, and one for blocking pops
(``BZPOPMIN`` on a queue's wake-up key). A blocking call that is cancelled or fails drops its
connection instead of returning it to the pool, so a half-read reply can never reach the next
caller. redis-py's own retries are off: a script that may have run must not run twice; the
worker's loops retry with backoff instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from polyjobs.backends.redis.keys import DEFAULT_PREFIX
from polyjobs.errors import BackendError, InvalidArgumentError
from polyjobs.redact import redact_text, redact_url

SCHEMES = ("redis", "rediss", "unix")
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
#: Extra time a blocking pop may take beyond its own timeout before the client gives up on it.
BLOCK_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A backend URL split into what redis-py connects to and polyjobs' own options."""

    url: str  # for redis-py (without polyjobs' query options)
    prefix: str
    redacted: str

    @classmethod
    def parse(cls, url: str) -> RedisUrl:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise InvalidArgumentError(
                f"not a Redis URL: {redact_url(url)!r} (expected redis://, rediss:// or unix://)"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = DEFAULT_PREFIX
        rest = []
        for name, value in query:
            if name == "prefix":
                prefix = value
            else:
                rest.append((name, value))
        if not prefix or any(c in prefix for c in "{} \n"):
            raise InvalidArgumentError(f"invalid key prefix {prefix!r} in {redact_url(url)!r}")
        clean = urlunsplit(parts._replace(query=urlencode(rest)))
        return cls(clean, prefix, redact_url(url))


def make_client(url: RedisUrl, *, blocking: bool) -> Redis:
    """A client for ``url``; a ``blocking`` one has no read timeout (its calls set their own)."""
    client: Redis = Redis.from_url(
        url.url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=None if blocking else COMMAND_TIMEOUT,
        client_name="polyjobs",
    )
    return client


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_text(text)


@contextmanager
def translate(redacted: str) -> Iterator[None]:
    """Turn redis-py and socket errors into ``BackendError`` naming the (redacted) URL."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendError(f"redis {redacted}: {one_line(exc)}") from exc


async def blocking_call(client: Redis, timeout: float, *command: str) -> Any:
    """Run a blocking command that gives up after ``timeout`` seconds (``BZPOPMIN``,
    ``XREAD BLOCK``) on a connection of ``client``'s pool; the connection is dropped if the
    call does not end normally (cancelled, timed out, failed)."""
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        async with asyncio.timeout(timeout + BLOCK_MARGIN):
            await conn.send_command(*command)
            return await conn.read_response()
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
