"""The synthetic trade set: deterministic, realistic in shape, its planted anomalies listed,
and ``examples/trades.jsonl`` is exactly what the generator writes."""

from __future__ import annotations

import json
from pathlib import Path

from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.synthetic import DEFAULT_SEED, generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_deterministic_and_shaped_like_the_brief() -> None:
    one, two = generate(), generate()
    assert one.rows == two.rows and one.planted == two.planted
    assert generate(DEFAULT_SEED + 1).rows != one.rows
    assert 2000 <= len(one.rows) <= 5000
    assert 24 <= len({r["conditionId"] for r in one.rows}) <= 60
    assert 200 <= len({r["proxyWallet"] for r in one.rows}) <= 500
    trades = [Trade.from_api(r) for r in one.rows]
    assert len({t.trade_key for t in trades}) == len(trades)
    planted_tx = {tx for p in one.planted for tx in p["transactionHashes"]}
    ordinary = [t for t in trades if t.transaction_hash not in planted_tx]
    assert max(t.usdc_size for t in ordinary) < 1000  # below every anomaly threshold
    kinds = {p["kind"] for p in one.planted}
    assert kinds == {
        "whale",
        "fresh_long_shot",
        "size_vs_wallet",
        "size_vs_market",
        "settlement_noise",
    }


def test_examples_file_is_the_generator_output(tmp_path: Path) -> None:
    generate().write(tmp_path / "trades.jsonl", tmp_path / "trades.planted.json")
    assert (EXAMPLES / "trades.jsonl").read_bytes() == (tmp_path / "trades.jsonl").read_bytes()
    shipped = json.loads((EXAMPLES / "trades.planted.json").read_text())
    assert shipped == json.loads((tmp_path / "trades.planted.json").read_text())
