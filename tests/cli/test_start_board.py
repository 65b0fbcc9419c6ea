"""`polyjobs start --board`: the running instance serves the board over its own backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

POLYJOBS = str(Path(sys.executable).parent / "polyjobs")


def test_start_serves_the_board_and_stops_it(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    env = {
        **os.environ,
        "POLYJOBS_HOME": str(tmp_path / "state"),
        "POLYJOBS_PLUGINS": "polyjobs_test_plugin",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    env.pop("POLYJOBS_BACKEND", None)
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [POLYJOBS, "start", "-q", "echo", "--no-schedule", "--board", "--board-port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"board on (http://\S+)/admin/queues", line)
            url = found.group(1) if found else None
        assert url is not None, "the board did not announce its URL"
        queues = httpx.get(f"{url}/api/queues", timeout=10).json()["queues"]
        assert "test-echo" in {row["queue"] for row in queues}
        page = httpx.get(f"{url}/admin/queues", timeout=10)
        assert page.status_code == 200 and "test-echo" in page.text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/queues", timeout=2)
