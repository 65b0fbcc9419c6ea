"""``polyjobs config`` and ``polyjobs backends``."""

from __future__ import annotations

from typing import Any

from polyjobs.cli.common import (
    AppOption,
    BackendOption,
    JsonOption,
    configured,
    plugin_host,
    run,
    settings,
)
from polyjobs.cli.console import Column, Console
from polyjobs.redact import MASK, redact_url


def _shown(name: str, value: Any) -> Any:
    from polyjobs.settings import is_secret

    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if is_secret(name) and value not in (None, ""):
        return MASK
    return value


def config(
    backend: BackendOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """The effective settings and where each came from (secrets redacted)."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        from polyjobs.settings import apply_queue_overrides

        resolved, host = configured(backend=backend, app=app)
        rows: list[dict[str, Any]] = [
            {
                "name": "backend",
                "value": _shown("backend", resolved.backend.value),
                "source": resolved.backend.source,
            },
            {"name": "home", "value": resolved.home.value, "source": resolved.home.source},
            {"name": "grace", "value": resolved.grace.value, "source": resolved.grace.source},
            {
                "name": "plugins",
                "value": ",".join(resolved.plugins.value),
                "source": resolved.plugins.source,
            },
            {
                "name": "app",
                "value": resolved.app.value or "(every installed application)",
                "source": resolved.app.source,
            },
        ]
        rows += [
            {"name": n, "value": _shown(n, v.value), "source": v.source}
            for n, v in sorted(resolved.values.items())
        ]
        for spec in apply_queue_overrides(host.queue_specs().values(), resolved):
            sched = spec.schedule
            cadence = (
                ""
                if sched is None
                else (f"every {sched.every:g}s" if sched.every else f"cron {sched.cron}")
            )
            rows.append(
                {
                    "name": f"queue {spec.name}",
                    "value": f"concurrency={spec.concurrency} timeout={spec.timeout} "
                    f"attempts={spec.attempts} {cadence}".rstrip(),
                    "source": "spec + overrides",
                }
            )
        if as_json:
            console.json({"config_file": str(resolved.config_file or ""), "settings": rows})
            return
        console.table(
            (Column("setting", "key"), Column("value", whole_words=60), Column("from")),
            [(r["name"], r["value"], r["source"]) for r in rows],
            title=f"config file: {resolved.config_file or 'none'}",
        )

    run(go, console)


def backends(as_json: JsonOption = False) -> None:
    """Installed backend URL schemes and the plugin that provides each."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        found = plugin_host(settings()).backend_factories()
        rows = [
            {"scheme": f"{scheme}://", "plugin": owner}
            for scheme, (_, owner) in sorted(found.items())
        ]
        if as_json:
            console.json(rows)
        else:
            console.table(
                (Column("scheme", "key"), Column("plugin", "key")),
                [(r["scheme"], r["plugin"]) for r in rows],
            )

    run(go, console)
