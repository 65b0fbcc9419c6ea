"""``App``: a user's queues in a few lines, found by reference the way ``polyjobs -A`` does."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from polyjobs import (
    App,
    InvalidArgumentError,
    Job,
    PluginError,
    PluginHost,
    Queue,
    QueueSpec,
    Worker,
    hookimpl,
    open_backend,
)
from polyjobs.application import load_application


def test_the_decorator_declares_a_queue_and_leaves_the_function_as_it_was() -> None:
    app = App("shop")

    @app.queue(concurrency=3, attempts=2, timeout="1.5s", every="10m", rate_limit="5/2s")
    async def send_receipts(job: Job) -> str:
        """Email the receipts.

        More text."""
        return "sent"

    @app.queue("restock")
    def restock(job: Job) -> int:
        return 1

    assert send_receipts.__name__ == "send_receipts" and restock(None) == 1  # type: ignore[arg-type]
    spec = app.specs["send-receipts"]
    assert (spec.concurrency, spec.attempts, spec.timeout) == (3, 2, 1.5)
    assert spec.schedule is not None and spec.schedule.every == 600
    assert spec.rate_limit is not None and spec.rate_limit.max == 5
    assert spec.description == "Email the receipts."
    assert list(app.specs) == ["send-receipts", "restock"]
    with pytest.raises(InvalidArgumentError, match="given twice"):
        app.queue("restock")(restock)
    with pytest.raises(InvalidArgumentError, match="not a duration"):
        app.queue("slow", timeout="soon")(restock)


async def test_the_apps_queues_run_async_and_plain_processors() -> None:
    app = App("shop")

    @app.queue()
    async def double(job: Job) -> int:
        return int(job.data) * 2

    @app.queue()
    def shout(job: Job) -> str:
        return str(job.data).upper()

    host = PluginHost.load(entry_points=False, app=app)
    specs = host.queue_specs()
    async with open_backend("memory://", host) as backend:
        added = [
            await specs[n].make_queue(backend).add(n, d)
            for n, d in [("double", 21), ("shout", "hi")]
        ]
        for spec in specs.values():
            await Worker(spec.name, spec.processor, backend).run(burst=True)
        results = [
            (await Queue(j.queue_name, backend).require_job(j.id)).returnvalue for j in added
        ]
    assert results == [42, "HI"]


def test_an_app_alone_contributes_queues_and_resources() -> None:
    class Other:
        @hookimpl
        def polyjobs_queue_specs(self) -> Sequence[QueueSpec]:
            return [QueueSpec("other", lambda job: None)]

    app = App("mine")
    app.add(QueueSpec("mine", lambda job: None))
    everything = PluginHost.load(extra=[Other()])
    assert "other" in everything.queue_specs()
    chosen = PluginHost.load(modules=(), app=app)
    assert list(chosen.queue_specs()) == ["mine"]
    assert chosen.resources() == {}
    assert "memory" in chosen.backend_factories()  # backends stay


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("apptest_")]:
        del sys.modules[name]


def test_references_name_an_app_a_list_of_specs_or_a_plugin_module(modules: Path) -> None:
    (modules / "apptest_a.py").write_text(
        "from polyjobs import App, QueueSpec, hookimpl\n"
        "app = App('a')\n"
        "app.add(QueueSpec('a1', print))\n"
        "SPECS = [QueueSpec('a2', print), QueueSpec('a3', print)]\n"
        "ONE = QueueSpec('a4', print)\n"
        "NUMBER = 3\n",
        encoding="utf-8",
    )
    (modules / "apptest_b.py").write_text(
        "from polyjobs import QueueSpec, hookimpl\n"
        "@hookimpl\n"
        "def polyjobs_queue_specs():\n"
        "    return [QueueSpec('b1', print)]\n",
        encoding="utf-8",
    )
    where = str(modules)
    for reference, queues in [
        ("apptest_a", ["a1"]),
        ("apptest_a:app", ["a1"]),
        ("apptest_a:SPECS", ["a2", "a3"]),
        ("apptest_a:ONE", ["a4"]),
        ("apptest_b", ["b1"]),
    ]:
        host = PluginHost.load(app=load_application(reference, search_path=where))
        assert list(host.queue_specs()) == queues, reference
    for reference, message in [
        ("apptest_a:NUMBER", "is a int"),
        ("apptest_a:nope", "has no 'nope'"),
        ("apptest_missing", "No module named 'apptest_missing'"),
        ("apptest_a:", "expected module or module:attribute"),
    ]:
        with pytest.raises(PluginError, match=message):
            load_application(reference, search_path=where)


def test_the_app_declares_the_environment_variables_its_processors_read(tmp_path: Path) -> None:
    from polyjobs.settings import load_settings

    host = PluginHost.load(app=App("mail", settings=["SMTP_URL"]))
    environ = {"SMTP_URL": "smtp://mail", "OTHER_SECRET": "x", "POLYJOBS_MAIL_FROM": "me"}
    before = load_settings(flags={}, environ=environ, cwd=tmp_path).plain_values()
    after = load_settings(
        flags={}, environ=environ, cwd=tmp_path, declared=host.setting_names()
    ).plain_values()
    assert "SMTP_URL" not in before and after["SMTP_URL"] == "smtp://mail"
    assert "OTHER_SECRET" not in after and after["POLYJOBS_MAIL_FROM"] == "me"
