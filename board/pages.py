"""The HTML pages under ``/admin``: server-rendered over the same service as the JSON API.
Every action is a form POST with the session's CSRF token, answered by a redirect (303)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from polyjobs.backend import CAP_CANCEL, STATES
from polyjobs.board.api import JOB_ACTIONS, REFUSED, BoardRoute, parse_json_field
from polyjobs.board.sampler import sparkline
from polyjobs.board.security import (
    BodyRefused,
    Security,
    action,
    client_of,
    read_form,
    session,
)
from polyjobs.board.service import ENQUEUE_OPTIONS
from polyjobs.clock import local_time
from polyjobs.errors import InvalidArgumentError

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

    from polyjobs.board.sampler import Sampler
    from polyjobs.board.service import BoardService

#: Messages shown after a redirect, by code (never text taken from the URL).
DONE = {
    "retry": "Job sent back to waiting.",
    "remove": "Job removed.",
    "promote": "Job promoted: it runs now.",
    "cancel": "Cancel sent: a job not started has failed; a running one stops within a second.",
    "pause": "Queue paused.",
    "resume": "Queue resumed.",
    "clean": "Queue cleaned.",
    "enqueue": "Job added.",
    "login": "Signed in.",
}
REFRESH_CHOICES = (0, 5, 15, 60)
MAX_PAGE_NUMBER = 1_000_000
DEFAULT_STATE_ORDER = ("active", "waiting", "failed", "delayed", "completed")


def queue_url(name: str, **query: Any) -> str:
    url = f"/admin/queues/{quote(name, safe='')}"
    query = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{url}?{urlencode(query)}" if query else url


def job_url(queue: str, job_id: str) -> str:
    return f"{queue_url(queue)}/jobs/{quote(job_id, safe='')}"


def json_text(value: Any, indent: int | None = 2) -> str:
    """A value as readable JSON for a page: keys in their stored order, text as it is (no
    ``\\uXXXX`` escapes). The template escapes it as text."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def cell_text(value: Any) -> str:
    """A listing's cell as text: numbers as they read, lists joined, objects as JSON."""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:g}"
    if isinstance(value, list):
        return ", ".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return json_text(value)
    return str(value)


def when(timestamp: float | None) -> str:
    return local_time(timestamp)


class Pages:
    """The pages' endpoints over one service."""

    def __init__(
        self,
        service: BoardService,
        sampler: Sampler,
        security: Security,
        templates: Jinja2Templates,
    ) -> None:
        self.service = service
        self.sampler = sampler
        self.security = security
        self.options = security.options
        self.templates = templates

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(
            csrf=self.security.csrf_token(session(request)),
            read_only=self.options.read_only,
            token_required=self.options.token is not None,
            backend_label=self.options.backend_label,
            done=DONE.get(request.query_params.get("done", ""), ""),
            queue_url=queue_url,
            job_url=job_url,
            when=when,
            json_text=json_text,
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/admin/queues", status_code=307)

    async def overview(self, request: Request) -> Response:
        from polyjobs.health import check_health

        rows = await self.service.overview()
        for row in rows:
            row["chart"] = sparkline(await self.sampler.points(row["queue"]))
        health = await check_health(self.service.backend)
        return self.render(
            request,
            "overview.html",
            rows=rows,
            refresh=_refresh(request),
            choices=REFRESH_CHOICES,
            health=health,
        )

    async def queue_page(self, request: Request) -> Response:
        name = request.path_params["queue"]
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            queue = await self.service.known_queue(name)
            if await queue.get_job(wanted) is not None:
                return _redirect(job_url(name, wanted))
        page, size = _page(request), self.options.page_size
        info = await self.service.queue_info(name)
        state = request.query_params.get("state") or _busiest(info)
        listing = await self.service.jobs(name, state, (page - 1) * size, size)
        return self.render(
            request,
            "queue.html",
            info=info,
            listing=listing,
            states=STATES,
            page=page,
            pages=max((listing["total"] + size - 1) // size, 1),
            chart=sparkline(await self.sampler.points(info["queue"]), 320, 60),
            missing=wanted,
        )

    async def listing_page(self, request: Request) -> Response:
        page, size = _page(request), self.options.page_size
        data = await self.service.listing(request.path_params["key"], (page - 1) * size, size)
        return self.render(
            request,
            "listing.html",
            data=data,
            page=page,
            pages=max((data["total"] + size - 1) // size, 1),
            cell=cell_text,
            link_host=lambda url: urlsplit(url).hostname or url,
        )

    async def job_page(self, request: Request) -> Response:
        params = request.path_params
        job = await self.service.job(params["queue"], params["job_id"])
        can_cancel = CAP_CANCEL in self.service.backend.capabilities
        return self.render(request, "job.html", job=job, can_cancel=can_cancel)

    def job_action(self, verb: str) -> Any:
        async def handler(request: Request, form: dict[str, Any]) -> Response:
            name, job_id = request.path_params["queue"], request.path_params["job_id"]
            if not await self.service.job_action(name, job_id, verb):
                raise InvalidArgumentError(f"job {job_id} {REFUSED[verb]}")
            back = form.get("back") or form.get("state")
            if verb == "remove" or back in STATES:
                return _redirect(queue_url(name, state=back, done=verb))
            return _redirect(f"{job_url(name, job_id)}?done={verb}")

        return action(self.security, handler)

    def pause_action(self, paused: bool) -> Any:
        async def handler(request: Request, form: dict[str, Any]) -> Response:
            name = request.path_params["queue"]
            await self.service.set_paused(name, paused)
            verb = "pause" if paused else "resume"
            return _redirect(queue_url(name, state=form.get("state"), done=verb))

        return action(self.security, handler)

    async def clean(self, request: Request, form: dict[str, Any]) -> Response:
        name = request.path_params["queue"]
        state = str(form.get("state", "completed"))
        await self.service.clean(name, state, form.get("grace"), form.get("limit"))
        return _redirect(queue_url(name, state=state, done="clean"))

    async def enqueue(self, request: Request, form: dict[str, Any]) -> Response:
        name = request.path_params["queue"]
        data = parse_json_field(str(form.get("data", "")), "data")
        options = {k: form.get(k) for k in ENQUEUE_OPTIONS}
        job_name = str(form.get("name") or "") or None
        added = await self.service.enqueue(name, job_name, data, options)
        return _redirect(f"{job_url(added['queue'], added['id'])}?done=enqueue")

    async def login(self, request: Request) -> Response:
        target = _local(request.query_params.get("next", ""))
        if request.method == "GET":
            return self.render(request, "login.html", next=target, error="")
        client = client_of(request)
        if self.security.blocked(client):
            error = "Too many wrong tokens: wait a minute, then try again."
            return self.render(request, "login.html", 429, next=target, error=error)
        try:  # without a session the CSRF check fails: the body is not even read
            form = {} if session(request).fresh else await read_form(request)
        except BodyRefused as refused:
            return self.render(request, "login.html", refused.status, next=target, error="")
        if not self.security.csrf_ok(request, session(request), form):
            error = "Your session expired; sign in again."
            return self.render(request, "login.html", 403, next=target, error=error)
        if not self.security.token_ok(str(form.get("token", ""))):
            self.security.wrong_token(client)
            return self.render(request, "login.html", 401, next=target, error="Wrong token.")
        response = _redirect(target)
        self.security.set_cookie(response, self.security.new_session(True), request)
        return response

    async def logout(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except BodyRefused:
            form = {}
        current = session(request)
        if not self.security.csrf_ok(request, current, form):
            error = "Your session expired."
            return self.render(request, "login.html", 403, next="/admin/queues", error=error)
        self.security.end_session(current)
        response = _redirect("/admin/login")
        self.security.set_cookie(response, self.security.new_session(False), request)
        return response

    def routes(self) -> list[Route]:
        base = "/admin/queues/{queue}"
        act = self.security
        return [
            Route("/", self.root),
            Route("/admin", self.root),
            Route("/admin/login", self.login, methods=["GET", "POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/queues", self.overview),
            Route("/admin/lists/{key}", self.listing_page),
            BoardRoute(base, self.queue_page),
            BoardRoute(f"{base}/pause", self.pause_action(True), methods=["POST"]),
            BoardRoute(f"{base}/resume", self.pause_action(False), methods=["POST"]),
            BoardRoute(f"{base}/clean", action(act, self.clean), methods=["POST"]),
            BoardRoute(f"{base}/enqueue", action(act, self.enqueue), methods=["POST"]),
            *(
                BoardRoute(
                    f"{base}/jobs/{{job_id:path}}/{verb}", self.job_action(verb), methods=["POST"]
                )
                for verb in JOB_ACTIONS
            ),
            BoardRoute(f"{base}/jobs/{{job_id:path}}", self.job_page, methods=["GET"]),
        ]


def _busiest(counts: dict[str, Any]) -> str:
    """The state a queue page opens on: the first with jobs, the live ones first."""
    return next((s for s in DEFAULT_STATE_ORDER if counts.get(s)), "waiting")


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _local(target: str) -> str:
    """Only a path on this board (never ``//host`` or a full URL) may be a redirect target."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/admin/queues"


def _page(request: Request) -> int:
    """The page asked for, within 1..MAX_PAGE_NUMBER (a page past the last shows no jobs)."""
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE_NUMBER)


def _refresh(request: Request) -> int:
    try:
        seconds = int(request.query_params.get("refresh", "0"))
    except ValueError:
        return 0
    return seconds if seconds in REFRESH_CHOICES else 0
