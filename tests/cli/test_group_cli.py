"""``polyjobs enqueue --group`` and ``polyjobs queue group-limit`` (SQLite and Redis)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from polyjobs.cli.app import app

runner = CliRunner()


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_group_limit_sets_shows_and_clears(cli_env: dict[str, str]) -> None:
    added = cli("enqueue", "echo", "--data", '{"text": "x"}', "--group", "hook-1", "--json")
    assert added.exit_code == 0, added.output
    job_id = json.loads(added.stdout)["id"]
    shown = json.loads(cli("jobs", "show", "echo", job_id, "--json").stdout)
    assert shown["opts"]["group"] == "hook-1"
    result = cli("queue", "group-limit", "echo", "--concurrency", "1", "--rate", "5/2s")
    assert result.exit_code == 0, result.output
    assert "group limits of test-echo: concurrency 1, rate 5/2s" in result.stdout
    assert "concurrency 1, rate 5/2s" in cli("queue", "group-limit", "echo").stdout
    off = cli("queue", "group-limit", "echo", "--concurrency", "off", "--rate", "off")
    assert "concurrency none, rate none" in off.stdout
    for args in (["--concurrency", "many"], ["--concurrency", "0"], ["--rate", "fast"]):
        refused = cli("queue", "group-limit", "echo", *args)
        assert refused.exit_code == 1 and len(refused.stderr.strip().splitlines()) == 1
    # a refused option changes nothing, not even the other, valid, one
    refused = cli("queue", "group-limit", "echo", "--concurrency", "2", "--rate", "fast")
    assert refused.exit_code == 1 and "5/2s" in refused.stderr
    assert "concurrency none, rate none" in cli("queue", "group-limit", "echo").stdout
    bad_group = cli("enqueue", "echo", "--data", "{}", "--group", "two words")
    assert bad_group.exit_code == 1 and "group" in bad_group.stderr
