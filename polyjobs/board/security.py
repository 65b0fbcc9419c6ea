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
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from polyjobs.board.options import BoardOptions

COOKIE = "polyjobs_board"
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


class Security:
    """Signs sessions and CSRF tokens with a secret that lives as long as the app."""

    def __init__(self, options: BoardOptions, secret: bytes | None = None) -> None:
        self.options = options
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def cookie_value(self, session: Session) -> str:
        body = f"{session.sid}.{int(session.authenticated)}"
        return f"{body}.{self._sign(body)}"

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def token_ok(self, given: str) -> bool:
        token = self.options.token
        return token is not None and hmac.compare_digest(given.encode(), token.encode())

    def session_of(self, request: Request) -> Session:
        """The request's session: Bearer-authenticated, from a valid cookie, or a new one."""
        open_board = self.options.token is None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(given.strip()):
            return Session(secrets.token_hex(16), True, bearer=True, fresh=False)
        parts = request.cookies.get(COOKIE, "").split(".")
        if len(parts) == 3 and hmac.compare_digest(parts[2], self._sign(f"{parts[0]}.{parts[1]}")):
            return Session(parts[0], open_board or parts[1] == "1")
        return Session(secrets.token_hex(16), open_board, fresh=True)

    def new_session(self, authenticated: bool) -> Session:
        return Session(secrets.token_hex(16), authenticated, fresh=True)

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
        return isinstance(given, str) and hmac.compare_digest(given, self.csrf_token(session))


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
        response = await self._dispatch(request, call_next)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        allowed = self.security.options.allowed_hosts
        if allowed is not None and _host_name(request.headers.get("host", "")) not in allowed:
            return PlainTextResponse("invalid Host header", status_code=400)
        if request.method not in SAFE_METHODS and not _same_origin(request):
            return _refuse(request, 403, "cross-site request refused")
        current = self.security.session_of(request)
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


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _refuse(request: Request, status: int, message: str) -> Response:
    if _wants_json(request.url.path):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


async def read_form(request: Request) -> dict[str, Any]:
    """The request's body as a dict: a JSON object, or a form's string fields."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            return {"__invalid__": "body is not valid JSON"}
        return body if isinstance(body, dict) else {"__invalid__": "body must be a JSON object"}
    form = await request.form(max_files=0, max_fields=50)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def action(security: Security, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST endpoint: refuse it when read-only or without a valid CSRF token."""

    async def endpoint(request: Request) -> Response:
        if security.options.read_only:
            return _refuse(request, 403, "the board is read-only")
        form = await read_form(request)
        if not security.csrf_ok(request, session(request), form):
            return _refuse(request, 403, "missing or invalid CSRF token")
        return await handler(request, form)

    return endpoint
