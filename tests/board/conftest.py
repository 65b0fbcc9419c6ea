"""Fixtures of the board tests: a backend per kind, seeded queues, an httpx client on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

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


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'board.db'}"
    async with open_backend(url) as opened:
        yield opened


async def seed(backend: Backend) -> dict[str, str]:
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


async def csrf_of(client: httpx.AsyncClient) -> str:
    """Start a session (its cookie stays in the client) and return its CSRF token."""
    answer = await client.get("/api/session")
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrf"]
    return token
