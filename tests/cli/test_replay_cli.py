"""``polyjobs replay`` in a subprocess on a clean environment: the shipped example file is
checked to the end offline, every planted anomaly alerts once on the console, and bad input
is one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from polyjobs.polymarket.synthetic import generate

POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLEARED = ("MONGODB_URI", "REDIS_URL", "DISCORD_WEBHOOK_URL")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in CLEARED
    }
    return subprocess.run(
        [POLYJOBS, "replay", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_replay_the_example_file(tmp_path: Path) -> None:
    done = _run(tmp_path, str(EXAMPLES / "trades.jsonl"))
    assert done.returncode == 0, done.stderr
    planted = generate().planted
    expected = sum(len(p["transactionHashes"]) for p in planted if p["expect"] == "alert")
    assert len(re.findall(r"^\[alert [0-9a-f]+\]", done.stdout, flags=re.M)) == expected
    assert "trades.jsonl: 3050 trades; 3050 new in the store" in done.stdout
    assert "3050 checked" in done.stdout
    assert f"{expected} of {expected} alerts delivered to the console" in done.stdout
    assert "alerts by signal: " in done.stdout
    assert not (tmp_path / ".polyjobs").exists()  # a temporary store, nothing left behind


def test_replay_a_window_and_bad_input(tmp_path: Path) -> None:
    first_hour = _run(
        tmp_path,
        str(EXAMPLES / "trades.jsonl"),
        "--since",
        "2026-01-04",
        "--until",
        "2026-01-04T01:00",
    )
    assert first_hour.returncode == 0, first_hour.stderr
    match = re.search(r"(\d+) trades \((\d+) outside the window\)", first_hour.stdout)
    assert match is not None and int(match.group(1)) + int(match.group(2)) == 3050
    assert 0 < int(match.group(1)) < 3050
    missing = _run(tmp_path, "missing.jsonl")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read the replay file missing.jsonl")
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    bad = _run(tmp_path, str(EXAMPLES / "trades.jsonl"), "--since", "soon")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "--since 'soon' is not a time" in bad.stderr
