"""`polyjobs alerts` and `polyjobs wallets`: the detector's findings from its store, paged,
as text tables (user data never read as markup) and as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from polyjobs.polymarket.models import Alert, Signal, WalletStats
from polyjobs.polymarket.store import open_store
from tests.cli.support import polyjobs

MARKUP_TITLE = "[red]rain[/red]"


def seed(home: Path) -> None:
    async def go() -> None:
        async with open_store(f"sqlite:///{home / 'polymarket.db'}") as store:
            for i in range(3):
                alert = Alert(
                    dedupe_key=f"anomaly:v1:t{i}",
                    kind="anomaly",
                    severity="high" if i == 2 else "medium",
                    trade_key=f"t{i}",
                    wallet="0x" + f"{i}" * 40,
                    condition_id="0x" + "c" * 64,
                    signals=[Signal("large_trade", 15000.0 + i, 10000.0, "USDC")],
                    score=0.5 + i / 10,
                    summary={"title": MARKUP_TITLE, "eventSlug": "rain", "pseudonym": f"p{i}"},
                    created_at=1_700_000_000.0 + i,
                )
                assert await store.insert_alert(alert)
            await store.upsert_wallets(
                [
                    WalletStats(
                        "0x" + "a" * 40, 10, 250_000.0, is_whale=True, whale_reasons=["volume"]
                    ),
                    WalletStats("0x" + "b" * 40, 2, 900.0, pseudonym="[link=x]small[/link]"),
                ]
            )

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(go())


def test_alerts_and_wallets_listings(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = {
        "POLYJOBS_HOME": str(home),
        "POLYJOBS_BACKEND": f"sqlite:///{tmp_path / 'jobs.db'}",
        "COLUMNS": "250",  # pytest's environment may say 80: the rows would be cut
    }
    empty = polyjobs(env, "alerts")
    assert empty.returncode == 0, empty.stderr
    assert "no alerts" in empty.stdout
    seed(home)

    listed = polyjobs(env, "alerts", "--json", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["total"] == 3 and page["offset"] == 0
    first = page["items"][0]
    assert first["severity"] == "high" and first["title"] == MARKUP_TITLE
    assert first["signals"] == [
        {"name": "large_trade", "value": 15002.0, "threshold": 10000.0, "detail": "USDC"}
    ]
    assert first["delivery"]["status"] == "pending"
    assert first["links"]["market"] == "https://polymarket.com/event/rain"
    second = json.loads(polyjobs(env, "alerts", "--json", "--limit", "2", "--page", "2").stdout)
    assert [a["trade_key"] for a in second["items"]] == ["t0"]

    text = polyjobs(env, "alerts")
    assert text.returncode == 0, text.stderr
    flat = " ".join(text.stdout.split())  # however the table wraps its cells
    assert "[red]rain[/red]" in text.stdout  # shown as text, not as markup
    assert "large_trade 15002" in flat and "10000)" in flat

    whales = json.loads(polyjobs(env, "wallets", "--whales", "--json").stdout)
    assert [w["address"] for w in whales["items"]] == ["0x" + "a" * 40]
    assert whales["items"][0]["whale_reasons"] == ["volume"]
    every = polyjobs(env, "wallets")
    assert every.returncode == 0, every.stderr
    assert "[link=x]small[/link]" in " ".join(every.stdout.split())
    assert every.stdout.index("0x" + "a" * 40) < every.stdout.index("0x" + "b" * 40)

    bad = polyjobs(env, "wallets", "--limit", "0")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "limit" in bad.stderr
