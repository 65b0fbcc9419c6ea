"""``polyjobs.run`` (and so every ``polyjobs`` command) runs on uvloop when it is installed,
on asyncio's loop when ``POLYJOBS_UVLOOP=0``."""

from __future__ import annotations

import asyncio

import pytest

import polyjobs


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYJOBS_UVLOOP", raising=False)
    assert polyjobs.run(_loop_type()).startswith("uvloop")


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_polyjobs_uvloop_0_keeps_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("POLYJOBS_UVLOOP", value)
    assert polyjobs.run(_loop_type()).startswith("asyncio")


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    assert polyjobs.run(asyncio.sleep(0, result=7)) == 7
    with pytest.raises(ValueError, match="boom"):
        polyjobs.run(fails())


def test_the_cli_runs_its_commands_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's coroutine goes through ``polyjobs.cli.common.run``."""
    from polyjobs.cli.common import run

    monkeypatch.delenv("POLYJOBS_UVLOOP", raising=False)
    assert str(run(_loop_type)).startswith("uvloop")
    monkeypatch.setenv("POLYJOBS_UVLOOP", "0")
    assert str(run(_loop_type)).startswith("asyncio")
