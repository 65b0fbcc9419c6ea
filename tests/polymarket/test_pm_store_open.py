"""Opening the embedded store: several processes at once, and where its file lives."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from polyjobs.polymarket.config import load_config
from polyjobs.polymarket.models import Alert, Signal
from polyjobs.polymarket.sqlite_store import SqliteStore

OPEN = """
import asyncio, sys, time
from polyjobs.polymarket.sqlite_store import SqliteStore
async def main():
    for n in range(int(sys.argv[3])):
        store = SqliteStore(f"{sys.argv[1]}/{n}.db")
        time.sleep(max(float(sys.argv[2]) + n * 0.3 - time.time(), 0))  # all open together
        await store.open()
        await store.close()
asyncio.run(main())
"""


def test_processes_opening_a_new_store_file_at_once_all_succeed(tmp_path: Path) -> None:
    """8 processes open 5 new files, each file by all of them at the same instant (switching a
    new file to WAL does not wait on the busy timeout: without retries some fail)."""
    start = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(tmp_path), str(start), "5"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(60), p.communicate()[1]) for p in procs]
    assert all(code == 0 for code, _ in results), results


def test_the_default_store_lives_in_the_state_directory(tmp_path: Path) -> None:
    config = load_config({"POLYJOBS_HOME": str(tmp_path / "state")})
    assert config.store_url == f"sqlite:///{tmp_path / 'state' / 'polymarket.db'}"
    assert load_config({}).store_url == "sqlite:///.polyjobs/polymarket.db"


EARLIER_ALERTS = """
CREATE TABLE alerts (
    id TEXT PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, wallet TEXT NOT NULL,
    condition_id TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, locked_until REAL,
    attempt_id TEXT, last_error TEXT, discord_message_id TEXT, sent_at REAL, doc TEXT NOT NULL
);
CREATE INDEX alerts_wallet_market ON alerts (wallet, condition_id, created_at);
"""


async def test_a_store_file_of_the_earlier_version_is_migrated(tmp_path: Path) -> None:
    """Its alerts table had no trade time: the column is added and filled from the stored
    alert's trade, so cooldowns hold across the upgrade."""
    path = tmp_path / "old.db"
    old = Alert("anomaly:v1:k0", "anomaly", "high", "k0", "0xw", "0xm", [], 0.5)
    doc = {**old.to_doc(), "summary": {"timestamp": 5000.0}}
    doc.pop("tradeTime")
    with sqlite3.connect(path) as conn:
        conn.executescript(EARLIER_ALERTS)
        conn.execute(
            "INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                old.id,
                old.dedupe_key,
                "0xw",
                "0xm",
                1.0,
                "sent",
                1,
                None,
                None,
                None,
                None,
                None,
                2.0,
                json.dumps(doc),
            ),
        )
    for _ in range(2):  # opening again finds nothing to migrate
        store = SqliteStore(str(path))
        await store.open()
        kept = await store.get_alert(old.id)
        assert kept is not None and kept.trade_time == 5000.0 and kept.status == "sent"
        new = Alert(
            "anomaly:v1:k1",
            "anomaly",
            "high",
            "k1",
            "0xw",
            "0xm",
            [Signal("large_trade", 1, 1)],
            0.5,
            trade_time=5600.0,
        )
        raised = await store.raise_alert(new, 1800.0)
        assert (raised.outcome, raised.alert_id) == ("cooldown", old.id)
        await store.close()
