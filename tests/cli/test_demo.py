"""``polyjobs start --demo --burst`` in a subprocess, on a clean environment: every queue did
work, every planted anomaly raised an alert on the console, the planted noise did not, and
the temporary state directory is gone afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from polyjobs.polymarket.synthetic import generate
from polyjobs.processors import QUEUE_SPECS

POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
CLEARED = ("MONGODB_URI", "REDIS_URL", "DISCORD_WEBHOOK_URL")


def _short(wallet: str) -> str:
    return f"{wallet[:6]}...{wallet[-4:]}"


def test_demo_burst_raises_the_planted_alerts(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in CLEARED
    }
    env["DISCORD_WEBHOOK_URL"] = "https://discord.com/api/webhooks/1/never-called"
    done = subprocess.run(
        [POLYJOBS, "start", "--demo", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    alerts = re.findall(r"^\[alert [0-9a-f]+\]", out, flags=re.M)
    planted = generate().planted
    expected = sum(len(p["transactionHashes"]) for p in planted if p["expect"] == "alert")
    assert len(alerts) == expected
    for anomaly in planted:
        wallet = f"Wallet: {_short(anomaly['wallet'])} ({anomaly['pseudonym']})"
        shown = out.count(wallet)
        if anomaly["expect"] == "alert":
            assert shown == len(anomaly["transactionHashes"]), anomaly["kind"]
        else:
            assert shown == 0, anomaly["kind"]
    assert "Worth a look, not trading advice" in out
    # every alert can be acted on: its transaction on Polygonscan, its market, its time
    assert out.count("https://polygonscan.com/tx/0x") == len(alerts)
    assert out.count("  Market: ") == len(alerts)
    assert out.count("https://polymarket.com/event/event-") == len(alerts)
    assert out.count(" UTC\n") >= len(alerts)
    summary = re.search(r"demo: completed jobs per queue: (.*)", err)
    assert summary is not None, err
    completed = dict(item.rsplit(" ", 1) for item in summary.group(1).split(", "))
    assert set(completed) == {spec.name for spec in QUEUE_SPECS}
    assert all(int(n) >= 1 for n in completed.values())
    assert f"{expected} alerts delivered" in err
    home = re.search(r"polyjobs demo: state in (\S+)", err)
    assert home is not None and not Path(home.group(1)).exists()
    assert not (tmp_path / ".polyjobs").exists()  # nothing left in the working directory
    assert "never-called" not in out + err


def test_demo_refuses_another_backend(tmp_path: Path) -> None:
    done = subprocess.run(
        [POLYJOBS, "start", "--demo", "--burst", "--backend", "memory://"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "error: --demo runs on its own embedded backend" in done.stderr
    assert "Traceback" not in done.stderr
