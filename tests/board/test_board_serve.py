"""``serve_board`` as a task in a running event loop (what ``polyjobs start --board`` does)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from polyjobs import ConfigError, QueueSpec
from polyjobs.backend import Backend
from polyjobs.board import BoardOptions, bind_socket, serve_board

if TYPE_CHECKING:
    from tests.board.conftest import Seeder


async def test_serve_board_as_a_task_until_cancelled(
    backend: Backend, seed: Seeder, emails_spec: QueueSpec
) -> None:
    await seed()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    started = asyncio.Event()
    options = BoardOptions(specs={"emails": emails_spec}, sample_interval=0.05)
    task = asyncio.create_task(
        serve_board(backend, "127.0.0.1", port, options, sock=sock, started=started)
    )
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            page = await client.get("/admin/queues")
            assert page.status_code == 200 and 'data-queue="emails"' in page.text
            # the app's lifespan samples throughput in the background
            for _ in range(100):
                history = (await client.get("/api/throughput")).json()
                if len(history["queues"].get("emails", [])) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert len(history["queues"]["emails"]) >= 2
            # loopback without a token: a rebound DNS name is not served
            rebound = await client.get("/api/queues", headers={"Host": "evil.example"})
            assert rebound.status_code == 400
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()


async def test_serve_board_refuses_an_open_bind_without_a_token(backend: Backend) -> None:
    with pytest.raises(ConfigError, match="without a token"):
        await serve_board(backend, "0.0.0.0", 0)


async def test_a_taken_port_is_one_clear_error() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"cannot serve the board on 127\.0\.0\.1"):
            bind_socket("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
