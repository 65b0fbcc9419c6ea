"""The JSON API under ``/api`` (documented in docs/board.md). Reads are GETs; every action is a
POST that needs the session's CSRF token (``X-CSRF-Token``) or a Bearer token."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from polyjobs.backend import metrics_of
from polyjobs.board.security import Security, action, session
from polyjobs.errors import InvalidArgumentError

if TYPE_CHECKING:
    from starlette.types import Scope

    from polyjobs.board.sampler import Sampler
    from polyjobs.board.service import BoardService

JOB_ACTIONS = ("retry", "remove", "promote", "cancel")
REFUSED = {
    "retry": "is not failed",
    "remove": "is active (or already gone)",
    "promote": "is not delayed",
    "cancel": "has ended or waits for its children",
}
ENQUEUE_FIELDS = {"name", "data", "options", "csrf"}


#: Stands for an encoded slash (``%2F``) inside one segment while a route is matched.
_SLASH = "\ue000"
_ENCODED_SLASH = re.compile(r"%2[fF]")


class BoardRoute(Route):
    """A route whose path parameters may hold ``/``: a queue named ``a/b`` is linked as
    ``/admin/queues/a%2Fb`` and that segment stays one parameter (servers decode ``%2F``
    before routing, so the raw path is matched instead)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = scope.get("raw_path")
        if raw and b"%2" in raw and _ENCODED_SLASH.search(raw.decode("latin-1")):
            text = _ENCODED_SLASH.sub("%EE%80%80", raw.decode("latin-1"))
            scope = {**scope, "path": unquote(text)}
        match, child = super().matches(scope)
        params = child.get("path_params")
        if match is not Match.NONE and params:
            child["path_params"] = {
                k: v.replace(_SLASH, "/") if isinstance(v, str) else v for k, v in params.items()
            }
        return match, child


def int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidArgumentError(f"{name} must be a whole number, got {shown!r}") from None


def checked(form: dict[str, Any]) -> dict[str, Any]:
    if "__invalid__" in form:
        raise InvalidArgumentError(str(form["__invalid__"]))
    return form


def error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def parse_json_field(text: str, what: str) -> Any:
    """A form field holding JSON (the UI's enqueue form); empty means None."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{what} is not valid JSON: {exc}") from None


class Api:
    """The API's endpoints over one service."""

    def __init__(self, service: BoardService, sampler: Sampler, security: Security) -> None:
        self.service = service
        self.sampler = sampler
        self.security = security

    async def who(self, request: Request) -> Response:
        options = self.security.options
        return JSONResponse(
            {
                "csrf": self.security.csrf_token(session(request)),
                "read_only": options.read_only,
                "token_required": options.token is not None,
            }
        )

    async def queues(self, request: Request) -> Response:
        return JSONResponse({"queues": await self.service.overview()})

    async def queue(self, request: Request) -> Response:
        return JSONResponse(await self.service.queue_info(request.path_params["queue"]))

    async def jobs(self, request: Request) -> Response:
        page = await self.service.jobs(
            request.path_params["queue"],
            request.query_params.get("state", "waiting"),
            int_param(request, "start", 0),
            int_param(request, "limit", 50),
        )
        return JSONResponse(page)

    async def job(self, request: Request) -> Response:
        params = request.path_params
        return JSONResponse(await self.service.job(params["queue"], params["job_id"]))

    async def listing(self, request: Request) -> Response:
        page = await self.service.listing(
            request.path_params["key"],
            int_param(request, "start", 0),
            int_param(request, "limit", 50),
        )
        return JSONResponse(page)

    async def throughput(self, request: Request) -> Response:
        """This board's samples; with ``minutes``, on a backend that keeps metrics, each
        queue's stored minutes of the last hour (``minute``, ``completed``, ``failed``,
        ``time_sum``)."""
        body = self.sampler.to_json()
        stored = metrics_of(self.service.backend)
        if stored is not None:
            since = time.time() - 3600
            body["minutes"] = {
                name: [asdict(m) for m in await stored.get_metrics(name, since)]
                for name in await self.service.queue_names()
            }
        return JSONResponse(body)

    async def enqueue(self, request: Request, form: dict[str, Any]) -> Response:
        unknown = set(checked(form)) - ENQUEUE_FIELDS
        if unknown:
            raise InvalidArgumentError(f"unknown fields: {', '.join(sorted(unknown))}")
        options = form.get("options") or {}
        name = form.get("name")
        if not isinstance(options, dict) or not isinstance(name, str | None):
            raise InvalidArgumentError("name must be a string and options a JSON object")
        queue = request.path_params["queue"]
        added = await self.service.enqueue(queue, name, form.get("data"), options)
        return JSONResponse(added, status_code=201)

    def job_action(self, verb: str) -> Any:
        async def handler(request: Request, form: dict[str, Any]) -> Response:
            queue, job_id = request.path_params["queue"], request.path_params["job_id"]
            if not await self.service.job_action(queue, job_id, verb):
                return error_response(409, f"job {job_id} {REFUSED[verb]}")
            return JSONResponse({"queue": queue, "id": job_id, "done": verb})

        return action(self.security, handler)

    def pause_action(self, paused: bool) -> Any:
        async def handler(request: Request, form: dict[str, Any]) -> Response:
            await self.service.set_paused(request.path_params["queue"], paused)
            return JSONResponse({"queue": request.path_params["queue"], "paused": paused})

        return action(self.security, handler)

    async def clean(self, request: Request, form: dict[str, Any]) -> Response:
        checked(form)
        queue = request.path_params["queue"]
        state = str(form.get("state", "completed"))
        removed = await self.service.clean(queue, state, form.get("grace"), form.get("limit"))
        return JSONResponse({"queue": queue, "state": state, "removed": removed})

    def routes(self) -> list[Route]:
        base = "/api/queues/{queue}"
        return [
            Route("/api/session", self.who),
            Route("/api/queues", self.queues),
            Route("/api/throughput", self.throughput),
            Route("/api/lists/{key}", self.listing),
            BoardRoute(base, self.queue),
            BoardRoute(f"{base}/jobs", self.jobs, methods=["GET"]),
            BoardRoute(f"{base}/jobs", action(self.security, self.enqueue), methods=["POST"]),
            BoardRoute(f"{base}/pause", self.pause_action(True), methods=["POST"]),
            BoardRoute(f"{base}/resume", self.pause_action(False), methods=["POST"]),
            BoardRoute(f"{base}/clean", action(self.security, self.clean), methods=["POST"]),
            *(
                BoardRoute(
                    f"{base}/jobs/{{job_id:path}}/{verb}", self.job_action(verb), methods=["POST"]
                )
                for verb in JOB_ACTIONS
            ),
            BoardRoute(f"{base}/jobs/{{job_id:path}}", self.job, methods=["GET"]),
        ]
