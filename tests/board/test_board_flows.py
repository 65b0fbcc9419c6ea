"""The board's job page and API show a job's parents and children with their states."""

from __future__ import annotations

from polyjobs import FlowProducer
from polyjobs.backend import Backend
from tests.board.conftest import ClientFactory, Seeder


async def test_job_page_links_parents_and_children(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    flow = await FlowProducer(backend).add(
        {
            "name": "digest",
            "queue": "reports",
            "children": [{"name": "send", "queue": "emails", "data": {"to": "c@example.com"}}],
        }
    )
    parent, child = flow.job.id, flow.children[0].job.id
    client = await make_client()
    shown = (await client.get(f"/api/queues/reports/jobs/{parent}")).json()
    assert shown["state"] == "waiting-children"
    assert shown["children"] == [{"queue": "emails", "id": child, "state": "waiting"}]
    assert shown["parents"] == []
    as_child = (await client.get(f"/api/queues/emails/jobs/{child}")).json()
    assert as_child["parents"] == [{"queue": "reports", "id": parent, "state": "waiting-children"}]
    page = await client.get(f"/admin/queues/reports/jobs/{parent}")
    assert page.status_code == 200
    assert f'href="/admin/queues/emails/jobs/{child}"' in page.text
    assert 'id="job-children"' in page.text and 'id="job-parents"' not in page.text
    child_page = await client.get(f"/admin/queues/emails/jobs/{child}")
    assert f'href="/admin/queues/reports/jobs/{parent}"' in child_page.text
    rows = {r["queue"]: r for r in (await client.get("/api/queues")).json()["queues"]}
    assert rows["reports"]["waiting_children"] == 1
    overview = await client.get("/admin/queues")
    assert 'data-state="waiting-children"' in overview.text
