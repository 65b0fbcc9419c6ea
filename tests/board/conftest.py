"""Fixtures of the board tests: a backend per kind, seeded queues, an httpx client on the app,
``polyjobs board`` in a subprocess. Test modules import nothing from here at run time (only
types, under TYPE_CHECKING): everything is a fixture."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from polyjobs import InvalidArgumentError, Job, Queue, QueueSpec, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.board import BoardOptions, create_app

SECRET = "hunter2-s3cr3t"
TOKEN = "a-board-token-of-some-length"


def require_to(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("to"), str):
        raise InvalidArgumentError('emails needs {"to": "..."}')


async def send(job: Job) -> dict[str, Any]:
    await job.log(f"sending to {job.data.get('to')} via redis://mail:{SECRET}@smtp/0")
    await job.update_progress(50)
    if job.data.get("fail"):
        raise RuntimeError(f"smtp refused redis://mail:{SECRET}@smtp/0")
    return {"sent": True}


EMAILS = QueueSpec("emails", send, short_name="mail", validate=require_to)


def redis_available() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The board on each kind of backend; Redis under a prefix of its own, removed after."""
    prefix = f"boardtest-{uuid.uuid4().hex[:8]}"
    if request.param == "redis" and not redis_available():
        if os.environ.get("CI"):
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (CI requires it)")
        pytest.skip("no Redis on 127.0.0.1:6379")
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'board.db'}",
        "redis": f"redis://127.0.0.1:6379/0?prefix={prefix}",
    }[request.param]
    try:
        async with open_backend(url) as opened:
            yield opened
    finally:
        if request.param == "redis":
            client = redis.Redis(host="127.0.0.1", port=6379)
            keys = list(client.scan_iter(f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


async def seed_jobs(backend: Backend) -> dict[str, str]:
    """emails: 1 completed, 1 failed (with logs), 1 delayed, 1 waiting; reports: 1 waiting."""
    queue = Queue("emails", backend)
    done = await queue.add("send", {"to": "ada@example.com", "password": SECRET})
    failed = await queue.add("send", {"to": "bob@example.com", "fail": True}, attempts=1)
    await Worker("emails", send, backend).run(burst=True)
    delayed = await queue.add("send", {"to": "later@example.com"}, delay=3600)
    waiting = await queue.add("send", {"to": "now@example.com"})
    await Queue("reports", backend).add("build", {"day": "2026-11-29"})
    return {"completed": done.id, "failed": failed.id, "delayed": delayed.id, "waiting": waiting.id}


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]
Seeder = Callable[[], Awaitable[dict[str, str]]]
CsrfOf = Callable[[httpx.AsyncClient], Awaitable[str]]


@pytest.fixture
def secret() -> str:
    """The secret hidden in the seeded jobs' data, logs and errors."""
    return SECRET


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def emails_spec() -> QueueSpec:
    return EMAILS


@pytest.fixture
def seed(backend: Backend) -> Seeder:
    """``await seed()``: emails (1 completed, 1 failed, 1 delayed, 1 waiting), reports (1
    waiting); returns the emails job ids by state."""

    async def run() -> dict[str, str]:
        return await seed_jobs(backend)

    return run


@pytest.fixture
async def make_client(backend: Backend) -> AsyncIterator[ClientFactory]:
    """``await make_client(**BoardOptions fields)``: a client on a new app over ``backend``."""
    clients: list[httpx.AsyncClient] = []

    async def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("specs", {"emails": EMAILS})
        app = create_app(backend, BoardOptions(**options))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def csrf_of() -> CsrfOf:
    """``await csrf_of(client)``: start a session (its cookie stays in the client) and return
    its CSRF token."""

    async def get(client: httpx.AsyncClient) -> str:
        answer = await client.get("/api/session")
        assert answer.status_code == 200, answer.text
        csrf: str = answer.json()["csrf"]
        return csrf

    return get


# -- `polyjobs board` in a subprocess ----------------------------------------------------
POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
URL_RE = re.compile(r"polyjobs board on (http://\S+)/admin/queues")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment minus every polyjobs setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in ("REDIS_URL",)
    }
    return {**env, **extra}


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYJOBS, *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def board_process(
    env: Mapping[str, str], *args: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``polyjobs board --port 0 ARGS``; yields its base URL once it answers."""
    proc = subprocess.Popen(
        [POLYJOBS, "board", "--port", "0", *args],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = URL_RE.search(line)
        assert found, f"polyjobs board did not start: {line}{proc.stderr.read()}"
        base = found.group(1)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/static/board.css", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "board never answered"
                time.sleep(0.05)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


class BoardCli:
    """What the CLI and browser tests use: a clean environment, runs and served boards."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env({"POLYJOBS_HOME": str(self.home), **extra})

    def create_database(self) -> None:
        """Create the state directory's default database (as `polyjobs start` would): a
        board, like every look-up, refuses a database that does not exist."""

        async def create() -> None:
            async with open_backend(f"sqlite:///{self.home}/polyjobs.db"):
                pass

        asyncio.run(create())

    run = staticmethod(run_cli)
    serve = staticmethod(board_process)


@pytest.fixture
def board_cli(tmp_path: Path) -> BoardCli:
    return BoardCli(tmp_path / "state")
