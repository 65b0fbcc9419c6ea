"""The issue's "done when" scenario, as a user runs it: a plain script in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


@pytest.mark.parametrize("url", ["memory://", "sqlite:///{tmp}/quick.db"])
def test_quickstart_script_completes_every_job(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "'completed': 1000" in done.stdout and "'waiting': 0" in done.stdout
