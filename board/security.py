"""The board's security: token authentication, sessions, CSRF, Host and Origin checks, headers.

- With a token configured, every route but the login form and the stylesheet needs it: an
  ``Authorization: Bearer`` header (API clients, Prometheus) or the session cookie that the login
  form sets. Without one (loopback, or ``--insecure``) everyone who can connect is let in.
- Every session (a random id in an HMAC-signed, HttpOnly, SameSite=Strict cookie) has a CSRF
  token; every POST must carry it in the ``csrf`` form field or the ``X-CSRF-Token`` header,
  unless it is authenticated by a Bearer header (no ambient credential to ride on).
- A POST whose ``Origin`` is another site (or ``null``) is refused (the Referrer-Policy is
  ``same-origin`` so that browsers send it); on loopback without a token only loopback
  ``Host`` names are served, which defeats DNS rebinding.
- ``--read-only`` refuses every action with 403.
- Sessions expire 12 hours after sign-in (``SESSION_TTL``); a signed-in session is also kept
  server-side, so signing out ends it for good (the old cookie no longer signs anyone in).
- Ten wrong tokens in a minute from one client (login form or Bearer header) and that client
  is answered 429 until the minute has passed.
- A POST body is read only after the checks that need no body (read-only, a session, a CSRF
  header), and never beyond ``MAX_BODY`` (413); the API takes JSON bodies only (415).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from polyjobs.codec import DEFAULT_MAX_PAYLOAD

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from polyjobs.board.options import BoardOptions

log = logging.getLogger(__name__)

COOKIE = "polyjobs_board"
#: How long a session lasts after it began (sign-in, or the first visit of an open board).
SESSION_TTL = 12 * 3600
#: Wrong tokens allowed per client within LOGIN_WINDOW seconds before it is answered 429.
LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
_TRACKED_CLIENTS = 10_000
#: The largest POST body read: a job's largest data (the default payload limit) and 1 MiB.
MAX_BODY = DEFAULT_MAX_PAYLOAD + 1024 * 1024
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
PUBLIC_PATHS = ("/admin/login", "/static/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    authenticated: bool
    bearer: bool = False
    fresh: bool = False
    issued: int = 0


def same_text(given: str, expected: str) -> bool:
    """A constant-time comparison that takes any text (a non-ASCII cookie or CSRF token is
    simply wrong, never an error)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


class Security:
    """Signs sessions and CSRF tokens with a secret that lives as long as the app; keeps the
    signed-in sessions and the recent wrong tokens of each client."""

    def __init__(self, options: BoardOptions, secret: bytes | None = None) -> None:
        self.options = options
        self._secret = secret or secrets.token_bytes(32)
        self._signed_in: dict[str, float] = {}  # session id -> when it expires
        self._failures: dict[str, deque[float]] = {}  # client -> times of its wrong tokens

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def cookie_value(self, session: Session) -> str:
        body = f"{session.sid}.{int(session.authenticated)}.{session.issued}"
        return f"{body}.{self._sign(body)}"

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def token_ok(self, given: str) -> bool:
        token = self.options.token
        return token is not None and same_text(given, token)

    def session_of(self, request: Request) -> Session:
        """The request's session: Bearer-authenticated, from a valid unexpired cookie, or a new
        one. A cookie signed in counts only while its session is still signed in here."""
        open_board = self.options.token is None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(given.strip()):
            return Session(secrets.token_hex(16), True, bearer=True, fresh=False)
        parts = request.cookies.get(COOKIE, "").split(".")
        if len(parts) == 4 and same_text(parts[3], self._sign(".".join(parts[:3]))):
            sid, signed_in, issued = parts[0], parts[1] == "1", parts[2]
            now = time.time()
            if issued.isascii() and issued.isdigit() and now - int(issued) < SESSION_TTL:
                live = signed_in and self._signed_in.get(sid, 0.0) > now
                return Session(sid, open_board or live, issued=int(issued))
        return self.new_session(open_board)

    def new_session(self, authenticated: bool) -> Session:
        session = Session(secrets.token_hex(16), authenticated, fresh=True, issued=int(time.time()))
        if authenticated and self.options.token is not None:
            now = time.time()
            for sid in [s for s, until in self._signed_in.items() if until <= now]:
                del self._signed_in[sid]
            self._signed_in[session.sid] = session.issued + SESSION_TTL
        return session

    def end_session(self, session: Session) -> None:
        """Sign ``session`` out: its cookie no longer signs anyone in."""
        self._signed_in.pop(session.sid, None)

    def blocked(self, client: str) -> bool:
        """Whether ``client`` gave LOGIN_FAILURES wrong tokens within the last LOGIN_WINDOW."""
        times = self._failures.get(client)
        if not times:
            return False
        while times and times[0] <= time.monotonic() - LOGIN_WINDOW:
            times.popleft()
        return len(times) >= LOGIN_FAILURES

    def wrong_token(self, client: str) -> None:
        """Count a wrong token from ``client``."""
        if client not in self._failures and len(self._failures) >= _TRACKED_CLIENTS:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(client, deque(maxlen=LOGIN_FAILURES)).append(time.monotonic())

    def set_cookie(self, response: Response, session: Session, request: Request) -> None:
        response.set_cookie(
            COOKIE,
            self.cookie_value(session),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def csrf_ok(self, request: Request, session: Session, form: dict[str, Any]) -> bool:
        if session.bearer:
            return True
        if session.fresh:
            return False
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD) or ""
        return isinstance(given, str) and same_text(given, self.csrf_token(session))


def client_of(request: Request) -> str:
    """Who is asking, for the login rate limit: the peer's address."""
    return request.client.host if request.client else "unknown"


def session(request: Request) -> Session:
    """The session the middleware attached to ``request``."""
    found: Session = request.state.board_session
    return found


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _wants_json(path: str) -> bool:
    return path.startswith(("/api", "/metrics"))


class SecurityMiddleware(BaseHTTPMiddleware):
    """Host check, session, authentication and headers for every request."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        super().__init__(app)
        self.security = security

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            response = await self._dispatch(request, call_next)
        except Exception:
            log.exception("board: %s %s failed", request.method, request.url.path)
            response = _refuse(request, 500, "internal error")
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        allowed = self.security.options.allowed_hosts
        if allowed is not None and not _host_allowed(request.headers.get("host", ""), allowed):
            return PlainTextResponse("invalid Host header", status_code=400)
        if request.method not in SAFE_METHODS and not _same_origin(request):
            return _refuse(request, 403, "cross-site request refused")
        scheme = request.headers.get("authorization", "").partition(" ")[0]
        bearer = scheme.lower() == "bearer" and self.security.options.token is not None
        client = client_of(request)
        if bearer and self.security.blocked(client):
            return _refuse(request, 429, "too many wrong tokens: wait a minute")
        current = self.security.session_of(request)
        if bearer and not current.bearer:
            self.security.wrong_token(client)
        request.state.board_session = current
        path = request.url.path
        if not current.authenticated and not path.startswith(PUBLIC_PATHS):
            if _wants_json(path):
                response: Response = JSONResponse(
                    {"error": "authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                target = quote(path + (f"?{request.url.query}" if request.url.query else ""))
                response = RedirectResponse(f"/admin/login?next={target}", status_code=303)
        else:
            response = await call_next(request)
        if current.fresh and COOKIE not in response.headers.get("set-cookie", ""):
            self.security.set_cookie(response, current, request)
        return response


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header is served: one of ``allowed``, or, when loopback names are
    what is allowed, any loopback address literal (``127.0.0.2``, ``[::1]``): an address
    literal cannot be rebound by DNS."""
    name = _host_name(host)
    if name in allowed:
        return True
    if "localhost" not in allowed:
        return False
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _refuse(request: Request, status: int, message: str) -> Response:
    if _wants_json(request.url.path):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


class BodyRefused(Exception):
    """A POST body the board does not read: too large (413) or not JSON on the API (415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused (413) as soon as it is longer than ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length and (not length.isascii() or not length.isdigit() or int(length) > limit):
        raise BodyRefused(413, f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what request.form() reads from now on
    return body


async def read_form(request: Request) -> dict[str, Any]:
    """The request's body as a dict: a JSON object, or a form's string fields (pages only).
    Raises :class:`BodyRefused`."""
    kind = _content_type(request)
    body = await read_body(request)
    if kind == "application/json":
        try:
            value = json.loads(body) if body.strip() else {}
        except ValueError:
            return {"__invalid__": "body is not valid JSON"}
        return value if isinstance(value, dict) else {"__invalid__": "body must be a JSON object"}
    if not body:
        return {}
    if _wants_json(request.url.path):
        raise BodyRefused(415, "the API takes JSON bodies: Content-Type: application/json")
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BodyRefused(415, f"unsupported Content-Type {kind[:60]!r}")
    form = await request.form(max_files=0, max_fields=50)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def action(security: Security, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST endpoint: refuse it when read-only or without a valid CSRF token; what can
    be checked without the body is checked before it is read."""

    async def endpoint(request: Request) -> Response:
        if security.options.read_only:
            return _refuse(request, 403, "the board is read-only")
        current = session(request)
        header = request.headers.get(CSRF_HEADER)
        if header is None:  # on the API the token comes in the header or a JSON body
            early = current.fresh or (
                _wants_json(request.url.path) and _content_type(request) != "application/json"
            )
        else:
            early = not security.csrf_ok(request, current, {})
        if not current.bearer and early:
            return _refuse(request, 403, "missing or invalid CSRF token")
        try:
            form = await read_form(request)
        except BodyRefused as refused:
            return _refuse(request, refused.status, str(refused))
        if not security.csrf_ok(request, current, form):
            return _refuse(request, 403, "missing or invalid CSRF token")
        return await handler(request, form)

    return endpoint
