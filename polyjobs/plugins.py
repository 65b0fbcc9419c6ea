"""Plugin loading, and the typed wrappers that call hooks. Only this module touches ``pm.hook``."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pluggy

from polyjobs import hookspecs
from polyjobs.errors import PluginError, UnknownBackendError
from polyjobs.redact import redact_url

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.listings import Listing
    from polyjobs.spec import QueueSpec

log = logging.getLogger(__name__)

#: The backends that come with the engine; they register through the same hooks as
#: third-party plugins. A module that is not part of this installation is skipped.
#: Applications (the Polymarket detector included) are found through the entry points.
BUILTIN_BACKENDS = (
    "polyjobs.backends.memory",
    "polyjobs.backends.sqlite",
    "polyjobs.backends.redis",
    "polyjobs.backends.postgres",
    "polyjobs.backends.socket",
)
BUILTIN_PLUGINS = BUILTIN_BACKENDS
ENTRY_POINT_GROUP = "polyjobs"
LISTING_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
COMMAND_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
COMMAND_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class PluginHost:
    """A pluggy ``PluginManager`` with polyjobs' hooks, and typed calls of them.

    Build one per application (``PluginHost.load()``); nothing here is global.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        #: Plugins whose queues, resources and setting names are left out (another
        #: application was chosen: see ``load(app=...)``).
        self.quiet: frozenset[str] = frozenset()

    @classmethod
    def load(
        cls,
        *,
        builtins: Iterable[str] = BUILTIN_PLUGINS,
        entry_points: bool = True,
        modules: Iterable[str] = (),
        extra: Iterable[object] = (),
        app: str | object | None = None,
        search_path: str | None = None,
    ) -> PluginHost:
        """Register the built-in plugins, the ``polyjobs`` entry points, the plugin ``modules``
        named by import path (``POLYJOBS_PLUGINS``) and ``extra`` objects.

        ``app`` (an :class:`~polyjobs.App`, a plugin, the name of an installed one such as
        ``polymarket``, or a reference ``module[:attr]`` found by
        :func:`~polyjobs.application.load_application` with ``search_path``) is the
        application to run: then only it, ``modules`` and ``extra`` contribute queues,
        resources and setting names; the built-ins and entry points still give backends and
        observe job events. Without one, every installed plugin contributes."""
        pm = pluggy.PluginManager("polyjobs")
        pm.add_hookspecs(hookspecs)
        for name in builtins:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                continue
            pm.register(module, name=name)
        if entry_points:
            _load_installed(pm)
        installed = {name for name, _ in pm.list_name_plugin()}
        for name in modules:
            module = _import_plugin(name)
            if not pm.is_registered(module):
                pm.register(module, name=name)
            installed.discard(str(pm.get_name(module)))
        for plugin in extra:
            pm.register(plugin)
        host = cls(pm)
        if app is not None:
            app = _application(pm, app, search_path)
            if not pm.is_registered(app):
                pm.register(app, name=f"app {getattr(app, 'name', None) or _describe(app)}")
            installed.discard(str(pm.get_name(app)))
            host.quiet = frozenset(installed)
        return host

    @classmethod
    def for_url(cls, url: str) -> PluginHost:
        """The plugins needed to open ``url``: the built-in backends alone when one of them
        owns the scheme (a worker process then does not import the processors and their
        dependencies), else everything, entry points included."""
        builtins = cls.load(builtins=BUILTIN_BACKENDS, entry_points=False)
        if urlsplit(url).scheme in builtins.backend_factories():
            return builtins
        return cls.load()

    def _plugin_name(self, impl: Any) -> str:
        return str(self.pm.get_name(impl.plugin) or impl.plugin_name)

    def _contributors(self, hook: Any) -> list[tuple[str, Any]]:
        """``(plugin name, hookimpl)`` of an application hook, chosen application only."""
        named = [(self._plugin_name(impl), impl) for impl in hook.get_hookimpls()]
        return [(name, impl) for name, impl in named if name not in self.quiet]

    def backend_factories(self) -> dict[str, tuple[hookspecs.BackendFactory, str]]:
        """``{scheme: (factory, plugin name)}``; a scheme claimed twice raises ``PluginError``."""
        found: dict[str, tuple[hookspecs.BackendFactory, str]] = {}
        for impl in self.pm.hook.polyjobs_backend_factories.get_hookimpls():
            owner = self._plugin_name(impl)
            provided = cast(Mapping[str, hookspecs.BackendFactory], impl.function())
            for scheme, factory in provided.items():
                if scheme in found:
                    raise PluginError(
                        f"backend scheme {scheme!r} is claimed by both {found[scheme][1]!r} "
                        f"and {owner!r}"
                    )
                found[scheme] = (factory, owner)
        return found

    def queue_specs(self) -> dict[str, QueueSpec]:
        """Every contributed queue by name; a name contributed twice raises ``PluginError``."""
        found: dict[str, QueueSpec] = {}
        owners: dict[str, str] = {}
        for owner, impl in self._contributors(self.pm.hook.polyjobs_queue_specs):
            specs = cast("Sequence[QueueSpec]", impl.function())
            for spec in specs:
                if spec.name in found:
                    raise PluginError(
                        f"queue {spec.name!r} is contributed by both {owners[spec.name]!r} "
                        f"and {owner!r}"
                    )
                found[spec.name], owners[spec.name] = spec, owner
        return found

    def resources(self) -> dict[str, hookspecs.ResourceFactory]:
        """Every contributed resource factory by name; a name given twice raises."""
        found: dict[str, hookspecs.ResourceFactory] = {}
        owners: dict[str, str] = {}
        for owner, impl in self._contributors(self.pm.hook.polyjobs_resources):
            provided = cast(Mapping[str, hookspecs.ResourceFactory], impl.function())
            for name, factory in provided.items():
                if name in found:
                    raise PluginError(
                        f"resource {name!r} is provided by both {owners[name]!r} and {owner!r}"
                    )
                found[name], owners[name] = factory, owner
        return found

    def listings(self) -> dict[str, Listing]:
        """Every contributed read-only listing by key; a key given twice (or not made of
        lowercase letters, digits and ``-``) raises ``PluginError``."""
        found: dict[str, Listing] = {}
        owners: dict[str, str] = {}
        for owner, impl in self._contributors(self.pm.hook.polyjobs_listings):
            for listing in cast("Sequence[Listing]", impl.function()):
                if not LISTING_KEY.fullmatch(listing.key):
                    raise PluginError(f"listing key {listing.key!r} of {owner!r}: use a-z, 0-9, -")
                if listing.key in found:
                    raise PluginError(
                        f"listing {listing.key!r} is contributed by both "
                        f"{owners[listing.key]!r} and {owner!r}"
                    )
                found[listing.key], owners[listing.key] = listing, owner
        return found

    def cli_commands(self) -> dict[str, tuple[str, str]]:
        """The contributed command-line commands, ``{name: ("module:attribute", plugin)}``;
        a bad name or reference, or a name given twice, raises ``PluginError``."""
        found: dict[str, tuple[str, str]] = {}
        for owner, impl in self._contributors(self.pm.hook.polyjobs_cli_commands):
            for name, target in cast("Mapping[str, str]", impl.function()).items():
                if not isinstance(name, str) or not COMMAND_NAME.fullmatch(name):
                    raise PluginError(f"command {name!r} of {owner!r}: use a-z, 0-9, -")
                if not isinstance(target, str) or not COMMAND_TARGET.fullmatch(target):
                    raise PluginError(
                        f"command {name!r} of {owner!r}: {target!r} is not 'module:attribute'"
                    )
                if name in found:
                    raise PluginError(
                        f"command {name!r} is contributed by both {found[name][1]!r} and {owner!r}"
                    )
                found[name] = (target, owner)
        return found

    def setting_names(self) -> hookspecs.SettingNames:
        """The environment variables the contributing plugins read, merged."""
        names: list[str] = []
        prefixes: list[str] = []
        queue_fields: dict[str, tuple[str, str, float]] = {}
        for _owner, impl in self._contributors(self.pm.hook.polyjobs_setting_names):
            declared = cast(hookspecs.SettingNames, impl.function())
            names.extend(declared.names)
            prefixes.extend(declared.prefixes)
            queue_fields.update(declared.queue_fields)
        return hookspecs.SettingNames(tuple(names), tuple(prefixes), queue_fields)

    def demo(self) -> hookspecs.Demo:
        """The demo of the application (``polyjobs start --demo``); ``PluginError`` when no
        contributing plugin has one, or more than one does."""
        found = [
            (owner, impl.function())
            for owner, impl in self._contributors(self.pm.hook.polyjobs_demo)
        ]
        found = [(owner, demo) for owner, demo in found if demo is not None]
        if not found:
            raise PluginError("this application has no demo (--demo)")
        if len(found) > 1:
            owners = " and ".join(repr(owner) for owner, _ in found)
            raise PluginError(f"{owners} both have a demo: choose one with --app")
        return cast(hookspecs.Demo, found[0][1])

    def job_event(self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]) -> None:
        """Call ``polyjobs_job_event``; a failing plugin is logged, never raised into a job."""
        try:
            self.pm.hook.polyjobs_job_event(
                queue=queue, event=event, job_id=job_id, payload=payload
            )
        except Exception:
            log.exception("a polyjobs_job_event hook failed for %s job %s", queue, job_id)

    def make_backend(self, url: str) -> Backend:
        """Build (not open) the backend for ``url`` from the plugin that owns its scheme."""
        scheme = urlsplit(url).scheme
        factories = self.backend_factories()
        if scheme not in factories:
            known = ", ".join(f"{s}://" for s in sorted(factories)) or "none"
            raise UnknownBackendError(
                f"no backend for {redact_url(url)!r}: unknown scheme {scheme!r} "
                f"(installed: {known})"
            )
        return factories[scheme][0](url)


def _application(pm: pluggy.PluginManager, app: str | object, search_path: str | None) -> object:
    """The application object ``app`` names: an installed plugin by name (``polymarket``),
    else a reference ``module[:attr]``; an object is itself."""
    if not isinstance(app, str):
        return app
    installed = pm.get_plugin(app.strip())
    if installed is not None:
        return installed
    from polyjobs.application import load_application

    return load_application(app, search_path=search_path)


def _describe(plugin: object) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


@asynccontextmanager
async def open_backend(url: str, plugins: PluginHost | None = None) -> AsyncIterator[Backend]:
    """Open the backend for ``url`` and close it on exit::

    async with open_backend("memory://") as backend:
        queue = Queue("emails", backend)
    """
    backend = (plugins or PluginHost.for_url(url)).make_backend(url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def _where(exc: BaseException) -> str:
    """`` (at FILE:LINE)``: the last frame of ``exc``'s traceback (a syntax error names its
    own place in its message)."""
    import traceback

    if isinstance(exc, SyntaxError):
        return ""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _import_plugin(name: str) -> Any:
    """The plugin module ``name``; ``PluginError`` in one line when it cannot be imported or
    fails while it is (what and where)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PluginError(f"cannot load plugin module {name!r}: {exc}") from None
    except Exception as exc:
        raise PluginError(
            f"cannot load plugin module {name!r}: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from None


def _load_installed(pm: pluggy.PluginManager) -> None:
    """Register the plugins installed under the polyjobs entry points; ``PluginError`` in one
    line when one fails to load."""
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as exc:
        raise PluginError(
            f"cannot load the plugins installed for polyjobs (entry points "
            f"{ENTRY_POINT_GROUP!r}): {type(exc).__name__}: {exc}{_where(exc)}"
        ) from None
