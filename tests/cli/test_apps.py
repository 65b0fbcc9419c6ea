"""Your own jobs: ``-A`` names an application; every command then knows its queues, and
``polyjobs start`` runs those alone (real processes, the README's example file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.support import polyjobs

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.myjobs"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No plugin named, no application chosen: only what a command line says."""
    for name in list(os.environ):
        if name.startswith(("POLYJOBS_", "BULLMQ_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)
    return {"POLYJOBS_HOME": str(tmp_path / "state")}


def run_in(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    here = Path.cwd()
    os.chdir(cwd)
    try:
        done = polyjobs(env, *args, timeout=90)  # a loaded machine starts Python slowly
    finally:
        os.chdir(here)
    return done.returncode, done.stdout, done.stderr


def test_start_runs_the_applications_jobs_and_nothing_else(env: dict[str, str]) -> None:
    for queue, data in (("resize", {"path": "cat.png", "width": 320}), ("greet", {"name": "Ada"})):
        code, out, err = run_in(ROOT, env, "enqueue", "-A", APP, queue, "--data", json.dumps(data))
        assert code == 0, err
        assert f"to {queue}" in out
    code, out, err = run_in(ROOT, env, "stats", "--app", APP, "--json")
    assert code == 0, err
    assert {row["queue"]: row["waiting"] for row in json.loads(out)} == {"resize": 1, "greet": 1}

    code, out, err = run_in(ROOT, env, "start", "-A", APP, "--burst", "--log-format", "json")
    assert code == 0, err
    started = [json.loads(line) for line in out.splitlines() if '"started"' in line]
    assert started and "resize (concurrency 4), greet (concurrency 1)" in started[0]["message"]
    for polymarket in ("polymarket", "ingest", "analysis", "whale", "anomaly"):
        assert polymarket not in out + err, (out, err)

    code, out, err = run_in(
        ROOT, env, "jobs", "list", "-A", APP, "resize", "-s", "completed", "--json"
    )
    assert code == 0, err
    assert [job["returnvalue"] for job in json.loads(out)] == [{"thumbnail": "cat.png@320w"}]
    code, out, err = run_in(ROOT, env, "jobs", "show", "-A", APP, "greet", "1", "--json")
    assert json.loads(out)["returnvalue"] == "hello, Ada"


def test_the_applications_validation_and_queue_names_answer_enqueue(env: dict[str, str]) -> None:
    code, _, err = run_in(ROOT, env, "enqueue", "-A", APP, "resize", "--data", '{"x": 1}')
    assert code == 1 and err.strip().splitlines() == [
        'error: resize needs {"path": "...", "width": N}'
    ]
    code, _, err = run_in(ROOT, env, "enqueue", "-A", APP, "analysis")
    assert code == 1 and "known: greet, resize" in err and "Traceback" not in err


def test_polyjobs_app_and_the_config_file_choose_the_application(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "shop.py").write_text(
        "from polyjobs import App, QueueSpec\n"
        "app = App('shop')\n"
        "@app.queue(every='1h')\n"
        "def send_receipts(job):\n"
        "    return 'sent'\n"
        "EXTRA = [QueueSpec('restock', lambda job: None)]\n",
        encoding="utf-8",
    )
    code, out, err = run_in(tmp_path, {**env, "POLYJOBS_APP": "shop"}, "enqueue", "send-receipts")
    assert code == 0, err
    (tmp_path / "polyjobs.toml").write_text('app = "shop:EXTRA"\n', encoding="utf-8")
    code, out, err = run_in(tmp_path, env, "stats", "--json")
    assert code == 0, err
    assert [row["queue"] for row in json.loads(out)] == ["restock", "send-receipts"]
    code, out, err = run_in(tmp_path, env, "config", "--json")
    assert code == 0, err
    assert "shop:EXTRA" in out


@pytest.mark.parametrize(
    ("source", "command", "message"),
    [
        (
            "raise RuntimeError('the database is down')\n",
            ("start", "-A", "badapp", "--burst"),
            "RuntimeError: the database is down",
        ),
        ("def broken(:\n", ("stats", "-A", "badapp"), "SyntaxError"),
        ("x = 1\n", ("enqueue", "-A", "badapp", "q"), "has no `app = polyjobs.App(...)`"),
    ],
)
def test_an_application_that_cannot_load_is_one_line(
    env: dict[str, str], tmp_path: Path, source: str, command: tuple[str, ...], message: str
) -> None:
    (tmp_path / "badapp.py").write_text(source, encoding="utf-8")
    code, out, err = run_in(tmp_path, env, *command)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "badapp" in lines[0] and message in lines[0], err
    assert "Traceback" not in err + out


def test_demo_is_the_applications_and_this_one_has_none(env: dict[str, str]) -> None:
    code, _, err = run_in(ROOT, env, "start", "-A", APP, "--demo", "--burst")
    assert code == 1 and err.strip() == "error: this application has no demo (--demo)", err


def test_another_application_does_not_import_the_detector(env: dict[str, str]) -> None:
    """The detector's plugin is registered (its entry point) but, with another application
    chosen, none of its code runs: no queue module, no domain, no HTTP or MongoDB client."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from polyjobs.plugins import PluginHost\n"
        f"host = PluginHost.load(app={APP!r}, search_path={str(ROOT)!r})\n"
        "assert list(host.queue_specs()) == ['resize', 'greet']\n"
        "host.resources(), host.setting_names()\n"
        "assert 'polymarket' in dict(host.pm.list_name_plugin())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('polyjobs.polymarket',"
        " 'polyjobs.processors.', 'httpx', 'pymongo'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
