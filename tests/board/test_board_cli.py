"""``polyjobs board``: binding rules, the token, the missing extra, a clean stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from polyjobs import Queue, open_backend

if TYPE_CHECKING:
    from tests.board.conftest import BoardCli


def test_open_bind_without_token_is_refused(tmp_path: Path, board_cli: BoardCli) -> None:
    done = board_cli.run(board_cli.env(), "board", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0  # one line
    assert "refusing to serve the board on 0.0.0.0 without a token" in done.stderr
    assert "POLYJOBS_BOARD_TOKEN" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()  # refused before opening anything


def test_a_short_token_is_refused(tmp_path: Path, board_cli: BoardCli) -> None:
    done = board_cli.run(board_cli.env(POLYJOBS_BOARD_TOKEN="short"), "board", "--port", "0")
    assert done.returncode == 1 and "at least 16 characters" in done.stderr


def test_token_guards_an_open_bind(tmp_path: Path, token: str, board_cli: BoardCli) -> None:
    env = board_cli.env(POLYJOBS_BOARD_TOKEN=token)
    board_cli.create_database()
    with board_cli.serve(env, "--host", "0.0.0.0") as (base, proc):
        base = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{base}/api/queues").status_code == 401
        answer = httpx.get(f"{base}/api/queues", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_insecure_serves_an_open_bind_without_token(tmp_path: Path, board_cli: BoardCli) -> None:
    board_cli.create_database()
    with board_cli.serve(board_cli.env(), "--host", "0.0.0.0", "--insecure") as (base, proc):
        base = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{base}/api/queues").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_read_only_board_over_sqlite(tmp_path: Path, board_cli: BoardCli) -> None:
    db = tmp_path / "jobs.db"

    async def add() -> str:
        async with open_backend(f"sqlite:///{db}") as backend:
            return (await Queue("cli-q", backend).add("job", {"n": 1})).id

    job_id = asyncio.run(add())
    env = board_cli.env()
    with board_cli.serve(env, "--backend", f"sqlite:///{db}", "--read-only") as (base, _):
        rows = {r["queue"]: r for r in httpx.get(f"{base}/api/queues").json()["queues"]}
        assert rows["cli-q"]["waiting"] == 1 and not rows["cli-q"]["registered"]
        assert rows["polymarket-analysis"]["registered"]  # the built-in processors' queues
        # the detector's listings (its plugin's polyjobs_listings), read-only like the rest
        alerts = httpx.get(f"{base}/api/lists/alerts").json()
        assert alerts["total"] == 0 and alerts["columns"][0]["key"] == "trade_time"
        session = httpx.get(f"{base}/api/session")
        csrf = session.json()["csrf"]
        refused = httpx.post(
            f"{base}/api/queues/cli-q/jobs/{job_id}/remove",
            headers={"X-CSRF-Token": csrf},
            cookies=session.cookies,
        )
        assert refused.status_code == 403


def test_missing_extra_is_one_line(tmp_path: Path, board_cli: BoardCli) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; "
        "from polyjobs.cli.app import main; sys.argv = ['polyjobs', 'board']; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=board_cli.env(), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: the board needs the 'board' extra: pip install 'polyjobs[board]'"
    )


def test_a_board_on_another_loopback_address_answers_its_own_url(board_cli: BoardCli) -> None:
    board_cli.create_database()
    with board_cli.serve(board_cli.env(), "--host", "127.0.0.2") as (base, proc):
        assert base.startswith("http://127.0.0.2:")
        assert httpx.get(f"{base}/admin/queues").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_insecure_warns_at_startup(board_cli: BoardCli) -> None:
    board_cli.create_database()
    with board_cli.serve(board_cli.env(), "--host", "0.0.0.0", "--insecure") as (_, proc):
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        assert warning.startswith("warning: --insecure: no token")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
