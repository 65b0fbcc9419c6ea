"""A newcomer's first hour with the CLI: look-ups that create nothing, queue names that are
checked, user data printed as text, tables that fit 80 columns, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console as RichConsole
from typer.testing import CliRunner

from polyjobs.cli.app import app
from polyjobs.cli.console import Column, Console, fit_table, visible
from polyjobs.cli.inspect import stats_view
from polyjobs.stats import QueueStats

runner = CliRunner()


def cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input, env=env)
    assert "Traceback" not in result.output, result.output
    return result


def sqlite_only(cli_env: dict[str, str]) -> None:
    """Skip the Redis run of a test whose subject does not depend on the backend."""
    if "POLYJOBS_BACKEND" in cli_env:
        pytest.skip("does not depend on the backend; run on the default SQLite file")


def one_line_error(result: Any, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return str(result.stderr)


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


# -- look-ups create nothing --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("stats",),
        ("jobs", "list", "echo"),
        ("jobs", "show", "echo", "1"),
        ("schedule", "list"),
        ("queue", "pause", "echo"),
        ("jobs", "retry", "echo", "--all-failed"),
        ("board", "--port", "0"),
    ],
)
def test_look_ups_on_a_missing_database_create_nothing(
    cli_env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    if "POLYJOBS_BACKEND" in cli_env:
        pytest.skip("about the default SQLite file")
    before = files_under(tmp_path)
    error = one_line_error(cli(*command))
    expected = Path(cli_env["POLYJOBS_HOME"]) / "polyjobs.db"
    assert f"no polyjobs database at {expected}" in error
    assert "polyjobs start" in error
    assert files_under(tmp_path) == before  # no directory, no empty database


def test_a_mistyped_backend_path_is_reported_not_created(tmp_path: Path, cli_env: Any) -> None:
    wrong = tmp_path / "typo" / "jobs.db"
    error = one_line_error(cli("stats", "--backend", f"sqlite:///{wrong}"))
    assert f"no polyjobs database at {wrong} (from --backend)" in error
    assert not (tmp_path / "typo").exists()


def test_enqueue_creates_the_database_and_says_where(cli_env: dict[str, str]) -> None:
    if "POLYJOBS_BACKEND" in cli_env:
        pytest.skip("about the default SQLite file")
    result = cli("enqueue", "echo", "--data", '{"text": "hi"}')
    assert result.exit_code == 0, result.output
    db = Path(cli_env["POLYJOBS_HOME"]) / "polyjobs.db"
    assert f"created a new database at {db}" in result.stderr and db.exists()
    again = cli("enqueue", "echo", "--data", '{"text": "hi"}')
    assert "created" not in again.stderr
    shown = cli("stats", env={"COLUMNS": "200"})
    assert f"backend: {db}" in shown.stdout  # the default: say which file was read


# -- queue names --------------------------------------------------------------------------


def test_a_mistyped_queue_is_refused_with_the_closest_names(cli_env: dict[str, str]) -> None:
    assert cli("enqueue", "echo", "--data", '{"text": "x"}').exit_code == 0
    for command in (
        ("enqueue", "ecoh", "--data", "{}"),
        ("queue", "pause", "ecoh"),
        ("queue", "limit", "ecoh", "5/2s"),
        ("jobs", "list", "ecoh"),
        ("schedule", "add", "ecoh", "k", "--every", "1m"),
    ):
        error = one_line_error(cli(*command))
        assert "unknown queue 'ecoh': did you mean echo" in error, command
    assert "ecoh" not in [row["queue"] for row in json.loads(cli("stats", "--json").stdout)]
    made = cli("enqueue", "brand-new", "--data", "{}", "--create", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["queue"] == "brand-new"
    assert cli("queue", "pause", "brand-new").exit_code == 0  # known now: it holds a job


# -- user data is text ----------------------------------------------------------------------

EVIL_QUEUE = "evil[/red]"
EVIL_NAME = "[link=https://example.invalid]click[/link]\x1b[31m"


def test_markup_and_escape_sequences_are_shown_as_text(cli_env: dict[str, str]) -> None:
    added = cli("enqueue", EVIL_QUEUE, "--create", "--name", EVIL_NAME, "--data", "{}", "--json")
    assert added.exit_code == 0, added.output
    job_id = json.loads(added.stdout)["id"]
    stats = cli("stats")
    assert stats.exit_code == 0, stats.output
    assert EVIL_QUEUE in stats.stdout
    listed = cli("jobs", "list", EVIL_QUEUE, env={"COLUMNS": "200"})
    assert "[link=https://example.invalid]click[/link]\\x1b[31m" in listed.stdout
    shown = cli("jobs", "show", EVIL_QUEUE, job_id)
    assert "\x1b" not in shown.stdout and "\\x1b[31m" in shown.stdout
    assert json.loads(cli("jobs", "show", EVIL_QUEUE, job_id, "--json").stdout)["name"] == (
        EVIL_NAME
    )  # --json unchanged


def test_visible_escapes_controls_and_bidi_but_keeps_text() -> None:
    assert visible("a\x1b[2Jb\x07\u202etxt.exe") == "a\\x1b[2Jb\\x07\\u202etxt.exe"
    assert visible("line 1\nline 2\ttab", multiline=True) == "line 1\nline 2\ttab"
    assert visible("line 1\nline 2") == "line 1\\x0aline 2"
    assert visible("Ünïcödé, ok ✓") == "Ünïcödé, ok ✓"


# -- 80 columns -----------------------------------------------------------------------------

LONG_QUEUES = (
    "polymarket-whale-updates",
    "polymarket-anomaly-batch",
    "polymarket-analysis",
    "polymarket-alerts",
    "polymarket-ingest",
)


def _stats(name: str) -> QueueStats:
    return QueueStats(name, 12345, 20, 3, 99999, 1234, True, 2, 600, 7, True)


def rendered(renderable: Any, width: int = 80) -> list[str]:
    console = RichConsole(record=True, width=width, file=open("/dev/null", "w"))
    console.print(renderable)
    console.file.close()
    return console.export_text().splitlines()


def test_stats_fits_80_columns_with_whole_queue_names() -> None:
    shorts = {n: n.removeprefix("polymarket-") for n in LONG_QUEUES}
    lines = rendered(stats_view([_stats(n) for n in LONG_QUEUES], shorts, 80, None))
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "…" not in text
    for short in shorts.values():
        assert f"{short} " in text  # whole, never `poly…`
    wide = "\n".join(rendered(stats_view([_stats(n) for n in LONG_QUEUES], shorts, 160, None), 160))
    assert all(name in wide for name in LONG_QUEUES)  # full names when there is room


def test_ids_are_never_cut_at_80_columns() -> None:
    job_id = "trade-7f3b13" + "a" * 24
    reason = "ConnectError: " + "all connection attempts failed " * 4
    cols = (Column("id", "key"), Column("name"), Column("tries", "num"), Column("detail"))
    for width in (80, 50):  # a table, then one block per job
        lines = rendered(fit_table(cols, [(job_id, "check", 1, reason)], width), width)
        assert max(len(line) for line in lines) <= width
        assert any(job_id in line for line in lines), (width, lines)


def test_jobs_list_in_an_80_column_terminal(cli_env: dict[str, str]) -> None:
    sqlite_only(cli_env)
    job_id = "trade-7f3b13" + "c" * 30
    cli("enqueue", "echo", "--data", '{"text": "x"}', "--job-id", job_id)
    listed = cli("jobs", "list", "echo", env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80, listed.stdout
    assert job_id in listed.stdout


def test_the_console_prints_above_a_live_display_it_is_given() -> None:
    console = Console(width=80, record=True)
    console.line("plain [bold]text[/bold]")
    assert "plain [bold]text[/bold]" in console.out.export_text()


# -- errors ----------------------------------------------------------------------------------


def test_usage_errors_are_one_line_with_a_help_pointer(cli_env: dict[str, str]) -> None:
    sqlite_only(cli_env)
    result = cli("stats", "--jsn")
    error = one_line_error(result, code=2)
    assert "No such option: --jsn" in error and "`polyjobs stats --help`" in error
    missing = one_line_error(cli("jobs", "list"), code=2)
    assert "Missing argument" in missing and "`polyjobs jobs list --help`" in missing


@pytest.mark.parametrize(
    "args",
    [
        ("enqueue", "echo", "--data", "[" * 100_000 + "]" * 100_000),
        ("enqueue", "echo", "--data", '{"text": "x"}', "--delay", "1e400"),
        ("enqueue", "echo", "--data", '{"text": "x"}', "--timeout", "-1s"),
        ("enqueue", "echo", "--data", '{"text": "x"}', "--priority", "99999999999999"),
        ("enqueue", "echo", "--data", '{"text": "x"}', "--job-id", "a b"),
        ("schedule", "add", "echo", "k", "--cron", "0 0 30 2 *", "-d", '{"text": "x"}'),
        ("schedule", "add", "echo", "k", "--cron", "* * * * * * *", "-d", '{"text": "x"}'),
        ("schedule", "add", "echo", "k", "--every", "0s", "-d", '{"text": "x"}'),
        ("schedule", "add", "echo", "k", "--cron", "* * * * *", "--tz", "Mars/Olympus"),
        ("stats", "--interval", "soon"),
        ("queue", "clean", "echo", "--grace", "forever", "--yes"),
    ],
)
def test_odd_input_is_one_line_never_an_unexpected_exception(
    cli_env: dict[str, str], args: tuple[str, ...]
) -> None:
    sqlite_only(cli_env)
    cli("enqueue", "echo", "--data", '{"text": "x"}')
    error = one_line_error(cli(*args))
    assert "unexpected" not in error


def test_memory_backend_without_a_running_instance_is_refused(cli_env: dict[str, str]) -> None:
    sqlite_only(cli_env)
    for command in (
        ("enqueue", "echo", "--data", '{"text": "x"}'),
        ("stats",),
        ("queue", "pause", "echo"),
    ):
        error = one_line_error(cli(*command, "--backend", "memory://"))
        assert "memory:// keeps jobs inside one process" in error
        assert "polyjobs.sock" in error and "leave out --backend" in error


def test_schedule_add_shows_the_next_three_runs(cli_env: dict[str, str]) -> None:
    sqlite_only(cli_env)
    result = cli("schedule", "add", "echo", "fast", "--cron", "*/5 * * * * *", "-d", "{}")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert "schedule fast of test-echo (*/5 * * * * * UTC): next runs " in line
    runs = line.split("next runs ")[1].split(", ")
    seconds = [int(run[-2:]) for run in runs]
    assert len(runs) == 3 and all(s % 5 == 0 for s in seconds)


def test_a_stale_memory_socket_is_explained(cli_env: dict[str, str]) -> None:
    sqlite_only(cli_env)
    import socket as sockets

    home = Path(cli_env["POLYJOBS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    with sockets.socket(sockets.AF_UNIX) as sock:  # bound, never listening, then closed
        sock.bind(str(home / "polyjobs.sock"))
    error = one_line_error(cli("stats", "--backend", "memory://"))
    assert "is left from a process that is gone" in error
