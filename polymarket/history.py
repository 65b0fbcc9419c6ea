"""What the store holds before a trade: the wallet's history and the market's 24 h volume.

A trade's signals are computed from the store *as of that trade* (every stored trade ordered
before it, by ``(timestamp, trade_key)``), never from statistics that a later job refreshes
(the hourly whale update). So a trade gets the same signals whichever job checks it, in
whatever order ingest, analysis, whale updates and anomaly batches run, as long as the
trades before it are stored.

:func:`histories` answers for a whole batch with five store reads, whatever its size: the
totals before the batch's first trade (per wallet, and per market over the 24 h before it),
then the trades of the batch's wallets and markets inside the batch's time span, and the
market trades that leave the 24 h window while the batch advances; each trade's history is
then a running sum in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from polyjobs.polymarket.models import Trade, TradePoint, WalletHistory, cursor_of
from polyjobs.polymarket.store import Store

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class AsOf:
    """One trade's context: its wallet's history before it, and the USDC volume of its market
    in the 24 h up to and including it."""

    wallet: WalletHistory
    market_volume: float


async def histories(
    store: Store, trades: Sequence[Trade], *, window: float = DAY
) -> dict[str, AsOf]:
    """The :class:`AsOf` of every trade of ``trades`` (stored trades), by trade key."""
    if not trades:
        return {}
    ordered = sorted(trades, key=cursor_of)
    first, last = cursor_of(ordered[0]), ordered[-1].timestamp
    wallets = sorted({t.proxy_wallet for t in ordered})
    markets = sorted({t.condition_id for t in ordered})
    wallet_base = await store.wallet_totals(wallets, first)
    market_base = await store.market_totals(markets, first[0] - window, first)
    points = await store.trade_points(wallets, markets, first[0], last)
    span = [p for p in points if p.cursor >= first]
    leaving: list[TradePoint] = []
    if last > first[0]:  # the window's start moves: rows counted in the base leave it
        before = await store.trade_points([], markets, first[0] - window, last - window)
        leaving = [p for p in before if p.cursor < first and p.timestamp < last - window]
    return _walk(ordered, wallet_base, market_base, span, leaving, window)


def _walk(
    ordered: list[Trade],
    wallet_base: dict[str, WalletHistory],
    market_base: dict[str, float],
    span: list[TradePoint],
    leaving: list[TradePoint],
    window: float,
) -> dict[str, AsOf]:
    wallet_set = {t.proxy_wallet for t in ordered}
    market_set = {t.condition_id for t in ordered}
    wallets = {w: replace(wallet_base.get(w, WalletHistory())) for w in wallet_set}
    volumes = {m: market_base.get(m, 0.0) for m in market_set}
    wallet_rows = [p for p in span if p.wallet in wallet_set]
    market_rows = [p for p in span if p.condition_id in market_set]
    exits = leaving + market_rows  # every row counted in a window, by time (leaving < span)
    iw = im = ix = 0
    out: dict[str, AsOf] = {}
    for trade in ordered:
        cursor = cursor_of(trade)
        while iw < len(wallet_rows) and wallet_rows[iw].cursor < cursor:
            _add(wallets[wallet_rows[iw].wallet], wallet_rows[iw])
            iw += 1
        while im < len(market_rows) and market_rows[im].cursor <= cursor:
            volumes[market_rows[im].condition_id] += market_rows[im].usdc
            im += 1
        while ix < len(exits) and exits[ix].timestamp < trade.timestamp - window:
            volumes[exits[ix].condition_id] -= exits[ix].usdc  # counted: it is before `trade`
            ix += 1
        wallet = wallets[trade.proxy_wallet]
        out[trade.trade_key] = AsOf(
            WalletHistory(wallet.trade_count, round(wallet.volume, 6), wallet.first_seen),
            round(max(volumes[trade.condition_id], 0.0), 6),
        )
    return out


def _add(wallet: WalletHistory, point: TradePoint) -> None:
    wallet.trade_count += 1
    wallet.volume += point.usdc
    if wallet.first_seen is None or point.timestamp < wallet.first_seen:
        wallet.first_seen = point.timestamp
