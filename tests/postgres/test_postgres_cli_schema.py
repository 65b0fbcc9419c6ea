"""Commands that only look (or change what exists) neither create nor migrate a PostgreSQL
schema; `enqueue` (like `start` and `migrate`) creates it. Real `polyjobs` processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from polyjobs.backends.postgres import schema
from polyjobs.backends.postgres.url import PostgresUrl

POLYJOBS = str(Path(sys.executable).with_name("polyjobs"))
LOOKS = (["stats"], ["jobs", "list", "q"], ["queue", "pause", "q"])


def _commands(url: str, home: Path, *argvs: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands side by side (each a process of its own) and wait for all of them."""
    env = {**os.environ, "POLYJOBS_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [POLYJOBS, *argv, "--backend", url],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    done = []
    for proc, argv in zip(procs, argvs, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess([*argv], proc.returncode, out, err))
    return done


async def _versions(url: str) -> list[int] | None:
    """The schema's applied versions, None when the schema does not exist."""
    parsed = PostgresUrl.parse(url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", parsed.schema):
            rows = await conn.fetch(f'SELECT version FROM "{parsed.schema}".schema_version')
            return sorted(r["version"] for r in rows)
        return None
    finally:
        await conn.close()


def _refused(done: subprocess.CompletedProcess[str], complaint: str) -> None:
    assert done.returncode != 0, done.args
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], done.stderr
    assert "Traceback" not in done.stderr


async def test_looking_at_a_database_without_the_schema_creates_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    for done in await asyncio.to_thread(_commands, pg_url, tmp_path, *LOOKS):
        _refused(done, f"no polyjobs schema '{PostgresUrl.parse(pg_url).schema}'")
        assert "nothing was created" in done.stderr and "polyjobs enqueue" in done.stderr
    assert await _versions(pg_url) is None
    (added,) = await asyncio.to_thread(
        _commands, pg_url, tmp_path, ["enqueue", "q", "--create", "--data", '{"n": 1}']
    )
    assert added.returncode == 0, added.stderr
    assert await _versions(pg_url) == list(range(1, schema.SCHEMA_VERSION + 1))
    (stats,) = await asyncio.to_thread(_commands, pg_url, tmp_path, ["stats", "--json"])
    assert stats.returncode == 0 and '"q"' in stats.stdout, stats.stderr


async def test_an_older_schema_is_refused_by_looks_and_left_at_its_version(
    pg_url: str, tmp_path: Path
) -> None:
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        await schema.migrate(conn, parsed.schema, "test", target=schema.SCHEMA_VERSION - 1)
    finally:
        await conn.close()
    old = list(range(1, schema.SCHEMA_VERSION))
    for done in await asyncio.to_thread(_commands, pg_url, tmp_path, *LOOKS[:2]):
        _refused(done, f"is at version {schema.SCHEMA_VERSION - 1}")
        assert "polyjobs migrate" in done.stderr
    assert await _versions(pg_url) == old
