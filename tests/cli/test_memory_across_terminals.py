"""`polyjobs start --backend memory://` serves its in-memory backend to the other commands
(a real `start` process; the other commands as real processes too, as from another
terminal)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.support import POLYJOBS, polyjobs

MEMORY = ("--backend", "memory://")


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout}s"
        time.sleep(0.05)


def test_memory_backend_is_reached_from_other_commands(cli_env: dict[str, str]) -> None:
    if "POLYJOBS_BACKEND" in cli_env:
        pytest.skip("memory:// only")
    env = cli_env
    home = Path(env["POLYJOBS_HOME"])
    proc = subprocess.Popen(
        [POLYJOBS, "start", "-q", "echo", "--no-schedule", *MEMORY],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = home / "polyjobs.sock"
        wait_for(sock, proc)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # owner-only
        done = polyjobs(env, "enqueue", "echo", "-d", '{"text": "hi"}', "--wait", *MEMORY)
        assert done.returncode == 0, done.stderr
        assert 'completed: "HI"' in done.stdout
        rows = {r["queue"]: r for r in json.loads(polyjobs(env, "stats", "--json", *MEMORY).stdout)}
        assert rows["test-echo"]["completed"] == 1 and rows["test-echo"]["workers"] == 1
        paused = polyjobs(env, "queue", "pause", "echo", *MEMORY)
        assert paused.returncode == 0, paused.stderr
        added = polyjobs(env, "enqueue", "echo", "-d", '{"text": "later"}', "--json", *MEMORY)
        assert json.loads(added.stdout)["state"] == "waiting"
        listed = polyjobs(env, "jobs", "list", "echo", "--json", *MEMORY)
        assert [j["data"] for j in json.loads(listed.stdout)] == [{"text": "later"}]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "serving memory:// to other commands" in err
    assert not sock.exists()
    gone = polyjobs(env, "enqueue", "echo", "-d", '{"text": "lost"}', *MEMORY)
    assert gone.returncode == 1 and gone.stdout == ""  # never `added` for a lost job
    assert gone.stderr.count("\n") == 1 and "no `polyjobs start --backend memory://`" in gone.stderr
