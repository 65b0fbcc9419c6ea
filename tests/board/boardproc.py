"""Run ``polyjobs board`` in a subprocess and wait until it serves (CLI and browser tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
URL_RE = re.compile(r"polyjobs board on (http://\S+)/admin/queues")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment minus every polyjobs setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYJOBS_", "BULLMQ_")) and k not in ("REDIS_URL",)
    }
    return {**env, **extra}


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYJOBS, *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def board_process(
    env: Mapping[str, str], *args: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``polyjobs board --port 0 ARGS``; yields its base URL once it answers."""
    proc = subprocess.Popen(
        [POLYJOBS, "board", "--port", "0", *args],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = URL_RE.search(line)
        assert found, f"polyjobs board did not start: {line}{proc.stderr.read()}"
        base = found.group(1)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/static/board.css", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "board never answered"
                time.sleep(0.05)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
