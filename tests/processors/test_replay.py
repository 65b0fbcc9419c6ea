"""``run_replay``: the pipeline once over a file, to the end, with a summary that adds up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyjobs.errors import ConfigError, InvalidArgumentError
from polyjobs.polymarket.models import Alert
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.testing import api_row
from polyjobs.processors.replay import ReplayRequest, parse_time, run_replay

DAY = 86_400
T0 = 1_767_484_800  # 2026-01-04 00:00 UTC
W = ["0x" + c * 40 for c in "123456"]
M = ["0x" + c * 64 for c in "abcdef"]


def rows() -> list[Any]:
    out: list[Any] = []
    # ten days of small trades by four wallets (no signal), every 40 minutes
    for i in range(10 * 36):
        out.append(
            api_row(
                wallet=W[i % 4], market=M[i % 3], size=100, timestamp=T0 + 2400 * i, tx=f"0xb{i}"
            )
        )
    # day 2: a burst of six $12k buys in six minutes (analysis path): one alert
    out += [
        api_row(wallet=W[4], market=M[3], size=24_000, timestamp=T0 + DAY + 60 * i, tx=f"0xc{i}")
        for i in range(6)
    ]
    # day 8: a fresh long shot, $6k at 0.1 (anomaly batch path): one alert
    out.append(
        api_row(wallet=W[5], market=M[4], size=60_000, price=0.1, timestamp=T0 + 8 * DAY, tx="0xd")
    )
    out.append("not a trade")
    return out


class Recorder:
    key = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> str | None:
        self.alerts.append(alert)
        return None


@pytest.fixture
def trades_file(tmp_path: Path) -> Path:
    path = tmp_path / "trades.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows()))
    return path


async def test_a_ten_day_file_is_checked_to_the_end(
    trades_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    progress: list[str] = []
    summary = await run_replay(
        ReplayRequest(trades_file, page=100),
        {"POLYJOBS_ANOMALY_BATCH_LIMIT": "150"},
        report=progress.append,
    )
    assert (summary.rows, summary.unreadable, summary.outside, summary.stored) == (367, 1, 0, 367)
    assert summary.analysed == 6 and summary.checked == 367  # however old
    assert summary.batches == 3  # 361 trades left for batches of at most 150
    assert (summary.alerts, summary.delivered, summary.detected) == (2, 2, 7)
    assert summary.suppressed == 5 and summary.skipped == 0  # the rest of the burst
    assert (
        summary.alerts_by_signal["large_trade"] == 1 and summary.alerts_by_signal["long_shot"] == 1
    )
    assert summary.sink == "the console" and summary.store == "temporary (removed)"
    assert summary.wallets == 6
    printed = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "alert"]
    assert len(printed) == 2 and all(m.startswith("[alert ") for m in printed)  # the console
    assert any("read 100 of 367" in line for line in progress)
    text = "\n".join(summary.lines())
    assert "367 trades" in text and "2 alerts" in text and "1 unreadable line(s)" in text


async def test_a_window_and_a_kept_store(trades_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/kept.db"
    request = ReplayRequest(
        trades_file, since=T0 + 7 * DAY, until=parse_time("2026-01-13T00:00"), store_url=url
    )
    sink = Recorder()
    summary = await run_replay(request, {}, sink=sink)
    assert summary.rows == 2 * 36 + 1 and summary.outside == 367 - summary.rows
    assert summary.alerts == 1 and summary.store == url
    assert summary.sink == "recorder" and summary.delivered == 1
    assert [a.summary["transactionHash"] for a in sink.alerts] == ["0xd"]
    store = SqliteStore.from_url(url)
    await store.open()
    try:
        assert await store.count_unchecked() == 0
        assert len(await store.list_alerts()) == 1  # kept
    finally:
        await store.close()
    again = await run_replay(request, {})  # the same window again: nothing new, no alert
    assert again.stored == 0 and again.checked == 0 and again.alerts == 0


async def test_bad_input_is_one_clear_error(trades_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the replay file"):
        await run_replay(ReplayRequest(tmp_path / "missing.jsonl"), {})
    with pytest.raises(InvalidArgumentError, match="--since must be before --until"):
        await run_replay(ReplayRequest(trades_file, since=T0 + 10, until=T0), {})
    with pytest.raises(InvalidArgumentError, match="--since 'yesterday' is not a time"):
        parse_time("yesterday", "--since")
    assert parse_time("2026-01-04") == T0 == parse_time(str(T0))
    assert parse_time("2026-01-04T02:00+02:00") == T0
