"""Write ``examples/trades.jsonl``: synthetic Polymarket trades for the replay source.

    python examples/generate_trades.py [--seed 7] [--out examples/trades.jsonl]

Deterministic for a seed: 3,050 Data API v1 rows over 4 hours, 36 markets, ~300 wallets.
Ordinary trades stay under $900; the planted anomalies (listed with their wallets and
transaction hashes in ``trades.planted.json`` next to the output) are:

- whale            3 wallets, 4 trades each of $12k-$60k          -> alerts (large_trade)
- fresh_long_shot  3 new wallets, one $6k-$9k BUY at <= 0.12      -> alerts (fresh, long shot)
- size_vs_wallet   2 wallets with 15 trades of ~$40, then $4,000  -> alerts
- size_vs_market   one $2,500 trade in the thinnest market        -> alert (size_vs_market)
- settlement_noise one $20,000 fill at 0.97                       -> NO alert (noise filter)

Replay it with ``POLYJOBS_INGEST_SOURCE=replay:examples/trades.jsonl polyjobs start`` or just
``polyjobs start --demo`` (which generates the same file in its temporary state directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyjobs.polymarket.synthetic import DEFAULT_SEED, generate

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=HERE / "trades.jsonl")
    args = parser.parse_args()
    out: Path = args.out
    synthetic = generate(args.seed)
    planted = out.with_name(out.stem + ".planted.json")
    synthetic.write(out, planted)
    print(f"wrote {len(synthetic.rows)} trades to {out}; planted: {planted}")


if __name__ == "__main__":
    main()
