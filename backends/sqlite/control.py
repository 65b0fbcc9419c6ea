"""The control channel on SQLite: one ``control`` table for every process sharing the file.

``send`` is the body of one ``BEGIN IMMEDIATE`` transaction (the write lock serialises senders
across processes, so times strictly increase); ``since`` reads outside a transaction.
"""

from __future__ import annotations

import sqlite3
import time

from polyjobs.backend import ControlMessage

#: How many messages the table keeps (the contract asks for at least 100).
KEEP = 100
#: The least step between two message times (well above a double's resolution at epoch times).
STEP = 1e-6


def send(conn: sqlite3.Connection, command: str, payload_json: str) -> ControlMessage:
    """Store a message at ``max(now, last + STEP)`` and keep the newest :data:`KEEP`."""
    last = conn.execute("SELECT max(at) FROM control").fetchone()[0]
    at = time.time()
    if last is not None and at <= last:
        at = last + STEP
    conn.execute(
        "INSERT INTO control (at, command, payload) VALUES (?, ?, ?)", (at, command, payload_json)
    )
    conn.execute(
        "DELETE FROM control WHERE at < (SELECT at FROM control ORDER BY at DESC LIMIT 1 OFFSET ?)",
        (KEEP - 1,),
    )
    return ControlMessage(at, command, payload_json)


def since(conn: sqlite3.Connection, after: float) -> list[ControlMessage]:
    """Messages sent after ``after``, oldest first."""
    rows = conn.execute(
        "SELECT at, command, payload FROM control WHERE at > ? ORDER BY at", (after,)
    ).fetchall()
    return [ControlMessage(float(r[0]), str(r[1]), str(r[2])) for r in rows]
