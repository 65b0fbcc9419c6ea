"""The ingest / Data API settings parsed by ``load_config``."""

from __future__ import annotations

import pytest

from polyjobs.errors import ConfigError
from polyjobs.polymarket.config import SETTINGS, load_config

MARKET = "0x" + "c" * 64


def test_defaults() -> None:
    ingest = load_config({}).ingest
    assert ingest.source == "data-api" and ingest.replay_path is None
    assert ingest.data_api_url == "https://data-api.polymarket.com"
    assert ingest.min_analysis == 10_000.0 and ingest.min_notional is None
    assert ingest.markets == () and ingest.page_size == 1000
    assert ingest.data_api_rate_limit == 200 and ingest.data_api_timeout == 10.0
    assert load_config({}).gamma_enabled


def test_values() -> None:
    config = load_config(
        {
            "POLYJOBS_INGEST_SOURCE": "replay:examples/trades.jsonl",
            "POLYJOBS_INGEST_REPLAY_SPEED": "0",
            "POLYJOBS_INGEST_MIN_ANALYSIS": "25000",
            "POLYJOBS_INGEST_MARKETS": f" {MARKET}, ",
            "POLYJOBS_INGEST_MIN_NOTIONAL": "500",
            "POLYJOBS_INGEST_BACKFILL": "2h",
            "POLYJOBS_DATA_API_URL": "http://127.0.0.1:9/",
            "POLYJOBS_DATA_API_TIMEOUT": "3s",
            "POLYJOBS_GAMMA_ENABLED": "false",
        }
    )
    ingest = config.ingest
    assert ingest.source == "replay" and ingest.replay_path == "examples/trades.jsonl"
    assert ingest.replay_speed == 0.0 and ingest.min_analysis == 25_000.0
    assert ingest.markets == (MARKET,) and ingest.min_notional == 500.0
    assert ingest.backfill == 7200.0 and ingest.data_api_timeout == 3.0
    assert ingest.data_api_url == "http://127.0.0.1:9"
    assert not config.gamma_enabled


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("POLYJOBS_INGEST_SOURCE", "rtds", "data-api or replay:<path>"),
        ("POLYJOBS_INGEST_SOURCE", "replay:", "data-api or replay:<path>"),
        ("POLYJOBS_INGEST_MARKETS", "0x12", "not a condition id"),
        ("POLYJOBS_INGEST_REPLAY_SPEED", "-1", "POLYJOBS_INGEST_REPLAY_SPEED"),
        ("POLYJOBS_DATA_API_URL", "ftp://x", "POLYJOBS_DATA_API_URL"),
        ("POLYJOBS_GAMMA_ENABLED", "maybe", "true or false"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({key: value})


def test_new_keys_are_documented() -> None:
    for key in ("POLYJOBS_INGEST_SOURCE", "POLYJOBS_DATA_API_URL", "POLYJOBS_GAMMA_ENABLED"):
        assert SETTINGS[key][1]
