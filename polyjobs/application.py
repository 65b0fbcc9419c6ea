"""Applications: a user's own queues, declared in a few lines and run by ``polyjobs -A``.

::

    # myapp/jobs.py
    from polyjobs import App, Job

    app = App("myapp")

    @app.queue(concurrency=5, attempts=3)
    async def thumbnails(job: Job) -> dict:
        ...

    @app.queue("emails", timeout="10s")
    def send_email(job: Job) -> None:   # a plain function runs in a thread
        ...

``polyjobs start -A myapp.jobs`` runs exactly these queues; ``polyjobs stats -A myapp.jobs``,
``polyjobs enqueue -A myapp.jobs thumbnails '{...}'`` and the other commands know them.

An ``App`` is a plugin object: it implements the hooks of :mod:`polyjobs.hookspecs` for its
queues, resources and setting names. :func:`load_application` finds one from a reference
(``module`` or ``module:attr``), the way ``polyjobs -A`` does.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from polyjobs.errors import InvalidArgumentError, PluginError
from polyjobs.hookspecs import ResourceFactory, SettingNames, hookimpl
from polyjobs.options import Backoff, RateLimit, seconds
from polyjobs.spec import QueueSpec, Retention, ScheduleSpec

if TYPE_CHECKING:
    from polyjobs.spec import Processor

F = TypeVar("F", bound=Callable[..., Any])
Duration = float | int | str | timedelta


class App:
    """A named set of queues (and the resources their processors share).

    ``@app.queue(...)`` turns a function (``async def`` or plain) into a queue's processor and
    returns the function unchanged; ``app.add(spec)`` adds a ready :class:`QueueSpec`;
    ``@app.resource("name")`` adds a shared resource (a factory taking the
    :class:`~polyjobs.RuntimeContext` and returning an async context manager), reached by
    processors as ``job.context["name"]``. ``settings`` names environment variables the
    processors read as ``job.context.settings[NAME]`` (``POLYJOBS_*`` always pass).
    """

    def __init__(self, name: str, *, settings: Iterable[str] = ()) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"an App needs a name, got {name!r}")
        self.name = name
        self.specs: dict[str, QueueSpec] = {}
        self.resource_factories: dict[str, ResourceFactory] = {}
        self.setting_names = tuple(settings)

    def __repr__(self) -> str:
        return f"App({self.name!r}, queues={list(self.specs)!r})"

    def add(self, spec: QueueSpec) -> QueueSpec:
        """Add a queue; a name given twice is an error."""
        if not isinstance(spec, QueueSpec):
            raise InvalidArgumentError(f"App.add takes a QueueSpec, got {type(spec).__name__}")
        if spec.name in self.specs:
            raise InvalidArgumentError(f"queue {spec.name!r} is given twice in app {self.name!r}")
        self.specs[spec.name] = spec
        return spec

    def queue(
        self,
        name: str | None = None,
        /,
        *,
        concurrency: int = 1,
        timeout: Duration | None = None,
        attempts: int = 1,
        backoff: Backoff | None = None,
        every: Duration | None = None,
        cron: str | None = None,
        tz: str | None = None,
        rate_limit: RateLimit | str | None = None,
        keep: Retention | None = None,
        short_name: str | None = None,
        description: str | None = None,
        validate: Callable[[Any], None] | None = None,
        sandbox: bool = False,
        global_concurrency: int | None = None,
        group_concurrency: int | None = None,
        group_rate_limit: RateLimit | str | None = None,
    ) -> Callable[[F], F]:
        """Declare a queue whose processor is the decorated function.

        ``name`` defaults to the function's name (``_`` as ``-``); ``description`` to the
        first line of its docstring. ``every``/``cron`` (with ``tz``) add one scheduled job
        at each slot. Durations take seconds or strings such as ``"10s"``, ``"500ms"``.
        """

        def register(processor: F) -> F:
            queue_name = name or processor.__name__.replace("_", "-")
            schedule = None
            if every is not None or cron is not None:
                schedule = ScheduleSpec(
                    key=f"{queue_name}-schedule",
                    every=None if every is None else seconds(every, f"queue {queue_name} every"),
                    cron=cron,
                    tz=tz,
                )
            self.add(
                QueueSpec(
                    queue_name,
                    _processor(processor),
                    concurrency=concurrency,
                    timeout=None
                    if timeout is None
                    else seconds(timeout, f"queue {queue_name} timeout"),
                    attempts=attempts,
                    backoff=backoff or Backoff(),
                    schedule=schedule,
                    retention=keep or Retention(),
                    short_name=short_name,
                    description=description or _first_line(processor.__doc__),
                    validate=validate,
                    rate_limit=None if rate_limit is None else RateLimit.parse(rate_limit),
                    sandbox=sandbox,
                    global_concurrency=global_concurrency,
                    group_concurrency=group_concurrency,
                    group_rate_limit=None
                    if group_rate_limit is None
                    else RateLimit.parse(group_rate_limit),
                )
            )
            return processor

        return register

    def resource(self, name: str) -> Callable[[F], F]:
        """Declare a shared resource: ``factory(context)`` returns an async context manager
        entered when the runtime starts and exited when it stops."""

        def register(factory: F) -> F:
            if name in self.resource_factories:
                raise InvalidArgumentError(f"resource {name!r} is given twice in {self.name!r}")
            self.resource_factories[name] = factory
            return factory

        return register

    # the hooks: an App is registered in a PluginHost like any plugin

    @hookimpl
    def polyjobs_queue_specs(self) -> Sequence[QueueSpec]:
        return list(self.specs.values())

    @hookimpl
    def polyjobs_resources(self) -> Mapping[str, ResourceFactory]:
        return dict(self.resource_factories)

    @hookimpl
    def polyjobs_setting_names(self) -> SettingNames:
        return SettingNames(names=self.setting_names)


def _processor(function: Callable[..., Any]) -> Processor:
    if not callable(function):
        raise InvalidArgumentError(f"a queue's processor must be callable, got {function!r}")
    return function


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def _from_specs(name: str, specs: Iterable[Any]) -> App:
    app = App(name)
    for spec in specs:
        if not isinstance(spec, QueueSpec):
            raise PluginError(
                f"application {name!r}: expected QueueSpec items, got {type(spec).__name__}"
            )
        app.add(spec)
    return app


def _is_plugin_module(module: Any) -> bool:
    return any(
        name.startswith("polyjobs_") and callable(getattr(module, name)) for name in dir(module)
    )


def load_application(reference: str, *, search_path: str | None = None) -> object:
    """The application named by ``reference``, as an object to register in a ``PluginHost``.

    ``module:attr`` names an :class:`App`, a list of :class:`QueueSpec` or one spec;
    ``module`` alone means its ``app`` attribute when it has one, else the module itself
    when it implements polyjobs hooks (a plugin module). ``search_path`` (the working
    directory, for ``polyjobs -A``) is put first on ``sys.path`` when it is not there yet.
    Any failure is one ``PluginError`` line.
    """
    module_name, _, attr = reference.strip().partition(":")
    if not module_name or (not attr and reference.strip().endswith(":")):
        raise PluginError(f"application {reference!r}: expected module or module:attribute")
    if search_path is not None and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"cannot load application {reference!r}: {type(exc).__name__}: {exc}"
        ) from None
    if not attr:
        if isinstance(getattr(module, "app", None), App):
            return module.app
        if _is_plugin_module(module):
            return module
        raise PluginError(
            f"application {reference!r}: {module_name} has no `app = polyjobs.App(...)` and "
            "implements no polyjobs hook (or name one: module:attribute)"
        )
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise PluginError(f"application {reference!r}: {module_name} has no {attr!r}")
        found = getattr(found, part)
    return _as_application(reference, found)


def _as_application(reference: str, found: Any) -> object:
    if isinstance(found, App) or _is_plugin_module(found):
        return found
    if isinstance(found, QueueSpec):
        return _from_specs(reference, [found])
    if isinstance(found, list | tuple):
        return _from_specs(reference, found)
    raise PluginError(
        f"application {reference!r} is a {type(found).__name__}: expected an App, "
        "a list of QueueSpec or a plugin"
    )
