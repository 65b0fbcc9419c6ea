"""The CLI end to end, with real processes and real signals, on SQLite and on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import (
    POLYJOBS,
    add_jobs,
    polyjobs,
    stats,
    stats_once_started,
    wait_active,
)


@pytest.fixture
def started(cli_env: dict[str, str]) -> Iterator[tuple[dict[str, str], subprocess.Popen[str]]]:
    """`polyjobs start` in the background, ready once its workers are in the registry."""
    proc = subprocess.Popen(
        [
            POLYJOBS,
            "start",
            "-q",
            "echo",
            "-q",
            "slow",
            "-q",
            "fail",
            "--no-schedule",
            "--grace",
            "15",
        ],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            rows = stats_once_started(cli_env)
            if rows.get("test-echo", {}).get("workers") and rows.get("test-slow", {}).get(
                "workers"
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail("polyjobs start did not register its workers in 30 s")
        yield cli_env, proc
    finally:  # never leave a `polyjobs start` behind, whatever failed
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_start_enqueue_stats_stop(started: tuple[dict[str, str], subprocess.Popen[str]]) -> None:
    env, proc = started
    waited = polyjobs(
        env, "enqueue", "echo", "--data", '{"text": "e2e"}', "--wait", "--timeout", "20"
    )
    assert waited.returncode == 0, waited.stderr
    assert 'completed: "E2E"' in waited.stdout
    failed = polyjobs(env, "enqueue", "fail", "--wait", "--timeout", "20")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "failed: boom from the test plugin" in failed.stderr

    add_jobs(env, "test-slow", [{"seconds": 5.0 + i / 10} for i in range(5)])
    wait_active(env, "test-slow", 5)

    stopped = polyjobs(env, "stop", "--timeout", "30", timeout=40)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped polyjobs (pid {proc.pid}" in stopped.stdout
    out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "completed test-echo" in out
    rows = stats(env)
    assert rows["test-slow"]["active"] == 0
    assert rows["test-slow"]["completed"] == 5  # the grace let them finish
    assert "polyjobs: stopped" in err


def test_second_signal_hands_unfinished_jobs_back(
    started: tuple[dict[str, str], subprocess.Popen[str]],
) -> None:
    env, proc = started
    add_jobs(env, "test-slow", [{"seconds": 30}] * 3)
    wait_active(env, "test-slow", 3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 0
    rows = stats(env)
    assert (rows["test-slow"]["active"], rows["test-slow"]["waiting"]) == (0, 3)


def test_start_with_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    env = {
        "POLYJOBS_HOME": str(tmp_path),
        "POLYJOBS_BACKEND": "redis://admin:hunter2@127.0.0.1:1/0",
    }
    done = polyjobs(env, "start", "--burst")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert "redis://admin:***@127.0.0.1:1/0" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
