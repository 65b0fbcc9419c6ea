"""Settings for the whole test run (loaded by pytest before any test directory's conftest)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """The suite starts hundreds of ``polyjobs`` processes. When the environment forbids
    writing bytecode (``PYTHONDONTWRITEBYTECODE``, common in containers), each of them would
    compile every polyjobs module it imports again, about 0.1 s of CPU per process: the run
    keeps the bytecode in a cache of its own instead (``PYTHONPYCACHEPREFIX``, outside the
    source tree), which the test processes and their subprocesses share."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        cache = Path(tempfile.gettempdir()) / f"polyjobs-tests-pycache-{os.getuid()}"
        os.environ.pop("PYTHONDONTWRITEBYTECODE")
        os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
