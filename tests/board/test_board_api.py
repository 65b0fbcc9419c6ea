"""The board's JSON API and pages against the ASGI app, on memory:// and sqlite."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from polyjobs import Job, Queue, QueueSpec, Worker
from polyjobs.backend import Backend, NewJob
from polyjobs.board.sampler import sparkline
from polyjobs.testing import wait_until

if TYPE_CHECKING:
    from tests.board.conftest import ClientFactory, CsrfOf, Seeder


async def test_overview_lists_every_queue_with_counts(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    client = await make_client()
    rows = {r["queue"]: r for r in (await client.get("/api/queues")).json()["queues"]}
    assert list(rows) == ["emails", "reports"]  # registered first, then the backend's others
    emails = rows["emails"]
    assert (emails["waiting"], emails["delayed"], emails["completed"], emails["failed"]) == (
        1,
        1,
        1,
        1,
    )
    assert emails["registered"] and not rows["reports"]["registered"]
    assert emails["completed_last_minute"] == 1 and emails["paused"] is False

    page = await client.get("/admin/queues")
    assert page.status_code == 200
    assert 'data-queue="emails"' in page.text and 'data-queue="reports"' in page.text
    assert "<svg" in page.text


async def test_jobs_by_state_with_paging(backend: Backend, make_client: ClientFactory) -> None:
    queue = Queue("bulk", backend)
    await queue.add_bulk([("job", {"n": i}) for i in range(45)])
    client = await make_client(page_size=20)
    first = (await client.get("/api/queues/bulk/jobs?state=waiting&start=0&limit=20")).json()
    assert first["total"] == 45 and len(first["jobs"]) == 20
    last = (await client.get("/api/queues/bulk/jobs?state=waiting&start=40&limit=20")).json()
    assert [j["data"]["n"] for j in last["jobs"]] == [40, 41, 42, 43, 44]

    page3 = await client.get("/admin/queues/bulk?state=waiting&page=3")
    assert "page 3 of 3" in page3.text
    assert page3.text.count('<tr data-job="') == 5
    assert (await client.get("/api/queues/bulk/jobs?state=nope")).status_code == 400
    assert (await client.get("/api/queues/bulk/jobs?start=x")).status_code == 400


async def test_search_by_id_opens_the_job_or_says_it_is_missing(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    ids = await seed()
    client = await make_client()
    found = await client.get(f"/admin/queues/emails?id={ids['failed']}")
    assert found.status_code == 303
    assert found.headers["location"] == f"/admin/queues/emails/jobs/{ids['failed']}"
    missing = await client.get("/admin/queues/emails?id=999")
    assert missing.status_code == 200 and "No job 999 in emails" in missing.text


async def test_job_page_shows_everything_and_no_secret(
    backend: Backend, make_client: ClientFactory, seed: Seeder, secret: str
) -> None:
    ids = await seed()
    client = await make_client()
    job = (await client.get(f"/api/queues/emails/jobs/{ids['failed']}")).json()
    assert job["state"] == "failed" and job["attempts_made"] == 1 and job["progress"] == 50
    assert "smtp refused" in job["failed_reason"] and "RuntimeError" in job["stacktrace"]
    assert job["logs"] and job["duration"] is not None and job["finished_on"]
    done = (await client.get(f"/api/queues/emails/jobs/{ids['completed']}")).json()
    assert done["returnvalue"] == {"sent": True}
    assert done["data"]["password"] == "***"

    for path in (
        f"/admin/queues/emails/jobs/{ids['failed']}",
        f"/admin/queues/emails/jobs/{ids['completed']}",
        f"/api/queues/emails/jobs/{ids['failed']}",
        f"/api/queues/emails/jobs/{ids['completed']}",
        "/admin/queues/emails?state=failed",
        "/api/queues/emails/jobs?state=completed",
    ):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert secret not in answer.text, path
    page = await client.get(f"/admin/queues/emails/jobs/{ids['failed']}")
    assert "smtp refused redis://mail:***@smtp/0" in page.text
    assert 'id="retry"' in page.text


async def test_job_masks_real_secret_keys_and_secrets_in_text_only(
    backend: Backend, make_client: ClientFactory
) -> None:
    data = {
        "max_tokens": 512,
        "secretary": "Moneypenny",
        "apiKey": "k-123",
        "note": "called https://discord.com/api/v10/webhooks/1/tok-en_x with Bearer abc.def-123",
    }
    job = await Queue("misc", backend).add("job", data)
    client = await make_client()
    shown = (await client.get(f"/api/queues/misc/jobs/{job.id}")).json()["data"]
    assert shown == {
        "max_tokens": 512,
        "secretary": "Moneypenny",
        "apiKey": "***",
        "note": "called https://discord.com/api/v10/webhooks/1/*** with Bearer ***",
    }
    page = await client.get(f"/admin/queues/misc/jobs/{job.id}")
    assert "tok-en_x" not in page.text and "k-123" not in page.text
    assert "Moneypenny" in page.text


async def test_backend_label_is_redacted_in_pages(
    backend: Backend, make_client: ClientFactory, secret: str
) -> None:
    client = await make_client(backend_label=f"redis://user:{secret}@host:6379/0")
    page = await client.get("/admin/queues")
    assert secret not in page.text


async def test_unknown_queue_and_job_are_404(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    client = await make_client()
    assert (await client.get("/api/queues/nope")).status_code == 404
    assert (await client.get("/api/queues/emails/jobs/404")).json() == {
        "error": "job 404 not found in queue 'emails'"
    }
    page = await client.get("/admin/queues/emails/jobs/404")
    assert page.status_code == 404 and "not found" in page.text
    assert (await client.get("/no/such/page")).status_code == 404


async def test_retry_remove_promote(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    ids = await seed()
    client = await make_client()
    headers = {"X-CSRF-Token": await csrf_of(client)}
    base = "/api/queues/emails/jobs"
    retried = await client.post(f"{base}/{ids['failed']}/retry", headers=headers)
    assert retried.json() == {"queue": "emails", "id": ids["failed"], "done": "retry"}
    again = await client.post(f"{base}/{ids['failed']}/retry", headers=headers)
    assert again.status_code == 409 and "not failed" in again.json()["error"]
    promoted = await client.post(f"{base}/{ids['delayed']}/promote", headers=headers)
    assert promoted.status_code == 200
    removed = await client.post(f"{base}/{ids['completed']}/remove", headers=headers)
    assert removed.status_code == 200
    queue = Queue("emails", backend)
    counts = await queue.counts()
    assert (counts["waiting"], counts["delayed"], counts["completed"], counts["failed"]) == (
        3,
        0,
        0,
        0,
    )
    missing = await client.post(f"{base}/nope/remove", headers=headers)
    assert missing.status_code == 404


async def test_pause_resume_clean(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    await seed()
    client = await make_client()
    headers = {"X-CSRF-Token": await csrf_of(client)}
    assert (await client.post("/api/queues/emails/pause", headers=headers)).json()["paused"]
    assert (await client.get("/api/queues/emails")).json()["paused"] is True
    page = await client.get("/admin/queues/emails")
    assert 'id="resume"' in page.text and "paused" in page.text
    await client.post("/api/queues/emails/resume", headers=headers)
    assert not await Queue("emails", backend).is_paused()

    cleaned = await client.post(
        "/api/queues/emails/clean", headers=headers, json={"state": "completed", "grace": "0s"}
    )
    assert cleaned.json() == {"queue": "emails", "state": "completed", "removed": 1}
    active = await client.post(
        "/api/queues/emails/clean", headers=headers, json={"state": "active"}
    )
    assert active.status_code == 400


async def test_enqueue_validated_by_the_spec(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    client = await make_client()
    headers = {"X-CSRF-Token": await csrf_of(client)}
    added = await client.post(
        "/api/queues/emails/jobs",
        headers=headers,
        json={"name": "send", "data": {"to": "eve@example.com"}, "options": {"delay": "1h"}},
    )
    assert added.status_code == 201 and added.json()["state"] == "delayed"
    job = await Queue("emails", backend).get_job(added.json()["id"])
    assert job is not None and job.opts["attempts"] == 1
    refused = await client.post("/api/queues/emails/jobs", headers=headers, json={"data": {}})
    assert refused.status_code == 400 and "emails needs" in refused.json()["error"]
    bad = await client.post(
        "/api/queues/emails/jobs", headers=headers, json={"data": {"to": "x"}, "extra": 1}
    )
    assert bad.status_code == 400
    not_json = await client.post(
        "/api/queues/emails/jobs",
        headers={**headers, "content-type": "application/json"},
        content=b"{nope",
    )
    assert not_json.status_code == 400

    # the page's form: JSON in a text field, options as fields, answered by a redirect
    csrf = headers["X-CSRF-Token"]
    form = {"csrf": csrf, "name": "", "data": '{"to": "form@example.com"}', "priority": "2"}
    posted = await client.post("/admin/queues/reports/enqueue", data=form)
    assert posted.status_code == 303 and "done=enqueue" in posted.headers["location"]
    shown = await client.get(posted.headers["location"])
    assert "Job added." in shown.text and "form@example.com" in shown.text
    bad_form = await client.post("/admin/queues/reports/enqueue", data={**form, "data": "{x"})
    assert bad_form.status_code == 400 and "not valid JSON" in bad_form.text


async def test_page_actions_redirect_back(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    ids = await seed()
    client = await make_client()
    csrf = await csrf_of(client)
    retried = await client.post(
        f"/admin/queues/emails/jobs/{ids['failed']}/retry", data={"csrf": csrf, "back": "failed"}
    )
    assert retried.status_code == 303
    assert retried.headers["location"] == "/admin/queues/emails?state=failed&done=retry"
    listing = await client.get(retried.headers["location"])
    assert "Job sent back to waiting." in listing.text and 'id="no-jobs"' in listing.text
    paused = await client.post("/admin/queues/emails/pause", data={"csrf": csrf})
    assert paused.status_code == 303 and await Queue("emails", backend).is_paused()
    cleaned = await client.post(
        "/admin/queues/emails/clean", data={"csrf": csrf, "state": "delayed", "grace": "0"}
    )
    assert cleaned.status_code == 303 and (await Queue("emails", backend).counts())["delayed"] == 0


async def test_throughput_samples_make_a_chart(
    backend: Backend, make_client: ClientFactory, seed: Seeder, emails_spec: QueueSpec
) -> None:
    await seed()
    client = await make_client(history=3)
    app = client._transport.app  # type: ignore[attr-defined]
    sampler = app.state.sampler
    first = await sampler.sample()
    assert first.rates["emails"] == (1, 1)  # the first look: queue_stats' last minute
    for _ in range(4):
        await sampler.sample()
    history = (await client.get("/api/throughput")).json()
    assert len(history["queues"]["emails"]) == 3  # the ring buffer is bounded
    assert history["queues"]["emails"][-1]["completed"] == 0  # nothing finished since

    queue = Queue("emails", backend)
    await queue.clean("delayed")  # a burst worker would wait for it
    await queue.add_bulk([("send", {"to": f"{i}@example.com"}) for i in range(4)])
    await Worker("emails", emails_spec.processor, backend).run(burst=True)
    after = await sampler.sample()
    assert after.rates["emails"][0] > 0 and after.rates["emails"][1] == 0
    page = await client.get("/admin/queues")
    assert "<polyline" in page.text


@pytest.mark.parametrize("path", ["/", "/admin"])
async def test_root_goes_to_the_board(make_client: ClientFactory, path: str) -> None:
    client = await make_client()
    answer = await client.get(path)
    assert answer.status_code == 307 and answer.headers["location"] == "/admin/queues"


async def test_job_ids_with_slashes_are_reachable(
    backend: Backend, make_client: ClientFactory
) -> None:
    await Queue("odd", backend).add("x", {}, job_id="a/b")
    client = await make_client()
    assert (await client.get("/api/queues/odd/jobs/a/b")).json()["id"] == "a/b"
    page = await client.get("/admin/queues/odd?state=waiting")
    assert 'href="/admin/queues/odd/jobs/a%2Fb"' in page.text
    assert (await client.get("/admin/queues/odd/jobs/a%2Fb")).status_code == 200


async def test_queue_page_opens_on_the_first_state_with_jobs(
    backend: Backend, make_client: ClientFactory
) -> None:
    queue = Queue("states", backend)
    await queue.add("later", {}, delay=3600)
    client = await make_client()
    page = await client.get("/admin/queues/states")
    assert 'id="jobs" data-state="delayed"' in page.text
    await queue.add("now", {})
    page = await client.get("/admin/queues/states")
    assert 'id="jobs" data-state="waiting"' in page.text


def test_sparkline_holds_only_numbers() -> None:
    assert "no samples yet" in sparkline([])
    one = sparkline([(100.0, 5, 1)])
    assert one.count("<polyline") == 2 and "159.0," in one  # a level line across
    many = sparkline([(100.0, 5, 1), (110.0, 10, 0), (120.0, 0, 2)])
    assert 'aria-label="0 completed and 2 failed in the last minute; peak 10/min"' in many


async def test_enqueue_refuses_options_beyond_their_bounds(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    client = await make_client()
    headers = {"X-CSRF-Token": await csrf_of(client)}
    for options, message in (
        ({"delay": "99999999999999999999"}, "delay must be at most 10 years"),
        ({"delay": 99999999999999999999}, "delay must be at most 10 years"),
        ({"attempts": 99999999999999999999}, "attempts must be within 1..1000000"),
        ({"priority": "99999999999999999999"}, "priority must be within 0..2097152"),
        ({"attempts": 10**400}, "attempts must be within 1..1000000"),
        ({"priority": "1e400"}, "priority must be a whole number"),
    ):
        refused = await client.post(
            "/api/queues/reports/jobs", headers=headers, json={"data": {}, "options": options}
        )
        assert refused.status_code == 400 and message in refused.json()["error"], options
    form = {"csrf": headers["X-CSRF-Token"], "data": "{}", "delay": "99999999999999999999"}
    posted = await client.post("/admin/queues/reports/enqueue", data=form)
    assert posted.status_code == 400 and "delay must be at most 10 years" in posted.text
    assert (await Queue("reports", backend).counts())["delayed"] == 0


async def test_a_stored_delay_beyond_every_calendar_shows_and_can_be_removed(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    """A job stored before options had bounds (delay 10**20 s): its tab, its page and its
    answer show it, and it can be removed from its page."""
    opts = {"delay": 1e20, "attempts": 10**12, "timeout": 1e30, "priority": 0}
    new = NewJob("far", "{}", opts, timestamp=1.0, run_at=1e20)
    [added] = await backend.add("reports", [new])
    client = await make_client()
    tab = await client.get("/admin/queues/reports?state=delayed")
    assert tab.status_code == 200 and f'data-job="{added.id}"' in tab.text
    page = await client.get(f"/admin/queues/reports/jobs/{added.id}")
    assert page.status_code == 200 and "far future (1e+20)" in page.text
    assert (await client.get(f"/api/queues/reports/jobs/{added.id}")).json()["run_at"] == 1e20
    csrf = await csrf_of(client)
    removed = await client.post(
        f"/admin/queues/reports/jobs/{added.id}/remove", data={"csrf": csrf}
    )
    assert removed.status_code == 303
    assert await Queue("reports", backend).get_job(added.id) is None


async def test_job_values_show_as_readable_json_in_stored_order(
    backend: Backend, make_client: ClientFactory
) -> None:
    import html

    data = {"zeta": "héllo — 日本", "alpha": [1, 2]}
    job = await Queue("misc", backend).add("job", data)
    await job.update_progress({"step": "ünïcode", "done": 3})
    client = await make_client()
    page = html.unescape((await client.get(f"/admin/queues/misc/jobs/{job.id}")).text)
    assert '"zeta": "héllo — 日本"' in page and "\\u" not in page
    assert page.index('"zeta"') < page.index('"alpha"')
    assert '{"step": "ünïcode", "done": 3}' in page
    listing = html.unescape((await client.get("/admin/queues/misc?state=waiting")).text)
    assert '{"step": "ünïcode", "done": 3}' in listing


async def test_huge_page_and_start_are_an_empty_page(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    client = await make_client()
    huge = "9" * 40
    listed = await client.get(f"/api/queues/emails/jobs?state=waiting&start={huge}")
    assert listed.status_code == 200 and listed.json()["jobs"] == []
    page = await client.get(f"/admin/queues/emails?state=waiting&page={huge}")
    assert page.status_code == 200 and 'id="no-jobs"' in page.text
    digits = await client.get(f"/api/queues/emails/jobs?start={'9' * 5000}")
    assert digits.status_code == 400 and len(digits.json()["error"]) < 120


async def test_queue_names_with_a_slash_have_working_links(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    job = await Queue("team/emails", backend).add("job", {"n": 1})
    client = await make_client()
    overview = await client.get("/admin/queues")
    assert 'href="/admin/queues/team%2Femails"' in overview.text
    page = await client.get("/admin/queues/team%2Femails")
    assert page.status_code == 200 and f'data-job="{job.id}"' in page.text
    job_page = await client.get(f"/admin/queues/team%2Femails/jobs/{job.id}")
    assert job_page.status_code == 200
    api = await client.get("/api/queues/team%2Femails")
    assert api.status_code == 200 and api.json()["queue"] == "team/emails"
    headers = {"X-CSRF-Token": await csrf_of(client)}
    paused = await client.post("/api/queues/team%2Femails/pause", headers=headers)
    assert paused.status_code == 200 and await Queue("team/emails", backend).is_paused()


async def test_charts_come_from_the_stored_metrics_on_a_new_board(
    backend: Backend, make_client: ClientFactory, emails_spec: QueueSpec
) -> None:
    """Jobs run before the board starts (by another process, as far as it knows) are in its
    charts and its throughput API at once: the backend keeps the metrics."""
    queue = Queue("emails", backend)
    await queue.add_bulk([("send", {"to": f"{i}@example.com"}) for i in range(5)])
    await Worker("emails", emails_spec.processor, backend).run(burst=True)
    client = await make_client()  # a board that has taken no sample
    body = (await client.get("/api/throughput")).json()
    assert body["queues"] == {}  # its own samples: none yet
    stored = body["minutes"]["emails"]
    assert sum(m["completed"] for m in stored) == 5 and stored[-1]["time_sum"] >= 0
    page = await client.get("/admin/queues/emails")
    assert page.status_code == 200 and "<polyline" in page.text
    overview = await client.get("/admin/queues")
    assert "<polyline" in overview.text and "no samples yet" not in overview.text


async def test_cancel_from_the_board(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    """A waiting job fails at once with the board's reason; a running one is stopped by its
    worker; a finished one is refused with 409; the job page offers the button."""
    queue = Queue("cancels", backend)
    waiting = await queue.add("w", {})
    client = await make_client()
    page = await client.get(f"/admin/queues/cancels/jobs/{waiting.id}")
    assert 'id="cancel"' in page.text
    headers = {"X-CSRF-Token": await csrf_of(client)}
    done = await client.post(f"/api/queues/cancels/jobs/{waiting.id}/cancel", headers=headers)
    assert done.status_code == 200 and done.json()["done"] == "cancel"
    failed = await queue.get_job(waiting.id)
    assert failed is not None and failed.state == "failed"
    assert failed.failed_reason == "cancelled from the board"
    again = await client.post(f"/api/queues/cancels/jobs/{waiting.id}/cancel", headers=headers)
    assert again.status_code == 409

    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(30)

    running = await queue.add("r", {})
    worker = Worker("cancels", slow, backend, cancel_interval=0.1)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        answer = await client.post(f"/api/queues/cancels/jobs/{running.id}/cancel", headers=headers)
        assert answer.status_code == 200

        async def ended() -> bool:
            job = await queue.get_job(running.id)
            return job is not None and job.state == "failed"

        await wait_until(ended, what="the running job to be stopped")
    finally:
        await worker.close(grace=1)
        await task
