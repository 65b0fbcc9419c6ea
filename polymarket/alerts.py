"""Alert delivery: the Discord webhook (httpx), a console sink, and the outbox protocol.

Delivery is claim -> send -> conditional finish on the stored alert, so an alert already
``sent`` is never posted again, whatever the number of jobs or retries. The one case that can
post twice is a timeout *after* Discord accepted the message: webhooks have no idempotency
key. The alert id in the embed footer makes such a duplicate visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from polyjobs.errors import GroupRateLimitError, RateLimitError, RetryAfter, UnrecoverableError
from polyjobs.polymarket.http_errors import describe_http_error
from polyjobs.polymarket.links import (
    market_url,
    transaction_url,
    wallet_url,
)
from polyjobs.polymarket.models import Alert
from polyjobs.polymarket.store import Store
from polyjobs.redact import redact_text, redact_url

log = logging.getLogger(__name__)

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-limits).
TITLE_MAX, DESCRIPTION_MAX, FIELDS_MAX = 256, 4096, 25
FIELD_NAME_MAX, FIELD_VALUE_MAX, FOOTER_MAX, EMBED_TOTAL_MAX = 256, 1024, 2048, 6000
SEVERITY_COLORS = {"critical": 0xE74C3C, "high": 0xE67E22, "medium": 0xF1C40F, "low": 0x95A5A6}
DISABLED_STATE_PREFIX = "webhook-disabled:"


class DeliveryError(Exception):
    """A transient delivery failure (5xx, timeout, network): retried with backoff."""


class RateLimited(DeliveryError):
    """HTTP 429. ``whole_sink``: Discord said ``global: true`` — every send must wait."""

    def __init__(self, retry_after: float, message: str, *, whole_sink: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.whole_sink = whole_sink


class PermanentDeliveryError(DeliveryError):
    """The request will never succeed as is (400, 401, 403, 404...); ``disable`` says the
    destination itself is gone and must not be called again."""

    def __init__(self, message: str, *, disable: bool) -> None:
        super().__init__(message)
        self.disable = disable


class AlertSink(Protocol):
    """Where alerts go. ``key`` identifies the destination (never a secret)."""

    key: str

    async def send(self, alert: Alert) -> str | None:
        """Deliver one alert; return the message id (if any) or raise a DeliveryError."""
        ...


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_wallet(wallet: str) -> str:
    return f"{wallet[:6]}...{wallet[-4:]}" if len(wallet) > 12 else wallet


def _money(value: float) -> str:
    return f"${value:,.2f}"


_MARKDOWN = re.compile(r"([\\`*_~|>\[\]])|^([#-])", re.M)


def trade_time(summary: Mapping[str, Any]) -> str:
    ts = summary.get("timestamp")
    if not ts:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _escape(text: str) -> str:
    """User data as text in Discord: markdown characters escaped."""
    return _MARKDOWN.sub(lambda m: "\\" + m.group(0), text)


@dataclass(frozen=True, slots=True)
class AlertField:
    """One line of an alert: plain ``text`` (user data never becomes markup) and a link."""

    name: str
    text: str
    url: str | None = None
    inline: bool = True


def alert_fields(alert: Alert) -> list[AlertField]:
    """What an alert shows, in order: for the Discord embed and the console alike, built only
    from the stored alert (so a retry shows exactly the same)."""
    s = alert.summary
    usdc = float(s.get("usdcSize", 0.0))
    signals = "\n".join(
        f"{sig.name} = {sig.value:g} (threshold {sig.threshold:g}) {sig.detail}".rstrip()
        for sig in alert.signals
    )
    wallet = _short_wallet(alert.wallet) + (f" ({s['pseudonym']})" if s.get("pseudonym") else "")
    tx = str(s.get("transactionHash") or "")
    return [
        AlertField("Wallet", wallet, wallet_url(alert.wallet)),
        AlertField("Side", f"{s.get('side', '')} {s.get('outcome', '')}".strip()),
        AlertField("Size", f"{float(s.get('size', 0.0)):,.2f} shares"),
        AlertField("Price", f"{float(s.get('price', 0.0)):g}"),
        AlertField("Notional", _money(usdc)),
        AlertField("Score", f"{alert.score:.2f} ({alert.severity})"),
        AlertField("Signals", signals or "-", inline=False),
        AlertField("Trade time", trade_time(s)),
        AlertField("Transaction", _short_hash(tx) if tx else "-", transaction_url(tx)),
        AlertField("Market", str(s.get("title") or "-"), market_url(s), inline=False),
    ]


def _short_hash(tx: str) -> str:
    return f"{tx[:10]}...{tx[-8:]}" if len(tx) > 20 else tx


def _alert_title(alert: Alert) -> str:
    s = alert.summary
    usdc = float(s.get("usdcSize", 0.0))
    return f"{alert.severity.upper()} {s.get('side', '')} {_money(usdc)} - {s.get('title', '')}"


def build_embed(alert: Alert) -> dict[str, Any]:
    """One Discord embed for ``alert``, inside Discord's limits, built only from the stored
    alert (so a retry sends exactly the same message). User data is escaped, links come from
    the slugs and hashes, and the footer names the alert and its trade."""
    s = alert.summary
    fields = []
    for f in alert_fields(alert)[:FIELDS_MAX]:
        text = _escape(f.text) or "-"
        link = f"[{_cut(text, FIELD_VALUE_MAX - len(f.url) - 4)}]({f.url})" if f.url else ""
        value = link if 0 < len(link) <= FIELD_VALUE_MAX else _cut(text, FIELD_VALUE_MAX)
        fields.append({"name": _cut(f.name, FIELD_NAME_MAX), "value": value, "inline": f.inline})
    footer = f"alert {alert.id} | trade {alert.trade_key[:16]} | score {alert.score:.2f}"
    embed: dict[str, Any] = {
        "title": _cut(_alert_title(alert), TITLE_MAX),
        "description": _cut(str(s.get("note", "")), DESCRIPTION_MAX),
        "color": SEVERITY_COLORS.get(alert.severity, 0x95A5A6),
        "fields": fields,
        "footer": {"text": _cut(footer, FOOTER_MAX)},
    }
    url = market_url(s)
    if url:
        embed["url"] = url
    if s.get("timestamp"):
        embed["timestamp"] = datetime.fromtimestamp(float(s["timestamp"]), UTC).isoformat()
    while _embed_size(embed) > EMBED_TOTAL_MAX and len(embed["description"]) > 3:
        embed["description"] = _cut(embed["description"], len(embed["description"]) // 2)
    return embed


def _embed_size(embed: dict[str, Any]) -> int:
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", ""))
    size += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    return size


def build_payload(alert: Alert) -> dict[str, Any]:
    """The Execute Webhook body: one embed, no mentions."""
    return {
        "username": "polyjobs",
        "allowed_mentions": {"parse": []},
        "embeds": [build_embed(alert)],
    }


class SecretPathTransport(httpx.AsyncBaseTransport):
    """Puts the webhook token into the request path only at the transport edge.

    The client is given the redacted URL (``.../webhooks/<id>/***``), so httpx's own request
    log line, ``response.request`` and every exception only ever see the redacted form.
    """

    def __init__(self, secret_url: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._secret = httpx.URL(secret_url)
        self.public_url = httpx.URL(redact_url(secret_url))
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.public_url.host and request.url.path == self.public_url.path:
            request = httpx.Request(
                request.method,
                request.url.copy_with(path=self._secret.path),
                headers=request.headers,
                content=request.content,
                extensions=request.extensions,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class DiscordWebhook:
    """Posts alerts to a Discord webhook with ``?wait=true`` (so failures are reported and the
    message id comes back). ``async with DiscordWebhook(url) as hook:`` opens its own client.

    The webhook URL (its token) never appears in errors or logs: the client only knows the
    redacted URL, and :class:`SecretPathTransport` adds the token on the wire.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._transport = SecretPathTransport(url, transport)
        self.public_url = str(self._transport.public_url)
        self.timeout = timeout
        self.key = "discord:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        self._http: httpx.AsyncClient | None = None
        self._blocked_until = 0.0  # time.monotonic() before which the bucket is empty

    def __repr__(self) -> str:
        return f"<DiscordWebhook {self.public_url}>"

    async def __aenter__(self) -> DiscordWebhook:
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": "polyjobs"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def send(self, alert: Alert) -> str | None:
        if self._http is None:
            raise RuntimeError("use DiscordWebhook inside 'async with'")
        wait = self._blocked_until - time.monotonic()
        if wait > 0:  # the headers said the bucket is empty: don't earn a 429
            raise RateLimited(wait, f"Discord webhook rate limit bucket empty for {wait:.2f}s")
        try:
            response = await self._http.post(
                self.public_url,
                params={"wait": "true"},
                json=build_payload(alert),
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise DeliveryError(f"Discord webhook timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"Discord webhook unreachable: {describe_http_error(exc)}"
            ) from None
        self._note_rate_limit(response)
        return self._outcome(response)

    def _note_rate_limit(self, response: httpx.Response) -> None:
        """Follow ``X-RateLimit-Remaining`` / ``-Reset-After`` (and a 429's ``retry_after``)."""
        wait = 0.0
        if response.headers.get("X-RateLimit-Remaining") == "0":
            try:
                wait = float(response.headers.get("X-RateLimit-Reset-After", "0"))
            except ValueError:
                wait = 0.0
        if response.status_code == 429:
            wait = max(wait, _retry_after(_json(response), response.headers.get("Retry-After")))
        if wait > 0:
            self._blocked_until = max(self._blocked_until, time.monotonic() + wait)

    def _outcome(self, response: httpx.Response) -> str | None:
        status = response.status_code
        if status in (200, 204):
            body = _json(response)
            return str(body["id"]) if isinstance(body, dict) and "id" in body else None
        detail = _detail(response)
        if status == 429:
            body = _json(response)
            retry_after = _retry_after(body, response.headers.get("Retry-After"))
            whole = isinstance(body, dict) and bool(body.get("global"))
            scope = "global " if whole else ""
            raise RateLimited(
                retry_after,
                f"Discord webhook {scope}rate limited (HTTP 429), retry after {retry_after:g}s",
                whole_sink=whole,
            )
        if status >= 500:
            raise DeliveryError(f"Discord webhook answered HTTP {status}{detail}")
        disable = status in (401, 403, 404)
        why = {
            400: "the payload was rejected",
            401: "the webhook token is invalid; webhook disabled",
            403: "forbidden; webhook disabled",
            404: "the webhook was deleted; webhook disabled",
        }.get(status, "not retried")
        raise PermanentDeliveryError(
            f"Discord webhook answered HTTP {status}{detail}: {why}", disable=disable
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and body.get("message"):
        code = f", code {body['code']}" if "code" in body else ""
        errors = f", errors {json.dumps(body['errors'])[:300]}" if body.get("errors") else ""
        return f" ({redact_text(str(body['message']))[:200]}{code}{redact_text(errors)})"
    return ""


def _retry_after(body: Any, header: str | None) -> float:
    for value in (body.get("retry_after") if isinstance(body, dict) else None, header):
        try:
            if value is not None:
                return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return 1.0


class ConsoleSink:
    """Prints alerts (local development, no webhook configured)."""

    key = "console"

    def __init__(self, write: Callable[[str], Any] | None = None) -> None:
        self.write = write

    async def send(self, alert: Alert) -> str | None:
        text = render_text(alert)
        if self.write is not None:
            self.write(text)
            return None
        # one log record: the CLI prints it above its live view, or as one JSON object
        detail = {"alert_id": alert.id, "kind": alert.kind, "severity": alert.severity}
        log.warning(text, extra={"event": "alert", "detail": detail})
        return None


def render_text(alert: Alert) -> str:
    """The alert as plain text lines (the console): every field, each link in full."""
    lines = [f"[alert {alert.id}] {_alert_title(alert)}"]
    for f in alert_fields(alert):
        indent = "\n" + " " * (len(f.name) + 4)  # multi-line values stay aligned
        text = f.text.replace("\n", indent)
        lines.append(f"  {f.name}: {text}" + (f"  {f.url}" if f.url else ""))
    lines.append(f"  Trade key: {alert.trade_key}")
    lines.append(f"  {alert.summary.get('note', '')}".rstrip())
    return "\n".join(lines)


class AlertDelivery:
    """Delivers stored alerts through a sink, at most once per successful send."""

    def __init__(
        self,
        store: Store,
        sink: AlertSink,
        *,
        lease: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.lease = lease
        self.clock = clock

    async def deliver(self, alert_id: str) -> dict[str, Any]:
        """Deliver alert ``alert_id``.

        Raises:
            UnrecoverableError: unknown alert, an alert that failed for good, a payload Discord
                rejects, or a webhook that is gone (it is not called again).
            GroupRateLimitError: this webhook is rate limited (a 429, or its bucket is
                empty): the alerts of this webhook wait, no attempt counted (the alerts jobs are
                grouped by webhook; a job without a group holds the whole queue).
            RetryAfter: another attempt holds the alert.
            RateLimitError: Discord rate limited us globally: the whole queue waits.
            DeliveryError: a transient failure (the job retries with backoff).
        """
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            raise UnrecoverableError(f"alert {alert_id} not found")
        if alert.status == "sent":
            return self._result(alert, "already-sent")
        if alert.status == "failed":
            raise UnrecoverableError(f"alert {alert_id} failed earlier: {alert.last_error}")
        disabled = await self.store.get_state(DISABLED_STATE_PREFIX + self.sink.key)
        if disabled:
            raise UnrecoverableError(f"alert {alert_id} not sent: {disabled.get('reason')}")
        attempt = uuid.uuid4().hex
        now = self.clock()
        claimed = await self.store.claim_alert(alert_id, now, self.lease, attempt)
        if claimed is None:
            return await self._not_claimed(alert_id, now)
        try:
            message_id = await self.sink.send(claimed)
        except RateLimited as exc:
            await self._finish(claimed, attempt, "retry", str(exc), retry_in=exc.retry_after)
            if exc.whole_sink:  # hold the whole alerts queue, on every worker
                raise RateLimitError(exc.retry_after, f"alert {alert_id}: {exc}") from None
            # only this webhook's channel: its group waits, other webhooks' alerts go on
            raise GroupRateLimitError(exc.retry_after, f"alert {alert_id}: {exc}") from None
        except PermanentDeliveryError as exc:
            await self._finish(claimed, attempt, "failed", str(exc))
            if exc.disable:
                reason = f"{self.sink.key} disabled: {exc}"
                await self.store.set_state(
                    DISABLED_STATE_PREFIX + self.sink.key, {"reason": reason, "at": self.clock()}
                )
            raise UnrecoverableError(f"alert {alert_id}: {exc}") from None
        except BaseException as exc:  # transient, or the job's timeout cancelled us
            await asyncio.shield(self._finish(claimed, attempt, "retry", _reason(exc)))
            raise
        if not await self.store.finish_alert(
            alert_id, attempt, "sent", self.clock(), message_id=message_id
        ):
            log.warning(
                "alert %s was sent but its claim had expired (possible duplicate)", alert_id
            )
        claimed.status, claimed.discord_message_id = "sent", message_id
        return self._result(claimed, "sent")

    async def _not_claimed(self, alert_id: str, now: float) -> dict[str, Any]:
        current = await self.store.get_alert(alert_id)
        if current is not None and current.status == "sent":
            return self._result(current, "already-sent")
        wait = max((current.locked_until or now) - now, 0.0) + 0.1 if current else self.lease
        raise RetryAfter(wait, f"alert {alert_id} is being sent by another attempt")

    async def _finish(
        self, alert: Alert, attempt: str, status: Any, error: str, *, retry_in: float | None = None
    ) -> None:
        now = self.clock()
        next_at = None if retry_in is None else now + retry_in
        await self.store.finish_alert(
            alert.id, attempt, status, now, error=error, next_attempt_at=next_at
        )

    @staticmethod
    def _result(alert: Alert, outcome: str) -> dict[str, Any]:
        return {
            "alertId": alert.id,
            "status": outcome,
            "messageId": alert.discord_message_id,
            "attempts": alert.attempts,
        }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled (job timeout or shutdown)"
    return redact_text(str(exc) or type(exc).__name__)
