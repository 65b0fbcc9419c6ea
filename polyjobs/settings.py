"""Settings: typed data resolved in one pure function, CLI > environment > polyjobs.toml > default.

The environment is read here and nowhere else (the caller passes it in). Every value remembers
where it came from, so ``polyjobs config`` can say so, with secrets redacted.

``polyjobs.toml`` (in the working directory, or the file named by ``POLYJOBS_CONFIG``)::

    app = "myapp.jobs"         # the application whose queues run (polyjobs -A)
    backend = "redis://localhost:6379/0"
    grace = "30s"

    [settings]                 # free-form values for processors (env-style names)
    SMTP_URL = "smtp://mail.example.com"

    [queues.analysis]          # per queue (full or short name)
    concurrency = 4
    timeout = "5s"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyjobs.errors import ConfigError, InvalidArgumentError
from polyjobs.hookspecs import SettingNames
from polyjobs.options import RateLimit, seconds
from polyjobs.redact import is_secret_key

if TYPE_CHECKING:
    from polyjobs.spec import QueueSpec, ScheduleSpec

DEFAULT_HOME = ".polyjobs"
DEFAULT_DB = "polyjobs.db"
CONFIG_FILE = "polyjobs.toml"
DEFAULT_GRACE = 30.0
#: Environment variables passed through to processors (``context.settings``) by prefix/name;
#: an application adds the ones it reads (``polyjobs_setting_names``).
PASSTHROUGH_PREFIXES = ("POLYJOBS_",)
PASSTHROUGH_NAMES = ("REDIS_URL",)
QUEUE_FIELDS = ("concurrency", "timeout", "attempts", "every", "limit")
SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "WEBHOOK", "URI", "URL")


@dataclass(frozen=True, slots=True)
class Value:
    value: Any
    source: str  # "flag", "env NAME", "polyjobs.toml", "default"


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved settings of one CLI invocation or Runtime."""

    backend: Value
    home: Value
    grace: Value
    plugins: Value = field(default_factory=lambda: Value((), "default"))
    #: The application (``module`` or ``module:attr``), or None: every installed one.
    app: Value = field(default_factory=lambda: Value(None, "default"))
    values: Mapping[str, Value] = field(default_factory=dict)
    queues: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    config_file: Path | None = None

    @property
    def backend_url(self) -> str:
        return str(self.backend.value)

    @property
    def home_dir(self) -> Path:
        return Path(self.home.value)

    def plain_values(self) -> dict[str, Any]:
        """``{name: value}`` for processors (``RuntimeContext.settings``)."""
        return {name: v.value for name, v in self.values.items()}


def load_settings(
    *,
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    cwd: Path,
    declared: SettingNames | None = None,
) -> Settings:
    """Resolve every setting. ``flags`` holds CLI values (None = not given): ``backend``,
    ``home``, ``grace``, ``plugins`` (module names), ``app``, ``concurrency`` (``{queue: n}``) and
    ``settings`` (``{NAME: value}``). ``declared``: the environment variables the plugins
    read (``PluginHost.setting_names()``), resolved once the plugins are known."""
    declared = declared or SettingNames()
    config_path = _config_path(environ, cwd)
    toml = _read_toml(config_path)
    home = _pick(
        flags.get("home"), environ, ("POLYJOBS_HOME",), toml.get("home"), str(cwd / DEFAULT_HOME)
    )
    home = Value(str(Path(home.value).expanduser()), home.source)
    default_backend = f"sqlite:///{Path(home.value) / DEFAULT_DB}"
    backend = _pick(
        flags.get("backend"),
        environ,
        ("POLYJOBS_BACKEND", "REDIS_URL"),
        toml.get("backend"),
        default_backend,
    )
    grace = _pick(
        flags.get("grace"), environ, ("POLYJOBS_GRACE",), toml.get("grace"), DEFAULT_GRACE
    )
    grace = Value(seconds(grace.value, "grace"), grace.source)
    plugins = _pick(flags.get("plugins"), environ, ("POLYJOBS_PLUGINS",), toml.get("plugins"), ())
    names = plugins.value.split(",") if isinstance(plugins.value, str) else plugins.value
    plugins = Value(tuple(n.strip() for n in names if n.strip()), plugins.source)
    app = _pick(flags.get("app"), environ, ("POLYJOBS_APP",), toml.get("app"), None)
    if app.value is not None and (not isinstance(app.value, str) or not app.value.strip()):
        raise ConfigError(f"app ({app.source}) must be a module or module:attribute")
    return Settings(
        backend=backend,
        home=home,
        grace=grace,
        plugins=plugins,
        app=app,
        values=_values(flags.get("settings") or {}, environ, toml.get("settings") or {}, declared),
        queues=_queue_overrides(
            flags.get("concurrency") or {}, environ, toml.get("queues") or {}, declared
        ),
        config_file=config_path if config_path.exists() else None,
    )


def _config_path(environ: Mapping[str, str], cwd: Path) -> Path:
    named = environ.get("POLYJOBS_CONFIG")
    return Path(named) if named else cwd / CONFIG_FILE


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _pick(
    flag: Any, environ: Mapping[str, str], names: Iterable[str], toml: Any, default: Any
) -> Value:
    if flag is not None:
        return Value(flag, "flag")
    for name in names:
        if environ.get(name):
            return Value(environ[name], f"env {name}")
    if toml is not None:
        return Value(toml, CONFIG_FILE)
    return Value(default, "default")


def _values(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    toml: Mapping[str, Any],
    declared: SettingNames,
) -> dict[str, Value]:
    out = {name: Value(value, CONFIG_FILE) for name, value in toml.items()}
    prefixes = (*PASSTHROUGH_PREFIXES, *declared.prefixes)
    names = {*PASSTHROUGH_NAMES, *declared.names}
    for name, value in environ.items():
        if name.startswith(prefixes) or name in names:
            out[name] = Value(value, f"env {name}")
    out.update({name: Value(value, "flag") for name, value in flags.items()})
    return out


def _env_key(queue: str) -> str:
    return queue.upper().replace("-", "_")


def _queue_overrides(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    toml: Mapping[str, Any],
    declared: SettingNames,
) -> dict[str, dict[str, Value]]:
    """Per-queue overrides keyed by the name the user gave (full or short)."""
    out: dict[str, dict[str, Value]] = {}
    for queue, table in toml.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{CONFIG_FILE}: [queues.{queue}] must be a table")
        for fld, value in table.items():
            if fld not in QUEUE_FIELDS:
                raise ConfigError(f"{CONFIG_FILE}: unknown queue setting {queue}.{fld}")
            out.setdefault(queue, {})[fld] = Value(value, CONFIG_FILE)
    for name, (queue, fld, scale) in declared.queue_fields.items():
        if environ.get(name):
            out.setdefault(queue, {})[fld] = Value(
                _number(environ[name], name) * scale, f"env {name}"
            )
    for queue, value in flags.items():
        out.setdefault(queue, {})["concurrency"] = Value(value, "flag")
    return out


def _number(text: Any, what: str) -> float:
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {text!r}") from None
    if number < 0:
        raise ConfigError(f"{what} must be >= 0, got {text!r}")
    return number


def apply_queue_overrides(specs: Iterable[QueueSpec], settings: Settings) -> list[QueueSpec]:
    """Apply per-queue overrides (``concurrency``, ``timeout``, ``attempts``, ``every``,
    ``limit`` such as ``5/2s`` or ``off``).

    Precedence per field: flag > ``POLYJOBS_<QUEUE>_<FIELD>`` (queue short name, upper case,
    ``-`` as ``_``) > other names the application declares for them
    (``SettingNames.queue_fields``) > ``[queues.<name>]`` > the spec.
    """
    out = []
    for spec in specs:
        names = [n for n in (spec.name, spec.short_name) if n]
        changes: dict[str, Any] = {}
        for fld in QUEUE_FIELDS:
            chosen = _queue_value(settings, names, fld)
            if chosen is not None:
                changes[fld] = chosen
        out.append(_with_overrides(spec, changes))
    return out


def _queue_value(settings: Settings, names: list[str], fld: str) -> Any | None:
    """The winning override of one field: flag, then POLYJOBS_* env, a declared name, toml."""
    candidates: list[tuple[int, Any]] = []
    for name in names:
        given = settings.queues.get(name, {}).get(fld)
        if given is not None:
            rank = 0 if given.source == "flag" else 2 if given.source.startswith("env ") else 3
            candidates.append((rank, given.value))
        env = settings.values.get(f"POLYJOBS_{_env_key(name)}_{fld.upper()}")
        if env is not None and env.source.startswith("env "):
            candidates.append((1, env.value))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def _with_overrides(spec: QueueSpec, changes: Mapping[str, Any]) -> QueueSpec:
    fields_: dict[str, Any] = {}
    what = f"queue {spec.name}"
    if "concurrency" in changes:
        fields_["concurrency"] = _integer(changes["concurrency"], f"{what} concurrency")
    if "attempts" in changes:
        fields_["attempts"] = _integer(changes["attempts"], f"{what} attempts")
    if "timeout" in changes:
        fields_["timeout"] = seconds(changes["timeout"], f"{what} timeout") or None
    if "limit" in changes:
        value = changes["limit"]
        off = value is None or str(value).lower() in ("", "off", "none")
        try:
            fields_["rate_limit"] = None if off else RateLimit.parse(value)
        except InvalidArgumentError as exc:
            raise ConfigError(f"{what} limit: {exc}") from None
    if "every" in changes:
        if spec.schedule is None or spec.schedule.every is None:
            raise ConfigError(f"{what} has no 'every' schedule to change")
        from polyjobs.spec import ScheduleSpec  # with a queue to change, not by every command

        every = seconds(changes["every"], f"{what} every")
        fields_["schedule"] = ScheduleSpec(**{**_schedule_fields(spec.schedule), "every": every})
    try:
        return spec.with_changes(**fields_)
    except InvalidArgumentError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _schedule_fields(schedule: ScheduleSpec) -> dict[str, Any]:
    return {
        "key": schedule.key,
        "every": schedule.every,
        "cron": schedule.cron,
        "tz": schedule.tz,
        "name": schedule.name,
        "data": schedule.data,
        "missed": schedule.missed,
    }


def _integer(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number) or number < 1:
        raise ConfigError(f"{what} must be a whole number >= 1, got {value!r}")
    return int(number)


def is_secret(name: str) -> bool:
    """Whether a setting's value must be redacted when shown."""
    upper = name.upper()
    return is_secret_key(name) or any(marker in upper for marker in SECRET_MARKERS)
