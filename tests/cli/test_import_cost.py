"""A light command imports only what it needs: every ``polyjobs`` process pays for its imports
(the test suite alone starts hundreds), so ``enqueue``, ``stats`` and ``--help`` must not load
the board, the other backends' drivers, the exporters or the detector's domain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Modules no light command may import (a prefix matches a package and its submodules).
HEAVY = (
    "starlette",
    "jinja2",
    "uvicorn",
    "httpx",
    "redis",
    "asyncpg",
    "pymongo",
    "opentelemetry",
    "prometheus_client",
    "croniter",
    "polyjobs.board",
    "polyjobs.polymarket",
    "polyjobs.processors.resources",
    "polyjobs.backends.redis.backend",
    "polyjobs.backends.postgres.backend",
    "polyjobs.backends.memory.backend",
    "polyjobs.serve",
    "polyjobs.runtime",
    "polyjobs.cli.board",
    "polyjobs.cli.start",
)

#: Runs each command in this one process (as the console script would, exit caught), then
#: prints the heavy modules it holds after each.
SCRIPT = """
import json, sys
from polyjobs.cli.app import main
HEAVY = tuple(json.loads(sys.argv[1]))
report = {}
def heavy():
    return sorted(m for m in sys.modules if m.startswith(HEAVY) and (
        m in HEAVY or any(m.startswith(h + ".") for h in HEAVY)))
report["import"] = heavy()
for command in json.loads(sys.argv[2]):
    sys.argv = ["polyjobs", *command]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            report[" ".join(command)] = f"exit {exc.code}"
            continue
    report[" ".join(command)] = heavy()
print(json.dumps(report))
"""


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_light_commands_import_no_heavy_module(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYJOBS_", "BULLMQ_"))}
    env.pop("REDIS_URL", None)
    env["POLYJOBS_HOME"] = str(tmp_path / "state")
    env["PYTHONPATH"] = str(ROOT)
    commands = [
        # the detector's queue (validated by its spec) on SQLite: the default application
        ["enqueue", "analysis", "--data", '{"transactionId": "t1"}', "--json"],
        ["stats", "--json"],
        ["jobs", "list", "analysis", "--json"],
        # another application, by reference
        ["enqueue", "-A", "examples.myjobs", "greet", "--data", '{"name": "Ada"}', "--json"],
        ["stats", "-A", "examples.myjobs", "--json"],
        # an application's listings: its store and domain models, not its HTTP clients
        ["alerts", "--json"],
        ["wallets", "--json"],
        # last: it imports every command's module (light ones) to list them
        ["--help"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(HEAVY), json.dumps(commands)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    listed = report["--help"]
    assert {"polyjobs.cli.board", "polyjobs.cli.start"} <= set(listed), listed
    report["--help"] = [m for m in listed if not m.startswith("polyjobs.cli.")]
    assert "polyjobs.polymarket.store" in report["alerts --json"]
    for key in ("alerts --json", "wallets --json", "--help"):
        report[key] = [m for m in report[key] if not within(m, "polyjobs.polymarket")]
    assert report == {key: [] for key in ["import", *(" ".join(c) for c in commands)]}, report
    # and they did their work: the two jobs are in the SQLite file
    assert (tmp_path / "state" / "polyjobs.db").exists()
