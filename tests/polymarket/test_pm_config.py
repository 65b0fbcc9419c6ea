from __future__ import annotations

import pytest

from polyjobs.errors import ConfigError
from polyjobs.polymarket.config import DEFAULT_STORE, SETTINGS, load_config


def test_defaults() -> None:
    config = load_config({})
    assert config.store_url == DEFAULT_STORE
    assert config.discord_webhook_url is None
    assert config.whale_batch_size == 1000
    assert config.whales.min_volume == 100_000 and config.whales.min_trade == 10_000
    assert config.anomaly.large_trade == 10_000 and config.anomaly.max_price == 0.95
    assert config.gamma_timeout < 5.0  # well inside the analysis job's timeout


def test_reference_and_polyjobs_names() -> None:
    assert load_config({"BULLMQ_WHALE_UPDATE_BATCH_SIZE": "250"}).whale_batch_size == 250
    both = {"BULLMQ_WHALE_UPDATE_BATCH_SIZE": "250", "POLYJOBS_WHALE_BATCH_SIZE": 50}
    assert load_config(both).whale_batch_size == 50


def test_store_url_resolution() -> None:
    assert load_config({"MONGODB_URI": "mongodb://h/db"}).store_url == "mongodb://h/db"
    chosen = {"MONGODB_URI": "mongodb://h/db", "POLYJOBS_STORE": "memory://"}
    assert load_config(chosen).store_url == "memory://"


def test_durations_accept_units() -> None:
    config = load_config({"POLYJOBS_ANOMALY_COOLDOWN": "30m", "POLYJOBS_ANOMALY_MAX_AGE": "6h"})
    assert config.anomaly.cooldown == 1800 and config.anomaly.max_age == 6 * 3600


def test_no_age_limit_by_default_and_the_earlier_name() -> None:
    assert load_config({}).anomaly.max_age == 0  # every trade is checked, however old
    assert load_config({"POLYJOBS_ANOMALY_LOOKBACK": "2h"}).anomaly.max_age == 7200
    both = {"POLYJOBS_ANOMALY_LOOKBACK": "2h", "POLYJOBS_ANOMALY_MAX_AGE": "1h"}
    assert load_config(both).anomaly.max_age == 3600


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("POLYJOBS_WHALE_MIN_VOLUME", "lots", "POLYJOBS_WHALE_MIN_VOLUME must be a number"),
        ("POLYJOBS_ANOMALY_LONG_SHOT_PRICE", "1.5", "within 0..1"),
        ("BULLMQ_WHALE_UPDATE_BATCH_SIZE", "0", "integer >= 1"),
        ("POLYJOBS_GAMMA_TIMEOUT", "soon", "not a duration"),
        ("POLYJOBS_STORE", "postgres://u:pw@h/db", "must start with"),
    ],
)
def test_bad_values_are_one_clear_line(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config({key: value})
    assert "\n" not in str(info.value)


def test_webhook_token_is_never_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"DISCORD_WEBHOOK_URL": "ftp://discord.com/api/webhooks/1/s3cr3t-token"})
    assert "s3cr3t" not in str(info.value)
    config = load_config({"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/s3cr3t-token"})
    assert "s3cr3t" not in repr(config.describe())


def test_every_key_is_documented() -> None:
    for key, (_, meaning) in SETTINGS.items():
        assert key.isupper() and meaning
