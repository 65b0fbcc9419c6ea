"""The PostgreSQL schema: its version, its forward migrations, and applying them.

Everything polyjobs stores lives in one PostgreSQL schema (``?schema=``, default ``polyjobs``),
so one database can hold several deployments. ``schema_version`` holds one row per applied
migration. ``schema_<n>.sql`` takes a schema from version ``n - 1`` to ``n``; migrations are
only ever added, never edited. A schema at a version above :data:`SCHEMA_VERSION` was written
by a newer polyjobs and is never touched.

Migrations run in one transaction under a transaction-level advisory lock named after the
schema, so processes starting together apply them once; the others wait and find the schema
current. They run when a backend opens (unless the URL says ``?migrate=false``) and from
``polyjobs migrate``.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import TYPE_CHECKING

from polyjobs.errors import BackendUnavailableError

if TYPE_CHECKING:
    import asyncpg

SCHEMA_VERSION = 20

#: Tables of a polyjobs schema; a schema without ``schema_version`` that holds any other table
#: belongs to another application.
OWN_TABLES = frozenset(
    {
        "schema_version",
        "queues",
        "jobs",
        "job_logs",
        "schedules",
        "workers",
        "rate_starts",
        "control",
        "job_deps",
        "dedup",
        "metrics",
        "job_groups",
        "group_starts",
    }
)


def migration_sql(version: int) -> str:
    return (files(__package__) / f"schema_{version}.sql").read_text(encoding="utf-8")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lock_key(schema: str) -> int:
    """A signed 64-bit advisory lock key for migrating ``schema``."""
    digest = hashlib.sha256(f"polyjobs-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def current_version(conn: asyncpg.Connection, schema: str) -> int | None:
    """The schema's version, 0 for a schema without polyjobs tables, None when the schema
    does not exist."""
    exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    if exists is None:
        return None
    table = await conn.fetchval(
        "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_version'", schema
    )
    if table is None:
        return 0
    version = await conn.fetchval(
        f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.schema_version"
    )
    return int(version)


async def migrate(
    conn: asyncpg.Connection, schema: str, where: str, target: int = SCHEMA_VERSION
) -> tuple[int, int]:
    """Bring ``schema`` to ``target`` (this polyjobs' :data:`SCHEMA_VERSION`; the tests make
    older schemas with a lower one); return (version before, version after).

    ``where`` names the database in messages (a redacted URL)."""
    quoted = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        before = await current_version(conn, schema)
        if before is None:
            await conn.execute(f"CREATE SCHEMA {quoted}")
            before = 0
        check_version(before, schema, where)
        if before == 0:
            foreign = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
            others = sorted({r["tablename"] for r in foreign} - OWN_TABLES)
            if others:
                raise BackendUnavailableError(
                    f"schema {schema!r} of {where} holds tables that are not polyjobs' "
                    f"({', '.join(others[:3])}); choose another ?schema="
                )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {quoted}.schema_version ("
                "version integer PRIMARY KEY, applied double precision NOT NULL)"
            )
        await conn.execute(f"SET LOCAL search_path = {quoted}")
        for version in range(before + 1, target + 1):
            await conn.execute(migration_sql(version))
            await conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES ($1, extract(epoch from "
                "clock_timestamp()))",
                version,
            )
    return before, max(before, target)


def check_version(version: int, schema: str, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise BackendUnavailableError(
            f"schema {schema!r} of {where} was written by a newer polyjobs (schema {version}, "
            f"this version reads up to {SCHEMA_VERSION}); upgrade polyjobs or use another "
            "?schema="
        )
