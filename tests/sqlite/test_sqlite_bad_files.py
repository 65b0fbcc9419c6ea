"""Files the SQLite backend must refuse with one clear line, leaving them exactly as they were."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from polyjobs import BackendUnavailableError, Queue, open_backend
from polyjobs.backends.sqlite.backend import parse_url
from polyjobs.errors import InvalidArgumentError

PROC = str(Path(__file__).with_name("sqlite_proc.py"))


async def _make_db(path: Path, jobs: int = 200) -> None:
    async with open_backend(f"sqlite:///{path}") as backend:
        await Queue("q", backend).add_bulk([("j", {"pad": "x" * 500})] * jobs)


async def _refused(path: Path) -> str:
    before = path.read_bytes()
    siblings = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(BackendUnavailableError) as info:
        async with open_backend(f"sqlite:///{path}"):
            pass
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == siblings
    return message


def _truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _keep_header(data: bytes) -> bytes:
    return data[:100]


def _keep_too_little(data: bytes) -> bytes:
    return data[:50]


def _scramble_page(data: bytes) -> bytes:
    page = int.from_bytes(data[16:18], "big")
    return data[: page * 2] + bytes(range(200)) + data[page * 2 + 200 :]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_truncate_half, "is truncated"),
        (_keep_header, "is truncated"),
        (_keep_too_little, "is not a SQLite database"),
        (_scramble_page, "is damaged"),
    ],
)
async def test_damaged_file_is_refused_and_untouched(
    tmp_path: Path, damage: Callable[[bytes], bytes], words: str
) -> None:
    good = tmp_path / "good.db"
    await _make_db(good)
    bad = tmp_path / "bad" / "jobs.db"
    bad.parent.mkdir()
    bad.write_bytes(damage(good.read_bytes()))
    message = await _refused(bad)
    assert words in message and "move it aside" in message


async def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    assert "is not a SQLite database" in await _refused(path)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    await _make_db(path, jobs=3)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    message = await _refused(path)
    assert "newer polyjobs (schema 99" in message and "upgrade polyjobs" in message


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    assert "belongs to another application" in await _refused(path)


async def test_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="is not a file"):
        async with open_backend(f"sqlite:///{tmp_path}"):
            pass


async def test_empty_file_becomes_a_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    await _make_db(path, jobs=1)
    async with open_backend(f"sqlite:///{path}") as backend:
        assert (await backend.counts("q"))["waiting"] == 1


def _without_root_powers() -> list[str]:
    """Run a child without the root's right to ignore file modes, so modes bite."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def _open_in_child(path: Path) -> str:
    result = subprocess.run(
        [*_without_root_powers(), sys.executable, PROC, "open", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


@pytest.mark.parametrize("existing", [False, True])
async def test_read_only_directory_is_refused(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "jobs.db"
    if existing:
        await _make_db(path, jobs=3)
    before = path.read_bytes() if existing else b""
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        line = _open_in_child(path)
    finally:
        folder.chmod(stat.S_IRWXU)
    assert line.startswith("BackendUnavailableError: ") and str(path) in line
    assert "writable" in line
    assert sorted(p.name for p in folder.iterdir()) == (["jobs.db"] if existing else [])
    if existing:
        assert path.read_bytes() == before


async def test_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    await _make_db(path, jobs=3)
    before = path.read_bytes()
    path.chmod(stat.S_IRUSR)
    line = _open_in_child(path)
    assert line.startswith("BackendUnavailableError: ") and "writable" in line
    assert path.read_bytes() == before  # (an empty -wal and a -shm may appear beside it)


def test_urls(tmp_path: Path) -> None:
    assert parse_url("sqlite:///jobs/x.db") == (Path("jobs/x.db"), "NORMAL")
    assert parse_url("sqlite:////abs/x.db") == (Path("/abs/x.db"), "NORMAL")
    assert parse_url("sqlite:///x.db?synchronous=full") == (Path("x.db"), "FULL")
    assert parse_url("sqlite:////a b/c#1/x%20.db") == (Path("/a b/c#1/x%20.db"), "NORMAL")
    for bad in ("sqlite://", "sqlite:///", "sqlite:///x.db?foo=1", "sqlite:///x.db?synchronous=no"):
        with pytest.raises(InvalidArgumentError):
            parse_url(bad)


async def test_creates_file_and_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    await _make_db(path, jobs=1)
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    conn.close()
