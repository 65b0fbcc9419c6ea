"""Scenario 7: security. No pickle anywhere in the package; no Redis password or webhook token
in any CLI output or log line (checked against a redis-server started with ``--requirepass``);
the job payload limit at ``add`` and through the CLI; the CLI over ``rediss://`` with a
password.

The backend over ``rediss://`` (a redis-server serving TLS only, with a self-signed
certificate the test makes) is ``tests/redis/test_redis_backend.py::test_tls_url``; here the
CLI goes through it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import polyjobs
from polyjobs import InvalidArgumentError, Queue, open_backend
from polyjobs.backends.redis.testing import RedisServer
from tests.chaos.chaos_support import MAIN_REDIS, POLYJOBS

PICKLERS = {"pickle", "cPickle", "_pickle", "pickletools", "dill", "cloudpickle", "shelve"}
PICKLERS |= {"jsonpickle", "joblib", "copyreg"}
SUBPACKAGES = ("backends", "cli", "board", "processors", "polymarket")


# -- pickle ----------------------------------------------------------------------------------
def _package_files() -> list[Path]:
    root = Path(polyjobs.__file__).resolve().parent
    files = []
    for folder, _dirs, names in os.walk(root, followlinks=True):  # cli/ etc. are symlinks
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return files


def _pickle_uses(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] in PICKLERS)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLERS:
                yield node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            dynamic = name in ("__import__", "import_module")
            if dynamic and isinstance(first, ast.Constant) and isinstance(first.value, str):
                if first.value.split(".")[0] in PICKLERS:
                    yield f"{name}({first.value!r})"


def test_no_module_of_the_package_imports_pickle() -> None:
    files = _package_files()
    root = Path(polyjobs.__file__).resolve().parent
    covered = {p.relative_to(root).parts[0] for p in files}
    assert set(SUBPACKAGES) <= covered, covered  # the symlinked subpackages were walked
    assert len(files) > 60
    offenders = {}
    for path in files:
        uses = list(_pickle_uses(ast.parse(path.read_text(encoding="utf-8"), str(path))))
        if uses:
            offenders[str(path.relative_to(root))] = uses
    assert offenders == {}


def test_the_pickle_check_finds_what_it_looks_for() -> None:
    source = (
        "import pickle\nfrom dill import loads\nimport cloudpickle as cp\n"
        "importlib.import_module('pickle')\n__import__('shelve')\n"
    )
    assert len(list(_pickle_uses(ast.parse(source)))) == 5


# -- secrets in CLI output -------------------------------------------------------------------
def _run(env: dict[str, str], *args: str, timeout: float = 30) -> str:
    done = subprocess.run(
        [POLYJOBS, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return f"$ polyjobs {' '.join(args[:3])} -> {done.returncode}\n{done.stdout}\n{done.stderr}\n"


@pytest.mark.timeout(120)  # fifteen process starts: slow on a loaded machine
def test_no_password_or_webhook_token_in_any_output(
    cli_env: dict[str, str], redis_server: Callable[..., RedisServer]
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    server = redis_server(password=password)
    webhook = f"https://discord.com/api/webhooks/123456789/{token}"
    env = {**cli_env, "REDIS_URL": server.url, "DISCORD_WEBHOOK_URL": webhook}
    assert password in env["REDIS_URL"]
    leak = json.dumps({"secret": f"{server.url} and {webhook}"})
    out = _run(env, "enqueue", "leak", "--data", leak)
    out += _run(env, "enqueue", "leak", "--data", leak, "--json")
    debug = {**env, "POLYJOBS_DEBUG": "1"}
    out += _run(debug, "start", "-q", "leak", "--burst", "--no-schedule")
    out += _run(env, "enqueue", "leak", "--data", leak)
    out += _run(debug, "start", "-q", "leak", "--burst", "--no-schedule", "--log-format", "json")
    wrong = server.url.replace(password, f"wrong-{password}")
    looks: list[tuple[dict[str, str], list[str]]] = [
        (env, ["stats"]),
        (env, ["stats", "--json"]),
        (env, ["jobs", "list", "leak", "--state", "failed"]),
        (env, ["jobs", "list", "leak", "--state", "failed", "--json"]),
        (env, ["jobs", "show", "leak", "1"]),
        (env, ["jobs", "show", "leak", "2", "--json"]),
        (env, ["config"]),
        (env, ["config", "--json"]),
        ({**env, "REDIS_URL": wrong}, ["stats"]),
        ({**env, "POLYJOBS_BACKEND": wrong}, ["enqueue", "leak", "--data", "{}"]),
    ]
    # the look-ups change nothing: run them side by side (each is a process start)
    with ThreadPoolExecutor(4) as pool:
        out += "".join(pool.map(lambda look: _run(look[0], *look[1]), looks))
    assert password not in out and token not in out, out
    # the outputs did hold the secrets' places, masked
    assert "could not reach redis://:***@" in out and "/api/webhooks/123456789/***" in out
    assert '"failed": 3' in out, out  # all three jobs ran and failed


# -- payload size ----------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/size.db"
    return f"{MAIN_REDIS}?prefix={request.getfixturevalue('main_prefix')}"


def _blob(size: int) -> str:
    """A JSON string value whose encoding is exactly ``size`` bytes (with its quotes)."""
    return "x" * (size - 2)


async def test_payload_limit_is_512_kib_by_default_and_enforced_at_add(url: str) -> None:
    limit = 512 * 1024
    async with open_backend(url) as backend:
        queue = Queue("size", backend)
        assert queue.max_payload == limit
        await queue.add("fits", _blob(limit))
        with pytest.raises(InvalidArgumentError, match="over the limit of 524288 bytes"):
            await queue.add("big", _blob(limit + 1))
        with pytest.raises(InvalidArgumentError):
            await queue.add_bulk([("ok", 1), ("big", _blob(limit + 1)), ("ok", 2)])
        with pytest.raises(InvalidArgumentError):
            await queue.upsert_schedule("s", every=60, data=_blob(limit + 1))
        assert (await queue.counts())["waiting"] == 1  # only the job that fits
        assert await queue.schedules() == []


async def test_payload_limit_counts_bytes_not_characters() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("size", backend)
        emoji = "\U0001f600" * (512 * 1024 // 4)  # 512 KiB of characters, 2 MiB of UTF-8
        with pytest.raises(InvalidArgumentError):
            await queue.add("big", emoji)


async def test_payload_limit_is_configurable(url: str) -> None:
    async with open_backend(url) as backend:
        small = Queue("size", backend, max_payload=1000)
        await small.add("fits", _blob(1000))
        with pytest.raises(InvalidArgumentError, match="1001 bytes"):
            await small.add("big", _blob(1001))
        await Queue("size", backend).add("fits-default", _blob(1001))
        assert (await small.counts())["waiting"] == 2


def test_payload_limit_through_the_cli(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "POLYJOBS_BACKEND": f"sqlite:///{tmp_path}/cli.db"}
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (512 * 1024)}))
    done = subprocess.run(
        [POLYJOBS, "enqueue", "sleep", "--data", f"@{big}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "over the limit of 524288 bytes" in done.stderr
    stats = subprocess.run(
        [POLYJOBS, "stats", "--json"], env=env, capture_output=True, text=True, timeout=30
    )
    rows = {row["queue"]: row for row in json.loads(stats.stdout)}
    assert rows.get("chaos-sleep", {}).get("waiting", 0) == 0


# -- rediss:// -------------------------------------------------------------------------------
def test_the_cli_over_rediss_with_a_password(
    cli_env: dict[str, str], redis_server: Callable[..., RedisServer]
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    server = redis_server(tls=True, password=password)
    assert server.url.startswith("rediss://")
    env = {**cli_env, "POLYJOBS_BACKEND": server.url}
    out = _run(env, "enqueue", "sleep", "--data", '{"seconds": 0}', "--json")
    out += _run(env, "start", "-q", "sleep", "--burst", "--no-schedule")
    out += _run(env, "stats", "--json")
    assert '"completed": 1' in out, out
    assert password not in out
    plain = {**env, "POLYJOBS_BACKEND": f"redis://:{password}@localhost:{server.port}/0"}
    refused = _run(plain, "stats")
    assert "-> 1" in refused and password not in refused
