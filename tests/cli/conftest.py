from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

HERE = Path(__file__).resolve().parent


def redis_available() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["sqlite", "redis"])
def cli_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """An isolated environment for CLI commands: a state dir, the test plugin, one backend."""
    for name in list(os.environ):
        if name.startswith(("POLYJOBS_", "BULLMQ_")) or name in (
            "REDIS_URL",
            "DISCORD_WEBHOOK_URL",
        ):
            monkeypatch.delenv(name)
    env = {
        "POLYJOBS_HOME": str(tmp_path / "state"),
        "POLYJOBS_PLUGINS": "polyjobs_test_plugin",
        "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    prefix = f"clitest-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        if not redis_available():
            if os.environ.get("CI"):
                pytest.fail("Redis is not answering on 127.0.0.1:6379 (CI requires it)")
            pytest.skip("no Redis on 127.0.0.1:6379")
        env["POLYJOBS_BACKEND"] = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.chdir(tmp_path)
    yield env
    if request.param == "redis":
        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
