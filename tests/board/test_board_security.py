"""The board's security: token, login, sessions, CSRF, origin and host checks, read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from polyjobs import ConfigError, Queue
from polyjobs.backend import Backend
from polyjobs.board import BoardOptions, check_bind, is_loopback
from polyjobs.board.options import loopback_hosts

if TYPE_CHECKING:
    from tests.board.conftest import ClientFactory, CsrfOf, Seeder


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_a_token_or_insecure(token: str) -> None:
    check_bind("127.0.0.1", BoardOptions())
    with pytest.raises(ConfigError, match="POLYJOBS_BOARD_TOKEN"):
        check_bind("0.0.0.0", BoardOptions())
    check_bind("0.0.0.0", BoardOptions(token=token))
    check_bind("0.0.0.0", BoardOptions(insecure=True))
    with pytest.raises(ConfigError, match="at least 16"):
        BoardOptions(token="short")


def test_loopback_without_token_serves_loopback_host_names_only(token: str) -> None:
    assert loopback_hosts("127.0.0.1", BoardOptions()) == ("127.0.0.1", "localhost", "::1", "[::1]")
    assert loopback_hosts("127.0.0.1", BoardOptions(token=token)) is None
    assert loopback_hosts("0.0.0.0", BoardOptions(insecure=True)) is None


async def test_token_guards_every_route(
    backend: Backend, make_client: ClientFactory, seed: Seeder, token: str
) -> None:
    ids = await seed()
    client = await make_client(token=token)
    for path in ("/api/queues", "/metrics", f"/api/queues/emails/jobs/{ids['failed']}"):
        refused = await client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
    page = await client.get("/admin/queues/emails?state=failed")
    assert page.status_code == 303
    assert page.headers["location"] == "/admin/login?next=/admin/queues/emails%3Fstate%3Dfailed"
    posted = await client.post(f"/api/queues/emails/jobs/{ids['failed']}/retry")
    assert posted.status_code == 401
    assert (await client.get("/static/board.css")).status_code == 200  # public

    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/queues", headers=bearer)).status_code == 200
    assert (await client.get("/metrics", headers=bearer)).status_code == 200
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert (await client.get("/api/queues", headers=wrong)).status_code == 401
    # a Bearer request carries no ambient credential: no CSRF token needed
    retried = await client.post(f"/api/queues/emails/jobs/{ids['failed']}/retry", headers=bearer)
    assert retried.status_code == 200


async def test_login_form_sets_a_session_cookie(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf, token: str
) -> None:
    await seed()
    client = await make_client(token=token)
    form = await client.get("/admin/login?next=/admin/queues/emails")
    assert form.status_code == 200
    cookie = form.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]

    wrong = await client.post(
        "/admin/login?next=/admin/queues/emails", data={"csrf": csrf, "token": "nope"}
    )
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    no_csrf = await client.post("/admin/login", data={"token": token})
    assert no_csrf.status_code == 403
    signed_in = await client.post(
        "/admin/login?next=/admin/queues/emails", data={"csrf": csrf, "token": token}
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin/queues/emails"
    assert (await client.get("/admin/queues/emails")).status_code == 200
    assert (await client.get("/api/queues")).status_code == 200
    page = await client.get("/admin/queues")
    assert token not in page.text and "sign out" in page.text

    # the session was renewed at login: the old CSRF token is void, the new one works
    new_csrf = await csrf_of(client)
    assert new_csrf != csrf
    stale = await client.post("/api/queues/emails/pause", headers={"X-CSRF-Token": csrf})
    assert stale.status_code == 403
    ok = await client.post("/api/queues/emails/pause", headers={"X-CSRF-Token": new_csrf})
    assert ok.status_code == 200

    out = await client.post("/admin/logout", data={"csrf": new_csrf})
    assert out.status_code == 303
    assert (await client.get("/api/queues")).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_login_never_redirects_off_the_board(
    make_client: ClientFactory, target: str, token: str
) -> None:
    client = await make_client(token=token)
    csrf = (await client.get("/admin/login")).text.split('name="csrf" value="')[1].split('"')[0]
    answer = await client.post(f"/admin/login?next={target}", data={"csrf": csrf, "token": token})
    assert answer.headers["location"] == "/admin/queues"


async def test_a_forged_cookie_is_a_new_anonymous_session(
    make_client: ClientFactory, token: str
) -> None:
    client = await make_client(token=token)
    client.cookies.set("polyjobs_board", "abc.1.deadbeef")
    assert (await client.get("/api/queues")).status_code == 401


async def test_every_action_needs_the_csrf_token(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    ids = await seed()
    client = await make_client()
    await csrf_of(client)  # a session exists, but the token is not sent
    posts = [
        f"/api/queues/emails/jobs/{ids['failed']}/retry",
        f"/api/queues/emails/jobs/{ids['delayed']}/promote",
        f"/api/queues/emails/jobs/{ids['waiting']}/remove",
        "/api/queues/emails/pause",
        "/api/queues/emails/resume",
        "/api/queues/emails/clean",
        "/api/queues/emails/jobs",
        f"/admin/queues/emails/jobs/{ids['failed']}/retry",
        "/admin/queues/emails/pause",
        "/admin/queues/emails/clean",
        "/admin/queues/emails/enqueue",
    ]
    for path in posts:
        answer = await client.post(path, data={"csrf": "forged"})
        assert answer.status_code == 403, path
    counts = await Queue("emails", backend).counts()
    assert (counts["failed"], counts["delayed"], counts["waiting"], counts["paused"]) == (
        1,
        1,
        1,
        False,
    )
    # GET never acts
    assert (await client.get(f"/api/queues/emails/jobs/{ids['failed']}/retry")).status_code == 404


async def test_cross_site_posts_are_refused(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    await seed()
    client = await make_client()
    csrf = await csrf_of(client)
    headers = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    refused = await client.post("/api/queues/emails/pause", headers=headers)
    assert refused.status_code == 403
    same = {"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:8787"}
    assert (await client.post("/api/queues/emails/pause", headers=same)).status_code == 200


async def test_read_only_hides_and_refuses_actions(
    backend: Backend, make_client: ClientFactory, seed: Seeder, csrf_of: CsrfOf
) -> None:
    ids = await seed()
    client = await make_client(read_only=True)
    csrf = await csrf_of(client)
    job = await client.get(f"/admin/queues/emails/jobs/{ids['failed']}")
    assert job.status_code == 200 and "read-only" in job.text
    for marker in (
        'id="retry"',
        'id="remove"',
        'id="pause"',
        'id="enqueue"',
        '<form method="post"',
    ):
        assert marker not in job.text
    queue_page = await client.get("/admin/queues/emails")
    assert 'id="pause"' not in queue_page.text and 'id="enqueue"' not in queue_page.text
    for path in (
        f"/api/queues/emails/jobs/{ids['failed']}/retry",
        "/api/queues/emails/pause",
        "/api/queues/emails/jobs",
        f"/admin/queues/emails/jobs/{ids['failed']}/retry",
    ):
        answer = await client.post(path, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 403, path
    assert (await Queue("emails", backend).counts())["failed"] == 1
    assert (await client.get("/api/session")).json()["read_only"] is True


async def test_host_header_allow_list(make_client: ClientFactory) -> None:
    client = await make_client(allowed_hosts=("127.0.0.1", "localhost"))
    assert (await client.get("/api/queues")).status_code == 200
    rebound = await client.get("/api/queues", headers={"Host": "attacker.example:8787"})
    assert rebound.status_code == 400


async def test_security_headers(make_client: ClientFactory) -> None:
    client = await make_client()
    for path in ("/admin/queues", "/api/queues", "/admin/queues/nope"):
        answer = await client.get(path)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


async def test_html_in_job_data_is_escaped(backend: Backend, make_client: ClientFactory) -> None:
    job = await Queue("xss", backend).add("<script>alert(1)</script>", {"x": "<img src=x>"})
    client = await make_client()
    page = await client.get(f"/admin/queues/xss/jobs/{job.id}")
    assert "<script>alert(1)</script>" not in page.text and "<img src=x>" not in page.text


async def test_signing_out_ends_the_session_for_good(
    make_client: ClientFactory, csrf_of: CsrfOf, token: str
) -> None:
    client = await make_client(token=token)
    csrf = (await client.get("/admin/login")).text.split('name="csrf" value="')[1].split('"')[0]
    await client.post("/admin/login", data={"csrf": csrf, "token": token})
    signed_in = client.cookies.get("polyjobs_board")
    assert signed_in and (await client.get("/api/queues")).status_code == 200
    out = await client.post("/admin/logout", data={"csrf": await csrf_of(client)})
    assert out.status_code == 303
    client.cookies.set("polyjobs_board", signed_in)  # the cookie kept from before signing out
    assert (await client.get("/api/queues")).status_code == 401


def test_sessions_expire_after_twelve_hours(token: str) -> None:
    from starlette.requests import Request

    from polyjobs.board.security import SESSION_TTL, Security, Session

    security = Security(BoardOptions(token=token), secret=b"k" * 32)
    fresh = security.new_session(True)

    def request_with(session: Session) -> Request:
        cookie = f"polyjobs_board={security.cookie_value(session)}".encode()
        return Request({"type": "http", "headers": [(b"cookie", cookie)], "query_string": b""})

    assert security.session_of(request_with(fresh)).authenticated
    old = Session(fresh.sid, True, issued=fresh.issued - SESSION_TTL - 1)
    assert not security.session_of(request_with(old)).authenticated
    assert SESSION_TTL == 12 * 3600


async def test_api_posts_take_json_only(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    client = await make_client()
    headers = {"X-CSRF-Token": await csrf_of(client), "Content-Type": "text/plain"}
    answer = await client.post("/api/queues/reports/jobs", headers=headers, content=b"hello")
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    assert (await Queue("reports", backend).counts())["waiting"] == 0


async def test_bodies_are_bounded_and_read_after_the_csrf_check(
    backend: Backend, make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    client = await make_client()
    big = b'{"data": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    json_type = {"Content-Type": "application/json"}
    anonymous = await client.post("/api/queues/reports/jobs", headers=json_type, content=big)
    assert anonymous.status_code == 403 and "CSRF" in anonymous.json()["error"]
    headers = {**json_type, "X-CSRF-Token": await csrf_of(client)}
    too_big = await client.post("/api/queues/reports/jobs", headers=headers, content=big)
    assert too_big.status_code == 413
    assert (await Queue("reports", backend).counts())["waiting"] == 0


async def test_non_ascii_csrf_token_or_cookie_is_a_403_with_the_headers(
    make_client: ClientFactory, csrf_of: CsrfOf
) -> None:
    client = await make_client()
    await csrf_of(client)
    token = await client.post("/api/queues/reports/pause", headers={b"X-CSRF-Token": "é".encode()})
    cookie = await client.post(
        "/api/queues/reports/pause",
        headers={b"Cookie": "polyjobs_board=a.1.1.é".encode(), b"X-CSRF-Token": b"x"},
    )
    for answer in (token, cookie):
        assert answer.status_code == 403
        assert answer.headers["x-frame-options"] == "DENY"


async def test_login_rate_limit(make_client: ClientFactory, token: str) -> None:
    client = await make_client(token=token)
    csrf = (await client.get("/admin/login")).text.split('name="csrf" value="')[1].split('"')[0]
    for _ in range(10):
        wrong = await client.post("/admin/login", data={"csrf": csrf, "token": "wrong"})
        assert wrong.status_code == 401
    blocked = await client.post("/admin/login", data={"csrf": csrf, "token": token})
    assert blocked.status_code == 429 and "wait a minute" in blocked.text
    bearer = await client.get("/api/queues", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 429


async def test_wrong_bearer_tokens_count_toward_the_limit(
    make_client: ClientFactory, token: str
) -> None:
    client = await make_client(token=token)
    for _ in range(10):
        wrong = await client.get("/api/queues", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
    right = await client.get("/api/queues", headers={"Authorization": f"Bearer {token}"})
    assert right.status_code == 429


async def test_any_loopback_address_literal_is_a_served_host(make_client: ClientFactory) -> None:
    client = await make_client(allowed_hosts=loopback_hosts("127.0.0.2", BoardOptions()))
    for host in ("127.0.0.2:8787", "127.0.0.1", "[::1]:8787", "localhost:1"):
        assert (await client.get("/api/queues", headers={"Host": host})).status_code == 200
    rebound = await client.get("/api/queues", headers={"Host": "127.0.0.2.evil.example"})
    assert rebound.status_code == 400
