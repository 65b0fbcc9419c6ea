"""Scenario 6: bad input. Fuzzed job data, options and ids through the API and the CLI, and
corrupted storage (job hashes, foreign keys under our prefix, a truncated SQLite file).

Each bad input gets a clear error (an ``InvalidArgumentError`` / ``PolyjobsError``, or one
line and exit code 1 from the CLI) or a failed job with a reason; the worker keeps running;
nothing else is lost. Found bugs are ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from polyjobs import InvalidArgumentError, Job, PolyjobsError, Queue, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.cli.app import app
from tests.chaos.chaos_support import MAIN_REDIS

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEEP = {"remove_on_complete": False, "remove_on_fail": False}

# -- strategies ------------------------------------------------------------------------------
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # wider: see the xfail test
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NOT_JSON_LEAF = (
    st.just(math.nan)
    | st.just(math.inf)
    | st.binary(min_size=1, max_size=4)
    | st.frozensets(st.integers(), min_size=1, max_size=2)
    | st.builds(object)
)
ANY_DATA = JSON | st.recursive(
    JSON_LEAF | NOT_JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
NUMBER = (
    st.integers(min_value=-5, max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
)
NESTED = st.dictionaries(
    st.sampled_from(["delay", "jitter", "max_delay", "count", "age", "bogus"]), NUMBER, max_size=3
) | st.fixed_dictionaries(
    {"type": st.sampled_from(["fixed", "exponential", "linear", ""])},
    optional={"delay": NUMBER},
)
OPTION_VALUE = (
    st.none()
    | NUMBER
    | st.text(max_size=8)
    | st.sampled_from(["10s", "500ms", "1h", "-1s", "fixed", "exponential", "5/2s"])
    | NESTED
    | st.lists(st.integers(), max_size=2)
)
OPTION_KEYS = st.sampled_from(
    [
        "job_id",
        "delay",
        "priority",
        "lifo",
        "attempts",
        "backoff",
        "timeout",
        "remove_on_complete",
        "remove_on_fail",
        "jobId",
        "bogus",
    ]
)
OPTIONS = st.dictionaries(OPTION_KEYS, OPTION_VALUE, max_size=4)
ODD_ID = st.text(
    st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40
) | st.sampled_from(
    ["{q}", "a:b:c", "*", "?[x]", "j:1", "..", "%00", "\\", "'\"", "é€😀", "x" * 256, "x" * 257]
)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# -- backends --------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fuzz.db"
    else:
        prefix = request.getfixturevalue("main_prefix")
        yield f"{MAIN_REDIS}?prefix={prefix}"


class Session:
    """One event loop and one open backend for a whole hypothesis run (a backend's
    connections belong to the loop that opened them)."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self._cm = open_backend(url)
        self.backend: Backend = self.runner.run(self._cm.__aenter__())

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def close(self) -> None:
        self.runner.run(self._cm.__aexit__(None, None, None))
        self.runner.close()


@pytest.fixture
def session(url: str) -> Iterator[Session]:
    opened = Session(url)
    yield opened
    opened.close()


async def _echo(job: Job) -> Any:
    return {"id": job.id, "data": job.data}


async def _burst(backend: Backend, queue: str) -> None:
    worker = Worker(queue, _echo, backend, schedule=False, block=0.2)
    await asyncio.wait_for(worker.run(burst=True), 30)


# -- the API ---------------------------------------------------------------------------------
def test_fuzzed_data_is_stored_exactly_or_refused_clearly(session: Session) -> None:
    queue = Queue("fuzz-data", session.backend)
    accepted: dict[str, Any] = {}

    @FUZZ
    @given(data=ANY_DATA)
    def one(data: Any) -> None:
        job_id = uuid.uuid4().hex
        if not _is_json(data):
            with pytest.raises(InvalidArgumentError):
                session.run(queue.add("d", data, job_id=job_id, **KEEP))
            return
        session.run(queue.add("d", data, job_id=job_id, **KEEP))
        stored = session.run(queue.get_job(job_id))
        assert stored is not None and stored.data == json.loads(json.dumps(data))
        accepted[job_id] = stored.data

    one()
    session.run(_burst(session.backend, "fuzz-data"))
    counts = session.run(queue.counts())
    assert (counts["completed"], counts["failed"], counts["active"]) == (len(accepted), 0, 0)
    for job_id, data in accepted.items():
        job = session.run(queue.get_job(job_id))
        assert job.returnvalue == {"id": job_id, "data": data}


def test_fuzzed_options_are_applied_or_refused_clearly(session: Session) -> None:
    queue = Queue("fuzz-options", session.backend)

    @FUZZ
    @given(options=OPTIONS)
    def one(options: dict[str, Any]) -> None:
        try:
            job = session.run(queue.add("o", {"x": 1}, **options))
        except InvalidArgumentError as exc:
            assert "\n" not in str(exc)
            return
        assert job.state in ("waiting", "delayed")
        assert session.run(queue.get_job(job.id)) is not None

    one()


def test_fuzzed_job_ids_are_kept_exactly_or_refused_clearly(session: Session) -> None:
    queue = Queue("fuzz-ids", session.backend)
    accepted: set[str] = set()

    @FUZZ
    @given(job_id=ODD_ID)
    def one(job_id: str) -> None:
        try:
            job = session.run(queue.add("i", {"id": job_id}, job_id=job_id, **KEEP))
        except InvalidArgumentError as exc:
            assert "\n" not in str(exc)
            assert (
                job_id.isprintable() is False
                or len(job_id) > 256
                or " " in job_id
                or any(c.isspace() for c in job_id)
            )
            return
        assert job.id == job_id
        stored = session.run(queue.get_job(job_id))
        assert stored is not None and stored.id == job_id and stored.data == {"id": job_id}
        accepted.add(job_id)

    one()
    session.run(_burst(session.backend, "fuzz-ids"))
    completed = session.run(queue.jobs("completed"))
    assert {j.id for j in completed} == accepted
    assert all(j.returnvalue["id"] == j.id for j in completed)


@pytest.mark.parametrize(
    "options",
    [
        {"backoff": {"jitter": "abc"}},
        {"backoff": {"jitter": None}},
        {"remove_on_complete": {"count": "x"}},
    ],
    ids=["jitter-text", "jitter-none", "count-text"],
)
async def test_nested_option_values_of_the_wrong_type_are_refused_clearly(
    options: dict[str, Any],
) -> None:
    async with open_backend("memory://") as backend:
        with pytest.raises(InvalidArgumentError):
            await Queue("q", backend).add("x", {}, **options)


@pytest.mark.parametrize("where", ["data", "name", "job_id"])
async def test_lone_surrogates_are_refused_clearly(where: str, tmp_path: Path) -> None:
    bad = "a\ud800b"
    args: dict[str, Any] = {"data": {"x": 1}, "name": "n", "job_id": None}
    args[where] = bad
    async with open_backend(f"sqlite:///{tmp_path}/s.db") as backend:
        queue = Queue("q", backend)
        with pytest.raises(InvalidArgumentError):
            await queue.add(args["name"], args["data"], job_id=args["job_id"])
        assert (await queue.counts())["waiting"] == 0


async def test_a_job_id_ending_in_log_is_a_job_of_its_own(main_prefix: str) -> None:
    async with open_backend(f"{MAIN_REDIS}?prefix={main_prefix}") as backend:
        queue = Queue("ids", backend)
        await queue.add("victim", {"keep": "me"}, job_id="x:log")
        await queue.add("other", {}, job_id="x")
        assert await queue.remove("x")
        victim = await queue.get_job("x:log")
        assert victim is not None and victim.data == {"keep": "me"}


async def test_integers_beyond_64_bits_come_back_exactly_from_redis(main_prefix: str) -> None:
    async with open_backend(f"{MAIN_REDIS}?prefix={main_prefix}") as backend:
        queue = Queue("bigint", backend)
        job = await queue.add("b", {"n": -(2**63) - 1, "m": 2**70})
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.data == {"n": -(2**63) - 1, "m": 2**70}


# -- the CLI ---------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.chdir(tmp_path)
    env = {
        "POLYJOBS_HOME": str(tmp_path / "state"),
        "POLYJOBS_BACKEND": f"sqlite:///{tmp_path}/cli.db",
        "POLYJOBS_PLUGINS": "",
        "REDIS_URL": None,
    }
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return invoke


def _count(url: str, queue: str) -> int:
    async def count() -> int:
        async with open_backend(url) as backend:
            return sum((await backend.counts(queue)).values())

    return asyncio.run(count())


def test_fuzzed_enqueue_data_ids_and_options_through_the_cli(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    text = st.one_of(JSON.map(json.dumps), st.text(max_size=30))

    @FUZZ
    @given(
        data=text,
        job_id=st.none() | ODD_ID,
        delay=st.none() | st.sampled_from(["0", "1s", "500ms", "1h", "-1s", "soon", ""]),
        priority=st.none() | st.integers(min_value=-3, max_value=2**22),
        attempts=st.none() | st.integers(min_value=-2, max_value=5),
    )
    def one(
        data: str,
        job_id: str | None,
        delay: str | None,
        priority: int | None,
        attempts: int | None,
    ) -> None:
        before = _count(url, "fuzz") if (tmp_path / "cli.db").exists() else 0
        args = ["enqueue", "fuzz", "--data", data, "--json"]
        for flag, value in (
            ("--job-id", job_id),
            ("--delay", delay),
            ("--priority", priority),
            ("--attempts", attempts),
        ):
            if value is not None:
                args += [flag, str(value)]
        result = cli(*args)
        if result.exit_code != 0:
            assert result.exit_code == 1, result.output
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
            assert "Traceback" not in result.output
            assert _count(url, "fuzz") == before
            return
        shown = json.loads(result.stdout)
        if job_id is not None:
            assert shown["id"] == job_id

        async def stored() -> Any:
            async with open_backend(url) as backend:
                return await Queue("fuzz", backend).get_job(shown["id"])

        job = asyncio.run(stored())
        assert job is not None
        after = _count(url, "fuzz")
        if after == before + 1:  # a new job (not one deduplicated by its id)
            expected = json.loads(data)
            assert job.data == ({} if expected is None else expected)
        else:
            assert after == before and job_id is not None

    one()


async def test_truncated_sqlite_file_is_one_line_from_the_cli(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        await Queue("q", backend).add_bulk([("j", {"pad": "x" * 500})] * 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for args in (["stats"], ["enqueue", "q", "--data", "{}"], ["jobs", "list", "q"]):
        result = await asyncio.to_thread(cli, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1 and "truncated" in result.stderr, result.stderr
    assert len(path.read_bytes()) == len(data) // 2  # left as it was


async def test_sqlite_file_truncated_under_a_running_worker(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        await Queue("t", backend).add_bulk([("j", {"pad": "x" * 500})] * 3000)
    with sqlite3.connect(path) as db:  # everything into the main file, none in the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    async with open_backend(f"sqlite:///{path}") as backend:
        runs = 0

        async def work(job: Job) -> None:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.01)

        worker = Worker("t", work, backend, concurrency=5, lease=1.0, block=0.3, schedule=False)
        errors: list[BaseException] = []
        worker.on("error", errors.append)
        run = asyncio.create_task(worker.run())
        while runs < 50:
            await asyncio.sleep(0.01)
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
        await asyncio.sleep(2.0)
        for _ in range(80):  # a loaded machine may take longer to reach a damaged page
            if errors:
                break
            await asyncio.sleep(0.1)
        assert not run.done(), "the worker stopped"
        closing = time.monotonic()
        await asyncio.wait_for(worker.close(grace=0.5), 10)
        await run
        assert time.monotonic() - closing < 5
    assert errors, "the damage went unnoticed"
    for error in errors:
        assert isinstance(error, PolyjobsError), repr(error)
        assert str(path) in str(error) and "\n" not in str(error)
        assert "damaged" in str(error) or "truncated" in str(error)


# -- corrupted storage on Redis --------------------------------------------------------------
@asynccontextmanager
async def _corrupted(prefix: str) -> AsyncIterator[tuple[Backend, Queue, redis.Redis]]:
    """Twelve jobs on queue ``c``, five of them corrupted in Redis, and foreign keys."""
    client = redis.Redis.from_url(MAIN_REDIS, decode_responses=True)
    async with open_backend(f"{MAIN_REDIS}?prefix={prefix}") as backend:
        queue = Queue("c", backend)
        await queue.add_bulk([("j", {"i": i}, {"job_id": f"j{i}", **KEEP}) for i in range(12)])
        job = f"{prefix}:{{c}}:j:"
        assert client.hget(f"{job}j1", "d") == '{"i":1}'  # the layout we corrupt
        client.hset(f"{job}j1", "d", "{not json")
        client.hset(f"{job}j2", "o", "garbage")
        client.hset(f"{job}j3", "am", "NaN-ish")
        client.delete(f"{job}j4")
        client.set(f"{job}j5", "a string, not a hash")
        client.set(f"{prefix}:{{c}}:foreign", "x")
        client.set(f"{job}nobody", "x")
        client.sadd(f"{prefix}:queues", "ghost queue")
        client.hset(f"{prefix}:{{c}}:meta", "foreign-field", "1")
        try:
            yield backend, queue, client
        finally:
            client.close()


async def _run_for(backend: Backend, seconds: float) -> tuple[set[str], list[BaseException]]:
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def work(job: Job) -> None:
        seen.add(job.id)

    worker = Worker(
        "c", work, backend, lease=1.0, stalled_interval=0.3, block=0.3, max_stalls=3, schedule=False
    )
    worker.on("error", errors.append)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(seconds)
    assert not run.done(), "the worker stopped"
    await asyncio.wait_for(worker.close(grace=1), 10)
    await run
    return seen, errors


async def test_corrupted_jobs_neither_stop_the_worker_nor_touch_the_others(
    main_prefix: str,
) -> None:
    async with _corrupted(main_prefix) as (backend, queue, _):
        seen, _errors = await _run_for(backend, 4.0)
        assert {f"j{i}" for i in range(6, 12)} <= seen
        for i in range(6, 12):
            job = await queue.get_job(f"j{i}")
            assert job is not None and job.state == "completed"
        assert (await backend.counts("c"))["active"] == 0
        assert "c" in await backend.queues()  # foreign keys and members are ignored


async def test_corrupted_jobs_end_failed_with_a_reason(main_prefix: str) -> None:
    async with _corrupted(main_prefix) as (backend, queue, _):
        _seen, errors = await _run_for(backend, 4.0)
        assert all(isinstance(e, PolyjobsError) for e in errors), errors
        counts = await backend.counts("c")
        assert sum(counts.values()) == 12, counts  # no job in no state
        for state in ("waiting", "failed", "completed"):
            await queue.jobs(state)  # one bad job does not break a listing
        for i in range(1, 6):
            try:
                job = await queue.get_job(f"j{i}")
            except PolyjobsError:
                continue
            assert job is None or (job.state == "failed" and job.failed_reason), (i, job)
