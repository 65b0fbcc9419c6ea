"""``enqueue --flow FILE`` and the parents/children of ``jobs show``, on SQLite and on Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.test_commands import cli, cli_json


def test_enqueue_a_flow_and_show_parent_and_children(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    flow = {
        "name": "report",
        "children": [
            {"name": "echo", "queue": "echo", "data": {"text": "a"}},
            {"name": "echo", "queue": "echo", "data": {"text": "b"}},
        ],
    }
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    added = cli_json("enqueue", "reports", "--flow", str(path), "--create")
    assert (added["queue"], added["state"], added["jobs"]) == ("reports", "waiting-children", 3)
    text = cli("enqueue", "reports", "--flow", str(path), "--create")
    assert text.exit_code == 0 and "added a flow of 3 job(s)" in text.stdout
    listed = cli_json("jobs", "list", "reports", "--state", "waiting-children")
    assert len(listed) == 2

    shown = cli_json("jobs", "show", "reports", added["id"])
    assert [c["state"] for c in shown["children"]] == ["waiting", "waiting"]
    assert {c["queue"] for c in shown["children"]} == {"test-echo"}
    child = shown["children"][0]
    as_child = cli_json("jobs", "show", "echo", child["id"])
    parent = {"queue": "reports", "id": added["id"], "state": "waiting-children"}
    assert as_child["parents"] == [parent]
    rows = {row["queue"]: row for row in cli_json("stats")}
    assert rows["reports"]["waiting_children"] == 2

    assert cli("start", "--queue", "echo", "--burst", "--no-schedule").exit_code == 0
    shown = cli_json("jobs", "show", "reports", added["id"])
    assert shown["state"] == "waiting"
    assert sorted(c["value"] for c in shown["children"]) == ["A", "B"]
    plain = cli("jobs", "show", "reports", added["id"])
    assert "children: 2" in plain.stdout and f"test-echo:{child['id']} completed" in plain.stdout


def test_bad_flow_files_are_one_line_errors(cli_env: dict[str, str], tmp_path: Path) -> None:
    cases: list[tuple[Any, str]] = [
        ("{not json", "not valid JSON"),
        ([], "holds no node"),
        ({"name": "p", "children": [{"job_id": "missing"}]}, "does not exist"),
        ({"name": "p", "children": [{"name": "c", "queue": "echo", "colour": 1}]}, "unknown"),
    ]
    for content, message in cases:
        path = tmp_path / "flow.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        result = cli("enqueue", "reports", "--flow", str(path), "--create")
        assert result.exit_code != 0 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    missing = cli("enqueue", "reports", "--flow", str(tmp_path / "nope.json"), "--create")
    assert missing.exit_code != 0 and "cannot read --flow file" in missing.stderr
    # nothing of a refused flow was stored: not its queue, not its children
    assert "unknown queue 'reports'" in cli("jobs", "list", "reports").stderr
    assert cli_json("jobs", "list", "echo") == []


def test_job_options_beside_flow_are_refused_not_ignored(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "flow.json"
    child = {"name": "c", "queue": "echo", "data": {"text": "x"}}
    path.write_text(json.dumps({"name": "p", "children": [child]}))
    for extra in (["--group", "g"], ["--priority", "1"], ["--delay", "1m"], ["--wait"]):
        result = cli("enqueue", "reports", "--flow", str(path), "--create", *extra)
        assert result.exit_code == 1, result.output
        assert extra[0] in result.stderr and result.stderr.count("\n") == 1, result.stderr
    # nothing was added: the flow's queue (on SQLite, even the file) was never made
    listed = cli("jobs", "list", "reports").stderr
    assert "unknown queue 'reports'" in listed or "no polyjobs database" in listed, listed
