"""``polyjobs migrate``: bring the backend's schema to this polyjobs' version."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from polyjobs.cli.common import BackendOption, JsonOption, plugin_host, run, settings
from polyjobs.cli.console import Console
from polyjobs.redact import redact_url


@runtime_checkable
class Migrating(Protocol):
    """A backend whose schema is migrated explicitly (e.g. PostgreSQL)."""

    async def migrate(self) -> tuple[int, int]: ...


def migrate(backend: BackendOption = None, as_json: JsonOption = False) -> None:
    """Apply the backend's pending schema migrations (PostgreSQL); say what was done."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        resolved = settings(backend=backend)
        url = resolved.backend_url
        made = plugin_host(resolved).make_backend(url)
        shown = redact_url(url)
        if not isinstance(made, Migrating):
            text = f"{shown}: this backend has no schema to migrate (it sets itself up on open)"
            if as_json:
                console.json({"backend": shown, "migrated": False, "note": text})
            else:
                console.line(text)
            return
        before, after = await made.migrate()
        if as_json:
            migrated = after > before
            console.json({"backend": shown, "from": before, "to": after, "migrated": migrated})
        elif after > before:
            console.line(f"{shown}: schema migrated from version {before} to {after}")
        else:
            console.line(f"{shown}: schema already at version {after}; nothing to do")

    run(go, console)
