"""What `polyjobs start` prints: JSON lines with one schema (alerts included), and what it
waits for when it is asked to stop (real SIGINTs to a real process)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from polyjobs.cli.console import Console
from polyjobs.cli.logs import Events, EventsHandler
from tests.cli.support import POLYJOBS, add_jobs, wait_active

KEYS = {"time", "level", "event", "queue", "job_id", "message", "detail"}
CLEARED = ("MONGODB_URI", "REDIS_URL", "DISCORD_WEBHOOK_URL")


def test_json_logs_are_one_object_per_line_alerts_included(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in CLEARED
    }
    done = subprocess.run(
        [POLYJOBS, "start", "--demo", "--burst", "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # one stream
    records = [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON
    assert all(set(r) == KEYS for r in records)
    events = {r["event"] for r in records}
    assert {"started", "completed", "alert", "stopped"} <= events, events
    alerts = [r for r in records if r["event"] == "alert"]
    assert all(r["detail"]["alert_id"] and r["message"].startswith("[alert ") for r in alerts)
    jobs = [r for r in records if r["event"] == "completed"]
    assert all(r["queue"] and r["job_id"] for r in jobs)


def test_log_records_in_json_carry_their_logger_and_exception(capsys: object) -> None:
    handler = EventsHandler(Events(Console(), "json"))
    logger = logging.getLogger("polyjobs.test.json")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    handler.emit(record)
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    line = json.loads(out)
    assert set(line) == KEYS and line["event"] == "log" and line["level"] == "error"
    assert line["message"] == "failed x" and line["detail"]["logger"] == "polyjobs.test.json"
    assert "ValueError: boom" in line["detail"]["exception"]


def test_ctrl_c_says_what_start_waits_for(cli_env: dict[str, str]) -> None:
    if "POLYJOBS_BACKEND" in cli_env:
        return  # the message does not depend on the backend
    proc = subprocess.Popen(
        [POLYJOBS, "start", "-q", "slow", "--no-schedule", "--grace", "20s"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        db = Path(cli_env["POLYJOBS_HOME"]) / "polyjobs.db"
        assert proc.stderr is not None
        assert "polyjobs: backend" in proc.stderr.readline()  # started, database created
        assert db.exists()
        add_jobs(cli_env, "test-slow", [{"seconds": 60}] * 3)
        wait_active(cli_env, "test-slow", 3)
        proc.send_signal(signal.SIGINT)
        line = proc.stderr.readline()
        assert line.strip() == "stopping: 3 active job(s), up to 20s; Ctrl-C again to force"
        proc.send_signal(signal.SIGINT)
        assert proc.stderr.readline().strip() == (
            "stopping now: unfinished jobs go back to their queues"
        )
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_ctrl_c_ends_stats_watch_normally(cli_env: dict[str, str]) -> None:
    add_jobs(cli_env, "test-echo", [{"text": "x"}])
    proc = subprocess.Popen(
        [POLYJOBS, "stats", "--watch", "--interval", "500ms"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.strip(), proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "error" not in err
