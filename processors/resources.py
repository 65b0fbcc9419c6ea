"""What the processors need at run time, opened by the Runtime through ``polyjobs_resources``.

Each factory reads the resolved settings (``ctx.settings``) through
:func:`~polyjobs.polymarket.config.load_config` and closes what it opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

from polyjobs.polymarket.alerts import AlertSink, ConsoleSink, DiscordWebhook
from polyjobs.polymarket.config import DomainConfig, load_config
from polyjobs.polymarket.data_api import DataApiClient, DataApiOptions
from polyjobs.polymarket.gamma import GammaClient
from polyjobs.polymarket.ingest import DataApiSource, TradeSource
from polyjobs.polymarket.replay import ReplaySource
from polyjobs.polymarket.store import Store, open_store
from polyjobs.processors import ALERT_SINK, CONFIG, GAMMA, STORE, TRADE_SOURCE

if TYPE_CHECKING:
    from polyjobs.hookspecs import ResourceFactory
    from polyjobs.runtime import RuntimeContext

__all__ = [
    "ALERT_SINK",
    "CONFIG",
    "GAMMA",
    "STORE",
    "TRADE_SOURCE",
    "resource_factories",
]

USER_AGENT = "polyjobs (+https://github.com/polyjobs)"


@asynccontextmanager
async def config_resource(ctx: RuntimeContext) -> AsyncIterator[DomainConfig]:
    yield load_config(ctx.settings)


@asynccontextmanager
async def store_resource(ctx: RuntimeContext) -> AsyncIterator[Store]:
    config = load_config(ctx.settings)
    async with open_store(config.store_url, database=config.mongodb_db) as store:
        yield store


@asynccontextmanager
async def gamma_resource(ctx: RuntimeContext) -> AsyncIterator[GammaClient | None]:
    """The Gamma client; None when ``POLYJOBS_GAMMA_ENABLED`` is false (analyses degrade)."""
    config = load_config(ctx.settings)
    if not config.gamma_enabled:
        yield None
        return
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=5)
    timeout = httpx.Timeout(config.gamma_timeout)
    headers = {"User-Agent": USER_AGENT}
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as http:
        yield GammaClient(
            http, config.gamma_url, timeout=config.gamma_timeout, ttl=config.gamma_cache_ttl
        )


@asynccontextmanager
async def alert_sink_resource(ctx: RuntimeContext) -> AsyncIterator[AlertSink]:
    """The Discord webhook when ``DISCORD_WEBHOOK_URL`` is set, else the console."""
    config = load_config(ctx.settings)
    if config.discord_webhook_url is None:
        yield ConsoleSink()
        return
    async with DiscordWebhook(
        config.discord_webhook_url, timeout=config.discord_timeout
    ) as webhook:
        yield webhook


@asynccontextmanager
async def trade_source_resource(ctx: RuntimeContext) -> AsyncIterator[TradeSource]:
    """The ingest job's source: the Data API (one client, one rate limiter) or a replay."""
    ingest = load_config(ctx.settings).ingest
    if ingest.source == "replay" and ingest.replay_path is not None:
        yield ReplaySource(ingest.replay_path, ingest.replay_speed)
        return
    options = DataApiOptions(
        base_url=ingest.data_api_url,
        timeout=ingest.data_api_timeout,
        page_size=ingest.page_size,
        retries=ingest.data_api_retries,
        rate_calls=ingest.data_api_rate_limit,
        markets=ingest.markets,
        min_notional=ingest.min_notional,
    )
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    timeout = httpx.Timeout(ingest.data_api_timeout, connect=min(5.0, ingest.data_api_timeout))
    headers = {"User-Agent": USER_AGENT}
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as http:
        yield DataApiSource(
            DataApiClient(http, options), backfill=ingest.backfill, overlap=ingest.overlap
        )


def resource_factories() -> Mapping[str, ResourceFactory]:
    return {
        CONFIG: config_resource,
        STORE: store_resource,
        GAMMA: gamma_resource,
        ALERT_SINK: alert_sink_resource,
        TRADE_SOURCE: trade_source_resource,
    }
