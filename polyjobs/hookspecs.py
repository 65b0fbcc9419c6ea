"""The hooks a polyjobs plugin can implement. These docstrings are the plugin reference.

A plugin is a module or object with functions decorated by :data:`polyjobs.hookimpl`, registered
through the ``polyjobs`` entry-point group (``[project.entry-points.polyjobs]`` in its
``pyproject.toml``). The built-in backends register through the same hooks; an application
(``polyjobs.App``, or the Polymarket detector's entry point) is a plugin too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.listings import Listing
    from polyjobs.runtime import Runtime, RuntimeContext
    from polyjobs.spec import QueueSpec

hookspec = pluggy.HookspecMarker("polyjobs")
hookimpl = pluggy.HookimplMarker("polyjobs")

BackendFactory = Callable[[str], "Backend"]
ResourceFactory = Callable[["RuntimeContext"], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, slots=True)
class SettingNames:
    """The environment variables an application reads (see ``polyjobs_setting_names``).

    ``names`` and ``prefixes``: variables passed to processors as ``context.settings``
    (``POLYJOBS_*`` always are). ``queue_fields``: other names for a queue's settings,
    ``{VARIABLE: (queue, field, scale)}``: the variable's number times ``scale`` sets
    ``field`` (``concurrency``, ``timeout``, ``attempts``, ``every``, ``limit``) of ``queue``.
    """

    names: Sequence[str] = ()
    prefixes: Sequence[str] = ()
    queue_fields: Mapping[str, tuple[str, str, float]] = field(default_factory=dict)


@hookspec
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    """Return the backends this plugin provides, as ``{url_scheme: factory}``.

    ``factory(url)`` builds an unopened :class:`~polyjobs.backend.Backend` for a URL of that
    scheme; it must not do I/O (``open()`` does). A scheme claimed by two plugins is an error
    that names both.
    """
    raise NotImplementedError


@hookspec
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    """Return the queues this plugin contributes (one :class:`~polyjobs.QueueSpec` each).

    ``polyjobs start`` runs a worker for each contributed queue. A queue name contributed by two
    plugins is an error that names both.
    """
    raise NotImplementedError


@hookspec
def polyjobs_resources() -> Mapping[str, ResourceFactory]:
    """Return shared resources for processors, as ``{name: factory}``.

    A ``Runtime`` enters ``factory(context)`` (an async context manager) when it starts and
    exits it when it stops, after its workers have stopped; processors reach the value as
    ``job.context[name]``. ``context.settings`` holds the resolved settings and
    ``context.queue(name)`` any queue of the runtime. A name given by two plugins is an error.
    """
    raise NotImplementedError


@hookspec
def polyjobs_job_event(queue: str, event: str, job_id: str, payload: Mapping[str, Any]) -> None:
    """Called in the worker's process after each job event.

    ``event`` is one of ``completed``, ``failed``, ``retrying``, ``progress``, ``stalled``,
    ``held``; ``payload`` holds the event's details: ``returnvalue`` (completed),
    ``failed_reason`` (failed, retrying), ``duration`` (completed, failed, retrying: seconds the
    attempt ran, or None), ``progress``, ``failed`` (stalled: True when the job is now failed),
    ``until`` and ``seconds`` (held: the processor raised ``RateLimitError`` and the whole queue
    starts nothing before ``until``). Return nothing; an exception is logged and does not affect
    the job.
    """


@hookspec
def polyjobs_setting_names() -> SettingNames:
    """Return the environment variables this plugin's processors read.

    Settings are resolved before plugins load, so only the variables an application declares
    here (and every ``POLYJOBS_*``) reach ``context.settings``; ``queue_fields`` lets an
    application keep older names for its queues' settings next to ``POLYJOBS_<QUEUE>_<FIELD>``.
    """
    raise NotImplementedError


class DemoSetup(Protocol):
    """Where a demo keeps its state: a throw-away state directory, the backend URL in it,
    and the settings (``{NAME: value}``) that point the application at its demo data."""

    @property
    def home(self) -> Path: ...
    @property
    def backend_url(self) -> str: ...
    @property
    def settings(self) -> Mapping[str, str]: ...


class Demo(Protocol):
    """An application's self-contained run (``polyjobs start --demo``; see ``polyjobs_demo``)."""

    def prepare_demo(self, *, burst: bool = False) -> DemoSetup:
        """Create a new temporary state directory and the demo's data in it."""
        ...

    def demo_specs(self, specs: Iterable[QueueSpec]) -> list[QueueSpec]:
        """The queues as the demo runs them (shorter intervals...)."""
        ...

    def run_demo(
        self,
        runtime: Runtime,
        *,
        burst: bool = False,
        grace: float = 30.0,
        report: Callable[[str], None] | None = None,
    ) -> Awaitable[Any]:
        """Run the runtime (built from ``demo_specs`` and the setup's settings) as the demo
        does; with ``burst``, return once it has shown everything."""
        ...


@hookspec
def polyjobs_demo() -> Demo | None:
    """Return the application's demo (an object or module with the :class:`Demo` methods).

    ``polyjobs start --demo`` prepares it in a temporary state directory, runs the
    application's queues through it, and removes the directory on exit. A demo that also has
    ``async seed_demo(queue, report)`` (add the jobs it starts with: ``queue(name)`` is a queue
    to add to) runs with ``--processes N`` too: prepared and seeded once by the supervising
    process, its queues run by the N workers (not with ``--burst``).
    """
    raise NotImplementedError


@hookspec
def polyjobs_listings() -> Sequence[Listing]:
    """Return read-only tables of what the application holds or found (see
    :mod:`polyjobs.listings`); the board shows each as a page and as JSON. Keys must be unique
    across the loaded plugins."""
    raise NotImplementedError


@hookspec
def polyjobs_cli_commands() -> Mapping[str, str]:
    """Return the commands this plugin adds to the ``polyjobs`` command line, as
    ``{name: "module:attribute"}``: the attribute is a function (Typer makes it a command, its
    parameters the options, its docstring the help), a ``typer.Typer`` (a group of
    sub-commands) or a click command.

    Nothing is imported to answer this hook: the module is imported when the command runs,
    or when ``polyjobs --help`` lists it (to read its help), so keep the module light and
    import what the command needs inside it. Names are lowercase letters, digits and ``-``;
    a name the command line already has, or one that two plugins give, is an error.
    """
    raise NotImplementedError
