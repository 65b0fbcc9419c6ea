"""``polyjobs start --demo --burst`` in a subprocess, on a clean environment: every queue did
work, every planted anomaly raised an alert on the console, the planted noise did not, and
the temporary state directory is gone afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def test_demo_with_processes_is_prepared_once_and_run_by_the_workers(tmp_path: Path) -> None:
    """`start -P 2 --demo`: the parent prepares and seeds the demo once, the workers run its
    queues as the demo shapes them, one SIGTERM stops all and the state dir is removed; with
    --burst it is refused in one line."""
    import signal
    import time

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in CLEARED
    }
    refused = subprocess.run(
        [POLYJOBS, "start", "-P", "2", "--demo", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "--demo --burst" in refused.stderr
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as sink, err.open("wb") as errors:
        proc = subprocess.Popen(
            [POLYJOBS, "start", "-P", "2", "--demo"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=errors,
        )
    try:
        deadline = time.monotonic() + 40
        while not (found := re.search(r"state in (\S+)", err.read_text())):
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.05)
        url = f"sqlite:///{found.group(1)}/polyjobs.db"
        # the seeded ingest job and the demo's own 2-second schedule, run by the workers
        # ... and both workers up (on a loaded machine the second can start well after the
        # first has run the seeded jobs; a SIGTERM before it is up ends it unannounced)
        while _completed(url, "polymarket-ingest") < 2 or not all(
            f"[worker {slot}] polyjobs: backend" in err.read_text() for slot in (1, 2)
        ):
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = err.read_text()
    assert text.count("demo: replaying at") == 1, text  # seeded once, by the parent
    assert text.count("polyjobs demo: state in") == 1, text
    for slot in (1, 2):
        assert f"[worker {slot}] polyjobs: stopped" in text, text
    home = re.search(r"polyjobs demo: state in (\S+)", text)
    assert home is not None and not Path(home.group(1)).exists()
    assert "Traceback" not in text


def _completed(url: str, queue: str) -> int:
    import asyncio

    from polyjobs import Queue, open_backend

    async def count() -> int:
        async with open_backend(url) as backend:
            return int((await Queue(queue, backend).counts())["completed"])

    return asyncio.run(count())


def test_the_jobs_a_supervising_demo_seeds_have_their_queues_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`start -P N --demo` seeds the demo in the parent: its first jobs get their queues'
    options (attempts, backoff, timeout, retention) as they do when one process runs the demo,
    not a bare queue's defaults (one attempt: a passing failure would end them for good)."""
    from polyjobs import Queue, open_backend
    from polyjobs.cli.start import _shared_backend
    from polyjobs.processors import demo
    from polyjobs.processors.queues import INGEST, WHALE_UPDATES

    for key in list(os.environ):
        if key.startswith(("POLYJOBS_", "BULLMQ_")) or key in CLEARED:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    setup = demo.prepare_demo(home=tmp_path / "demo")
    asyncio.run(_shared_backend(None, None, None, [], [], (demo, setup)))

    async def seeded() -> dict[str, dict[str, Any]]:
        async with open_backend(setup.backend_url) as backend:
            ingest = await Queue(INGEST.name, backend).jobs("waiting", 0, -1)
            whale = await Queue(WHALE_UPDATES.name, backend).jobs("delayed", 0, -1)
            return {j.queue_name: j.options.to_json() for j in [*ingest, *whale]}

    found = asyncio.run(seeded())
    assert set(found) == {INGEST.name, WHALE_UPDATES.name}
    for spec in (INGEST, WHALE_UPDATES):
        given = spec.job_options().to_json()
        keys = ("attempts", "backoff", "timeout", "remove_on_complete", "remove_on_fail")
        expected = {k: given.get(k) for k in keys}
        assert {k: found[spec.name].get(k) for k in keys} == expected, spec.name
