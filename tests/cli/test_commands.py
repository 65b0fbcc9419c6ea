"""Every command through Typer's CliRunner, on SQLite and on Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from polyjobs.cli.app import app

runner = CliRunner()


def cli(*args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stats_of(queue: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {row["queue"]: row for row in cli_json("stats")}
    return rows[queue]


def test_version_and_help(cli_env: dict[str, str]) -> None:
    assert cli("--version").stdout.startswith("polyjobs ")
    help_text = cli("--help").stdout
    for command in ("start", "stop", "stats", "enqueue", "schedule", "jobs", "queue", "config"):
        assert command in help_text


def test_burst_start_with_nothing_to_do_says_so(cli_env: dict[str, str]) -> None:
    result = cli("start", "--queue", "echo", "--burst")
    assert result.exit_code == 0, result.output
    assert "--burst found nothing to do" in result.stderr


def test_backends_lists_every_scheme_with_its_plugin(cli_env: dict[str, str]) -> None:
    rows = {row["scheme"]: row["plugin"] for row in cli_json("backends")}
    assert rows["memory://"] == "polyjobs.backends.memory"
    assert rows["redis://"] == "polyjobs.backends.redis"
    assert rows["sqlite://"] == "polyjobs.backends.sqlite"


def test_enqueue_then_burst_start_runs_it(cli_env: dict[str, str]) -> None:
    added = cli_json("enqueue", "echo", "--data", '{"text": "hi"}')
    assert added["queue"] == "test-echo" and added["state"] == "waiting"
    assert stats_of("test-echo")["waiting"] == 1
    listed = cli_json("jobs", "list", "test-echo")
    assert [job["id"] for job in listed] == [added["id"]]

    result = cli("start", "--queue", "echo", "--burst", "--no-schedule")
    assert result.exit_code == 0, result.output
    assert "nothing to do" not in result.stderr
    shown = cli_json("jobs", "show", "echo", added["id"])
    assert shown["state"] == "completed" and shown["returnvalue"] == "HI"
    row = stats_of("test-echo")
    assert (row["waiting"], row["active"], row["completed"]) == (0, 0, 1)
    assert row["completed_last_minute"] == 1


def test_enqueue_refuses_data_the_processor_cannot_use(cli_env: dict[str, str]) -> None:
    result = cli("enqueue", "echo", "--data", '{"txt": "typo"}')
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert '"text" is missing' in result.stderr
    assert stats_of("test-echo")["waiting"] == 0


def test_enqueue_bad_json_and_missing_file_are_one_line_errors(cli_env: dict[str, str]) -> None:
    for data in ("{bad", "@/nonexistent/file.json"):
        result = cli("enqueue", "echo", "--data", data)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_enqueue_data_from_a_file_and_stdin(cli_env: dict[str, str], tmp_path: Any) -> None:
    path = tmp_path / "job.json"
    path.write_text('{"text": "from file"}')
    first = cli_json("enqueue", "echo", "--data", f"@{path}")
    result = cli("enqueue", "echo", "--data", "-", "--json", input='{"text": "from stdin"}')
    second = json.loads(result.stdout)
    datas = {j["id"]: j["data"]["text"] for j in cli_json("jobs", "list", "echo")}
    assert datas == {first["id"]: "from file", second["id"]: "from stdin"}


def test_enqueue_options(cli_env: dict[str, str]) -> None:
    added = cli_json(
        "enqueue",
        "echo",
        "-d",
        '{"text": "x"}',
        "--delay",
        "1h",
        "--priority",
        "3",
        "--job-id",
        "my-id",
        "--attempts",
        "4",
        "--name",
        "custom",
    )
    assert added["id"] == "my-id" and added["state"] == "delayed"
    job = cli_json("jobs", "show", "echo", "my-id")
    assert (job["name"], job["priority"], job["opts"]["attempts"]) == ("custom", 3, 4)
    again = cli_json("enqueue", "echo", "-d", '{"text": "x"}', "--job-id", "my-id")
    assert again["id"] == "my-id" and stats_of("test-echo")["delayed"] == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--delay", "99999999999999999999", "delay must be at most 10 years"),
        ("--attempts", "99999999999999999999", "attempts must be within 1..1000000"),
        ("--priority", "99999999999999999999", "priority must be within 0..2097152"),
    ],
)
def test_enqueue_refuses_options_beyond_their_bounds_in_one_line(
    cli_env: dict[str, str], option: str, value: str, message: str
) -> None:
    result = cli("enqueue", "echo", "--data", '{"text": "x"}', option, value)
    assert result.exit_code != 0 and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert stats_of("test-echo")["delayed"] + stats_of("test-echo")["waiting"] == 0


def test_jobs_show_prints_progress_as_json(cli_env: dict[str, str]) -> None:
    import asyncio

    from polyjobs import Queue, open_backend
    from polyjobs.cli.common import settings

    added = cli_json("enqueue", "echo", "--data", '{"text": "x"}')

    async def progress() -> None:
        async with open_backend(settings().backend_url) as backend:
            job = await Queue("test-echo", backend).get_job(added["id"])
            assert job is not None
            await job.update_progress({"step": "ünïcode", "done": 3})

    asyncio.run(progress())
    shown = cli("jobs", "show", "echo", added["id"]).stdout
    assert 'progress: {"step": "ünïcode", "done": 3}' in shown


def test_jobs_show_survives_a_stored_delay_beyond_every_calendar(
    cli_env: dict[str, str],
) -> None:
    import asyncio

    from polyjobs import open_backend
    from polyjobs.backend import NewJob
    from polyjobs.cli.common import settings

    cli_json("enqueue", "echo", "--data", '{"text": "first"}')  # creates the backend

    async def store() -> str:
        url = settings().backend_url
        async with open_backend(url) as backend:
            opts = {"delay": 1e20, "attempts": 10**12, "timeout": 1e30}
            new = NewJob("echo", '{"text": "x"}', opts, timestamp=1.0, run_at=1e20)
            [added] = await backend.add("test-echo", [new])
            return added.id

    job_id = asyncio.run(store())
    shown = cli("jobs", "show", "echo", job_id)
    assert shown.exit_code == 0, shown.output
    assert "far future (1e+20)" in shown.stdout and "logs" in shown.stdout
    assert cli_json("jobs", "show", "echo", job_id)["run_at"] == 1e20
    listed = cli("jobs", "list", "echo", "--state", "delayed")
    assert listed.exit_code == 0 and job_id in listed.stdout
    assert cli("jobs", "remove", "echo", job_id).exit_code == 0


def test_unknown_queue_state_and_job_are_clear_errors(cli_env: dict[str, str]) -> None:
    cli_json("enqueue", "echo", "--data", '{"text": "x"}')
    result = cli("start", "--queue", "no-such-queue", "--burst")
    assert result.exit_code == 1 and "unknown queue 'no-such-queue'" in result.stderr
    result = cli("jobs", "list", "echo", "--state", "sleeping")
    assert result.exit_code == 1 and "unknown job state" in result.stderr
    result = cli("jobs", "show", "echo", "404")
    assert result.exit_code == 1 and "not found" in result.stderr


def test_failed_job_shows_error_and_can_be_retried(cli_env: dict[str, str]) -> None:
    added = cli_json("enqueue", "fail")
    assert cli("start", "-q", "fail", "--burst", "--no-schedule").exit_code == 0
    job = cli_json("jobs", "show", "fail", added["id"])
    assert job["state"] == "failed" and "boom from the test plugin" in job["failed_reason"]
    assert "RuntimeError" in job["stacktrace"]
    shown = cli("jobs", "show", "fail", added["id"]).stdout
    assert "boom from the test plugin" in shown
    assert cli("jobs", "retry", "fail", added["id"]).exit_code == 0
    assert cli_json("jobs", "show", "fail", added["id"])["state"] == "waiting"
    assert cli("jobs", "retry", "fail", added["id"]).exit_code == 1  # not failed any more
    assert cli("jobs", "remove", "fail", added["id"]).exit_code == 0
    assert stats_of("test-fail")["waiting"] == 0


def test_retry_all_failed(cli_env: dict[str, str]) -> None:
    for _ in range(3):
        cli_json("enqueue", "fail")
    cli("start", "-q", "fail", "--burst", "--no-schedule")
    assert stats_of("test-fail")["failed"] == 3
    result = cli("jobs", "retry", "fail", "--all-failed")
    assert "retried 3" in result.stdout
    row = stats_of("test-fail")
    assert (row["failed"], row["waiting"]) == (0, 3)


def test_schedules_add_list_run_now_remove(cli_env: dict[str, str]) -> None:
    result = cli(
        "schedule",
        "add",
        "echo",
        "hourly",
        "--cron",
        "0 * * * *",
        "--tz",
        "Europe/Berlin",
        "--data",
        '{"text": "tick"}',
    )
    assert result.exit_code == 0, result.output
    assert (
        cli("schedule", "add", "echo", "fast", "--every", "30s", "-d", '{"text": "t"}').exit_code
        == 0
    )
    rows = {r["key"]: r for r in cli_json("schedule", "list", "echo")}
    assert rows["hourly"]["cron"] == "0 * * * *" and rows["hourly"]["tz"] == "Europe/Berlin"
    assert rows["fast"]["every"] == 30.0
    runs = rows["fast"]["next_runs"]
    assert len(runs) == 3 and runs[1] - runs[0] == 30.0
    assert cli("schedule", "run-now", "echo", "hourly").exit_code == 0
    waiting = cli_json("jobs", "list", "echo")
    assert [j["data"] for j in waiting] == [{"text": "tick"}]
    assert cli("schedule", "remove", "echo", "hourly").exit_code == 0
    assert [r["key"] for r in cli_json("schedule", "list", "echo")] == ["fast"]
    assert cli("schedule", "remove", "echo", "hourly").exit_code == 1
    bad = cli("schedule", "add", "echo", "bad", "--cron", "99 * * * *")
    assert bad.exit_code == 1 and "invalid cron" in bad.stderr


def test_queue_admin_commands(cli_env: dict[str, str]) -> None:
    for i in range(3):
        cli_json("enqueue", "echo", "-d", json.dumps({"text": str(i)}))
    assert cli("queue", "pause", "echo").exit_code == 0
    assert stats_of("test-echo")["paused"] is True
    cli("start", "-q", "echo", "--burst", "--no-schedule")
    assert stats_of("test-echo")["waiting"] == 3  # paused: nothing ran
    assert cli("queue", "resume", "echo").exit_code == 0
    assert stats_of("test-echo")["paused"] is False

    refused = cli("queue", "drain", "echo", input="n\n")
    assert refused.exit_code == 1 and stats_of("test-echo")["waiting"] == 3
    assert "removed 3" in cli("queue", "drain", "echo", "--yes").stdout

    cli_json("enqueue", "echo", "-d", '{"text": "x"}')
    cli("start", "-q", "echo", "--burst", "--no-schedule")
    assert "removed 1 completed" in cli("queue", "clean", "echo", "--yes").stdout
    assert stats_of("test-echo")["completed"] == 0

    cli_json("enqueue", "echo", "-d", '{"text": "y"}')
    assert cli("queue", "obliterate", "echo", "--yes").exit_code == 0
    row = stats_of("test-echo")
    assert (row["waiting"], row["completed"]) == (0, 0)


def test_config_shows_sources_and_redacts_secrets(
    cli_env: dict[str, str], monkeypatch: Any, tmp_path: Any
) -> None:
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/1/s3cr3t-token")
    monkeypatch.setenv("POLYJOBS_ECHO_CONCURRENCY", "7")
    (tmp_path / "polyjobs.toml").write_text('grace = "5s"\n[queues.slow]\nconcurrency = 3\n')
    result = cli("config")
    assert result.exit_code == 0
    assert "s3cr3t-token" not in result.output
    rows = {r["name"]: r for r in cli_json("config")["settings"]}
    assert rows["grace"]["value"] == 5.0 and rows["grace"]["source"] == "polyjobs.toml"
    assert "concurrency=7" in rows["queue test-echo"]["value"]
    assert "concurrency=3" in rows["queue test-slow"]["value"]
    assert rows["DISCORD_WEBHOOK_URL"]["source"] == "env DISCORD_WEBHOOK_URL"


def test_config_masks_a_versioned_discord_webhook_token(
    cli_env: dict[str, str], monkeypatch: Any
) -> None:
    url = "https://discord.com/api/v10/webhooks/123/s3cr3t-token_x"
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
    result = cli("config")
    assert result.exit_code == 0 and "s3cr3t-token_x" not in result.output
    rows = {r["name"]: r for r in cli_json("config")["settings"]}
    assert rows["DISCORD_WEBHOOK_URL"]["value"] == "https://discord.com/api/v10/webhooks/123/***"


def test_jobs_show_masks_secret_keys_like_the_board_and_only_those(
    cli_env: dict[str, str],
) -> None:
    data = {"text": "x", "password": "hunter2", "max_tokens": 512, "secretary": "Moneypenny"}
    added = cli_json("enqueue", "echo", "--data", json.dumps(data))
    job = cli_json("jobs", "show", "echo", added["id"])
    assert job["data"] == {**data, "password": "***"}
    shown = cli("jobs", "show", "echo", added["id"]).stdout
    assert "hunter2" not in shown and '"password": "***"' in shown
    assert '"max_tokens": 512' in shown and "Moneypenny" in shown


def test_config_never_shows_a_redis_password(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", "redis://admin:hunter2@127.0.0.1:1/0")
    monkeypatch.delenv("POLYJOBS_BACKEND", raising=False)
    result = cli("config")
    assert "hunter2" not in result.output and "redis://admin:***@127.0.0.1:1/0" in result.output
    failed = cli("stats")
    assert failed.exit_code == 1 and "hunter2" not in failed.output
    assert failed.stderr.count("\n") == 1 and "redis://admin:***@127.0.0.1:1/0" in failed.stderr


def test_stop_without_a_running_instance(cli_env: dict[str, str]) -> None:
    result = cli("stop")
    assert result.exit_code == 1 and "no polyjobs instance is running" in result.stderr


def test_queue_limit_sets_and_clears_a_rate_limit(cli_env: dict[str, str]) -> None:
    cli_json("enqueue", "echo", "--data", '{"text": "x"}')
    result = cli("queue", "limit", "echo", "5/2s")
    assert result.exit_code == 0, result.output
    assert "rate limit of test-echo: 5/2s" in result.stdout
    off = cli("queue", "limit", "echo", "off")
    assert "rate limit of test-echo: none" in off.stdout
    bad = cli("queue", "limit", "echo", "fast")
    assert bad.exit_code == 1 and "must look like 5/2s" in bad.stderr


def test_queue_global_concurrency_sets_and_clears_the_cap(cli_env: dict[str, str]) -> None:
    cli_json("enqueue", "echo", "--data", '{"text": "x"}')
    result = cli("queue", "global-concurrency", "echo", "3")
    assert result.exit_code == 0, result.output
    assert "global concurrency of test-echo: 3" in result.stdout
    off = cli("queue", "global-concurrency", "echo", "off")
    assert "global concurrency of test-echo: none" in off.stdout
    for bad in ("many", "0"):
        refused = cli("queue", "global-concurrency", "echo", bad)
        assert refused.exit_code == 1 and "global concurrency must be" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
