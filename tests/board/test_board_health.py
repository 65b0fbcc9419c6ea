"""The board's overview shows the verdict of ``polyjobs health`` (``polyjobs.health``)."""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from polyjobs.backend import Backend, WorkerInfo

if TYPE_CHECKING:
    from tests.board.conftest import ClientFactory, Seeder


async def test_overview_shows_the_health_verdict(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()  # emails and reports have waiting jobs and no worker
    client = await make_client()
    page = html.unescape((await client.get("/admin/queues")).text)
    assert '<p id="health" class="bad">Health: UNHEALTHY: queue emails workers: no live worker' in (
        page
    )
    for queue in ("emails", "reports"):
        info = WorkerInfo("w", queue, "h", 1, 1, started=time.time(), fetched=time.time())
        await backend.heartbeat(info, ttl=30)
    page = (await client.get("/admin/queues")).text
    assert '<p id="health" class="ok">Health: healthy (2 queues checked)</p>' in page
