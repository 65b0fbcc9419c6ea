"""Plugins: built-ins and third parties register through the same hooks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from polyjobs import PluginError, PluginHost, UnknownBackendError, hookimpl, open_backend
from polyjobs.backends.memory import MemoryBackend
from polyjobs.hookspecs import BackendFactory

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_memory_backend_is_registered_through_the_hook() -> None:
    host = PluginHost.load(entry_points=False)
    factories = host.backend_factories()
    assert factories["memory"][1] == "polyjobs.backends.memory"
    assert isinstance(host.make_backend("memory://"), MemoryBackend)


def test_a_scheme_claimed_twice_names_both_plugins() -> None:
    class Intruder:
        @hookimpl
        def polyjobs_backend_factories(self) -> Mapping[str, BackendFactory]:
            return {"memory": MemoryBackend}

    host = PluginHost.load(entry_points=False, extra=[Intruder()])
    with pytest.raises(PluginError, match=r"'memory'.*polyjobs.backends.memory"):
        host.backend_factories()


async def test_unknown_scheme_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(UnknownBackendError) as info:
        async with open_backend("nosuch://user:hunter2@host/0"):
            pass
    message = str(info.value)
    assert "nosuch" in message and "hunter2" not in message and "memory://" in message


def test_example_plugin_installs_and_provides_a_queue_and_a_backend(tmp_path: Path) -> None:
    """Install examples/plugin for real (a wheel into a target dir) and use both its parts."""
    target = tmp_path / "site"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "examples" / "plugin"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    script = textwrap.dedent(
        """
        import asyncio
        from polyjobs import PluginHost, Queue, Worker, open_backend

        async def main():
            host = PluginHost.load()
            spec = host.queue_specs()["example-echo"]
            owner = host.backend_factories()["echo-memory"][1]
            async with open_backend("echo-memory://", host) as backend:
                queue = Queue(spec.name, backend)
                job = await queue.add("shout", "hello")
                await Worker(spec.name, spec.processor, backend).run(burst=True)
                print(owner, type(backend).__name__, (await job.refresh()).returnvalue)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["example", "EchoMemoryBackend", "HELLO"]
    # its command: listed by --help under the plugin's name, and run
    polyjobs = str(Path(sys.executable).parent / "polyjobs")
    listed = subprocess.run(
        [polyjobs, "--help"], env={**env, "COLUMNS": "100"}, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    panel = listed.stdout[listed.stdout.index("Commands of example") :]
    assert "shout" in panel and "upper-cased" in panel
    shouted = subprocess.run(
        [polyjobs, "shout", "hi there", "--times", "2"], env=env, capture_output=True, text=True
    )
    assert (shouted.returncode, shouted.stdout) == (0, "HI THERE\nHI THERE\n"), shouted.stderr
