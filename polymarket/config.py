"""Domain configuration: one pure function from the resolved settings to a frozen dataclass.

The settings mapping is flat, with environment-style keys (the engine resolves CLI flag >
environment > ``polyjobs.toml`` > default and hands the result in); nothing here reads
``os.environ``. Every key, its default and its meaning is listed in :data:`SETTINGS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyjobs.errors import ConfigError
from polyjobs.options import seconds
from polyjobs.redact import redact_url

DEFAULT_STORE = "sqlite:///.polyjobs/polymarket.db"
DEFAULT_GAMMA_URL = "https://gamma-api.polymarket.com"
DEFAULT_DATA_API_URL = "https://data-api.polymarket.com"

#: ``{key: (default, meaning)}`` for every setting the domain reads. Where two keys are given
#: for one value (the ``BULLMQ_*`` name of the detector's BullMQ version and a ``POLYJOBS_*``
#: name), the ``POLYJOBS_*`` name wins.
SETTINGS: dict[str, tuple[Any, str]] = {
    "POLYJOBS_STORE": (None, "store URL: sqlite:///path, sqlite://:memory:, memory://, mongodb://"),
    "MONGODB_URI": (None, "MongoDB URI, used as the store when POLYJOBS_STORE is not set"),
    "POLYJOBS_MONGODB_DB": ("polyjobs", "MongoDB database name"),
    "DISCORD_WEBHOOK_URL": (
        None,
        "Discord webhook for alerts; without it alerts go to the console",
    ),
    "POLYJOBS_DISCORD_TIMEOUT": (5.0, "seconds for one Discord webhook call"),
    "POLYJOBS_ALERT_LEASE": (30.0, "seconds an alert stays claimed by one delivery attempt"),
    "POLYJOBS_GAMMA_URL": (DEFAULT_GAMMA_URL, "Gamma API base URL"),
    "POLYJOBS_GAMMA_ENABLED": (True, "false: analyse without Gamma market data (offline demo)"),
    "POLYJOBS_GAMMA_TIMEOUT": (2.0, "seconds for one Gamma call (the analysis job has 5 s)"),
    "POLYJOBS_GAMMA_CACHE_TTL": (600.0, "seconds a Gamma market stays cached"),
    "BULLMQ_WHALE_UPDATE_BATCH_SIZE": (1000, "wallets per whale-update batch (BullMQ-era name)"),
    "POLYJOBS_WHALE_BATCH_SIZE": (None, "wallets per whale-update batch (wins over BULLMQ_*)"),
    "POLYJOBS_WHALE_MIN_VOLUME": (100_000.0, "whale: lifetime volume in USDC at least this"),
    "POLYJOBS_WHALE_MIN_VOLUME_30D": (50_000.0, "whale: 30-day volume in USDC at least this"),
    "POLYJOBS_WHALE_MIN_TRADE": (10_000.0, "whale: one trade in USDC at least this"),
    "POLYJOBS_ANOMALY_LARGE_TRADE": (10_000.0, "signal large_trade: notional at least this"),
    "POLYJOBS_ANOMALY_FRESH_AGE": (48 * 3600.0, "signal fresh_wallet: first seen less than this"),
    "POLYJOBS_ANOMALY_FRESH_TRADES": (
        5,
        "signal fresh_wallet: or among its first this many trades",
    ),
    "POLYJOBS_ANOMALY_FRESH_MIN": (5_000.0, "signal fresh_wallet: notional at least this"),
    "POLYJOBS_ANOMALY_LONG_SHOT_PRICE": (0.20, "signal long_shot: BUY at a price at most this"),
    "POLYJOBS_ANOMALY_LONG_SHOT_MIN": (5_000.0, "signal long_shot: notional at least this"),
    "POLYJOBS_ANOMALY_WALLET_MULTIPLE": (10.0, "signal size_vs_wallet: x the wallet's avg trade"),
    "POLYJOBS_ANOMALY_WALLET_MIN_TRADES": (5, "signal size_vs_wallet: history of at least this"),
    "POLYJOBS_ANOMALY_MARKET_SHARE": (0.02, "signal size_vs_market: share of 24 h market volume"),
    "POLYJOBS_ANOMALY_MIN_NOTIONAL": (1_000.0, "relative signals ignore trades below this"),
    "POLYJOBS_ANOMALY_MAX_PRICE": (0.95, "noise filter: fills at this price or more are skipped"),
    "POLYJOBS_ANOMALY_COOLDOWN": (1800.0, "noise filter: seconds between alerts per wallet+market"),
    "POLYJOBS_ANOMALY_MAX_AGE": (
        0.0,
        "anomaly checks: trades older than this are marked checked without signals or alerts"
        " (counted as skipped); 0: no limit, every trade is checked however old",
    ),
    "POLYJOBS_ANOMALY_LOOKBACK": (None, "the earlier name of POLYJOBS_ANOMALY_MAX_AGE"),
    "POLYJOBS_ANOMALY_BATCH_LIMIT": (
        10_000,
        "anomaly batch: most trades checked per job (a backlog drains over successive jobs)",
    ),
    "POLYJOBS_INGEST_SOURCE": ("data-api", "where trades come from: data-api or replay:<path>"),
    "POLYJOBS_INGEST_REPLAY_SPEED": (1.0, "replay: x real time (0: the whole file at once)"),
    "POLYJOBS_INGEST_MIN_ANALYSIS": (10_000.0, "trades of at least this USDC go to analysis"),
    "POLYJOBS_INGEST_MARKETS": (None, "only these markets (comma-separated condition ids)"),
    "POLYJOBS_INGEST_MIN_NOTIONAL": (None, "only trades of at least this USDC (filterType=CASH)"),
    "POLYJOBS_INGEST_BACKFILL": (3600.0, "first poll: read this far back (seconds)"),
    "POLYJOBS_INGEST_OVERLAP": (60.0, "each poll re-reads this far behind the watermark"),
    "POLYJOBS_INGEST_PAGE_SIZE": (1000, "Data API rows per request (limit, at most 10000)"),
    "POLYJOBS_DATA_API_URL": (DEFAULT_DATA_API_URL, "Data API base URL"),
    "POLYJOBS_DATA_API_TIMEOUT": (10.0, "seconds for one Data API request"),
    "POLYJOBS_DATA_API_RETRIES": (4, "retries of one Data API request (429, 5xx, timeouts)"),
    "POLYJOBS_DATA_API_RATE_LIMIT": (200, "Data API requests per 10 s (documented: 200)"),
}


@dataclass(frozen=True, slots=True)
class WhaleThresholds:
    min_volume: float = 100_000.0
    min_volume_30d: float = 50_000.0
    min_trade: float = 10_000.0


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    large_trade: float = 10_000.0
    fresh_age: float = 48 * 3600.0
    fresh_trades: int = 5
    fresh_min: float = 5_000.0
    long_shot_price: float = 0.20
    long_shot_min: float = 5_000.0
    wallet_multiple: float = 10.0
    wallet_min_trades: int = 5
    market_share: float = 0.02
    min_notional: float = 1_000.0
    max_price: float = 0.95
    cooldown: float = 1800.0  # in trade time, per wallet and market
    max_age: float = 0.0  # 0: none
    batch_limit: int = 10_000


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The ``polymarket-ingest`` job: its source and the Data API client's limits."""

    source: str = "data-api"  # or "replay"
    replay_path: str | None = None
    replay_speed: float = 1.0
    min_analysis: float = 10_000.0
    markets: tuple[str, ...] = ()
    min_notional: float | None = None
    backfill: float = 3600.0
    overlap: float = 60.0
    page_size: int = 1000
    data_api_url: str = DEFAULT_DATA_API_URL
    data_api_timeout: float = 10.0
    data_api_retries: int = 4
    data_api_rate_limit: int = 200


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Everything the Polymarket domain is configured with. Build it with :func:`load_config`."""

    store_url: str = DEFAULT_STORE
    mongodb_db: str = "polyjobs"
    discord_webhook_url: str | None = None
    discord_timeout: float = 5.0
    alert_lease: float = 30.0
    gamma_url: str = DEFAULT_GAMMA_URL
    gamma_timeout: float = 2.0
    gamma_cache_ttl: float = 600.0
    gamma_enabled: bool = True
    whale_batch_size: int = 1000
    whales: WhaleThresholds = WhaleThresholds()
    anomaly: AnomalyThresholds = AnomalyThresholds()
    ingest: IngestConfig = IngestConfig()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view with secrets redacted (for logs and ``--json`` output)."""
        return {
            "store_url": redact_url(self.store_url),
            "discord_webhook_url": redact_url(self.discord_webhook_url or "") or None,
            "gamma_url": self.gamma_url,
            "whale_batch_size": self.whale_batch_size,
            "ingest_source": self.ingest.source,
            "data_api_url": self.ingest.data_api_url,
        }


def _get(settings: Mapping[str, Any], *keys: str) -> tuple[str, Any]:
    """The first key of ``keys`` set (not None/empty) in ``settings``, else the first default."""
    for key in keys:
        value = settings.get(key)
        if value is not None and value != "":
            return key, value
    for key in keys:
        if SETTINGS[key][0] is not None:
            return key, SETTINGS[key][0]
    return keys[0], None


def _number(
    settings: Mapping[str, Any], *keys: str, low: float = 0.0, high: float = math.inf
) -> float:
    key, value = _get(settings, *keys)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high or math.isnan(number):
        raise ConfigError(f"{key} must be a number within {low:g}..{high:g}, got {value!r}")
    return number


def _duration(settings: Mapping[str, Any], *keys: str, positive: bool = True) -> float:
    key, value = _get(settings, *keys)
    try:
        secs = seconds(value, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if positive and secs <= 0:
        raise ConfigError(f"{key} must be more than 0 seconds, got {value!r}")
    return secs


def _integer(settings: Mapping[str, Any], *keys: str, low: int = 0) -> int:
    key, value = _get(settings, *keys)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or number < low:
        raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
    return number


def _url(settings: Mapping[str, Any], key: str, schemes: tuple[str, ...]) -> str | None:
    _, value = _get(settings, key)
    if value is None:
        return None
    text = str(value).strip()
    if not text.startswith(schemes):
        raise ConfigError(f"{key} must start with {' or '.join(schemes)}, got {redact_url(text)!r}")
    return text


def _store_url(settings: Mapping[str, Any]) -> str:
    schemes = ("sqlite://", "memory://", "mongodb://", "mongodb+srv://")
    url = _url(settings, "POLYJOBS_STORE", schemes)
    if url is not None:
        return url
    mongo = _url(settings, "MONGODB_URI", ("mongodb://", "mongodb+srv://"))
    if mongo is not None:
        return mongo
    home = settings.get("POLYJOBS_HOME")
    if home:  # the state directory the CLI resolved (beside the queue backend's file)
        return f"sqlite:///{Path(str(home)) / 'polymarket.db'}"
    return DEFAULT_STORE


def _anomaly(settings: Mapping[str, Any]) -> AnomalyThresholds:
    return AnomalyThresholds(
        large_trade=_number(settings, "POLYJOBS_ANOMALY_LARGE_TRADE"),
        fresh_age=_duration(settings, "POLYJOBS_ANOMALY_FRESH_AGE"),
        fresh_trades=_integer(settings, "POLYJOBS_ANOMALY_FRESH_TRADES"),
        fresh_min=_number(settings, "POLYJOBS_ANOMALY_FRESH_MIN"),
        long_shot_price=_number(settings, "POLYJOBS_ANOMALY_LONG_SHOT_PRICE", high=1.0),
        long_shot_min=_number(settings, "POLYJOBS_ANOMALY_LONG_SHOT_MIN"),
        wallet_multiple=_number(settings, "POLYJOBS_ANOMALY_WALLET_MULTIPLE", low=1.0),
        wallet_min_trades=_integer(settings, "POLYJOBS_ANOMALY_WALLET_MIN_TRADES", low=1),
        market_share=_number(settings, "POLYJOBS_ANOMALY_MARKET_SHARE", high=1.0),
        min_notional=_number(settings, "POLYJOBS_ANOMALY_MIN_NOTIONAL"),
        max_price=_number(settings, "POLYJOBS_ANOMALY_MAX_PRICE", high=1.0),
        cooldown=_duration(settings, "POLYJOBS_ANOMALY_COOLDOWN", positive=False),
        max_age=_duration(
            settings, "POLYJOBS_ANOMALY_MAX_AGE", "POLYJOBS_ANOMALY_LOOKBACK", positive=False
        ),
        batch_limit=_integer(settings, "POLYJOBS_ANOMALY_BATCH_LIMIT", low=1),
    )


def _flag(settings: Mapping[str, Any], key: str) -> bool:
    _, value = _get(settings, key)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _source(settings: Mapping[str, Any]) -> tuple[str, str | None]:
    _, value = _get(settings, "POLYJOBS_INGEST_SOURCE")
    text = str(value).strip()
    if text == "data-api":
        return "data-api", None
    if text.startswith("replay:") and text[len("replay:") :].strip():
        return "replay", text[len("replay:") :].strip()
    raise ConfigError(f"POLYJOBS_INGEST_SOURCE must be data-api or replay:<path>, got {text!r}")


def _markets(settings: Mapping[str, Any]) -> tuple[str, ...]:
    _, value = _get(settings, "POLYJOBS_INGEST_MARKETS")
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    markets = tuple(str(m).strip() for m in items if str(m).strip())
    for market in markets:
        if not (market.startswith("0x") and len(market) == 66):
            raise ConfigError(f"POLYJOBS_INGEST_MARKETS: {market!r} is not a condition id (0x+64)")
    return markets


def _ingest(settings: Mapping[str, Any]) -> IngestConfig:
    source, path = _source(settings)
    min_notional = None
    if _get(settings, "POLYJOBS_INGEST_MIN_NOTIONAL")[1] is not None:
        min_notional = _number(settings, "POLYJOBS_INGEST_MIN_NOTIONAL")
    url = _url(settings, "POLYJOBS_DATA_API_URL", ("http://", "https://"))
    return IngestConfig(
        source=source,
        replay_path=path,
        replay_speed=_number(settings, "POLYJOBS_INGEST_REPLAY_SPEED"),
        min_analysis=_number(settings, "POLYJOBS_INGEST_MIN_ANALYSIS"),
        markets=_markets(settings),
        min_notional=min_notional,
        backfill=_duration(settings, "POLYJOBS_INGEST_BACKFILL"),
        overlap=_duration(settings, "POLYJOBS_INGEST_OVERLAP", positive=False),
        page_size=min(_integer(settings, "POLYJOBS_INGEST_PAGE_SIZE", low=1), 10_000),
        data_api_url=(url or DEFAULT_DATA_API_URL).rstrip("/"),
        data_api_timeout=_duration(settings, "POLYJOBS_DATA_API_TIMEOUT"),
        data_api_retries=_integer(settings, "POLYJOBS_DATA_API_RETRIES"),
        data_api_rate_limit=_integer(settings, "POLYJOBS_DATA_API_RATE_LIMIT", low=1),
    )


def load_config(settings: Mapping[str, Any]) -> DomainConfig:
    """Validate the domain's settings (keys and defaults in :data:`SETTINGS`).

    Raises:
        ConfigError: one line naming the first bad key and its (redacted) value.
    """
    gamma = _url(settings, "POLYJOBS_GAMMA_URL", ("http://", "https://"))
    return DomainConfig(
        store_url=_store_url(settings),
        mongodb_db=str(_get(settings, "POLYJOBS_MONGODB_DB")[1]),
        discord_webhook_url=_url(settings, "DISCORD_WEBHOOK_URL", ("http://", "https://")),
        discord_timeout=_duration(settings, "POLYJOBS_DISCORD_TIMEOUT"),
        alert_lease=_duration(settings, "POLYJOBS_ALERT_LEASE"),
        gamma_url=(gamma or DEFAULT_GAMMA_URL).rstrip("/"),
        gamma_timeout=_duration(settings, "POLYJOBS_GAMMA_TIMEOUT"),
        gamma_cache_ttl=_duration(settings, "POLYJOBS_GAMMA_CACHE_TTL", positive=False),
        gamma_enabled=_flag(settings, "POLYJOBS_GAMMA_ENABLED"),
        whale_batch_size=_integer(
            settings, "POLYJOBS_WHALE_BATCH_SIZE", "BULLMQ_WHALE_UPDATE_BATCH_SIZE", low=1
        ),
        whales=WhaleThresholds(
            min_volume=_number(settings, "POLYJOBS_WHALE_MIN_VOLUME"),
            min_volume_30d=_number(settings, "POLYJOBS_WHALE_MIN_VOLUME_30D"),
            min_trade=_number(settings, "POLYJOBS_WHALE_MIN_TRADE"),
        ),
        anomaly=_anomaly(settings),
        ingest=_ingest(settings),
    )
