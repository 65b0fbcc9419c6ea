"""The Lua scripts of the Redis backend: one atomic script per transition.

Each ``<name>.lua`` (beside this module) runs after a generated header (the fixed keys named from
:mod:`polyjobs.backends.redis.keys`, the job fields from :mod:`polyjobs.backends.redis.records`)
and ``common.lua``. Scripts are registered once per client and called by SHA; redis-py
loads a script again on ``NOSCRIPT`` (e.g. after a server restart).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from polyjobs.backends.redis.keys import LOG_SUFFIX, SCRIPT_KEYS
from polyjobs.backends.redis.records import FIELDS

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

NAMES = (
    "add",
    "fetch",
    "finish",
    "extend",
    "release",
    "stalled",
    "progress",
    "log",
    "list",
    "pause",
    "drain",
    "clean",
    "remove",
    "retry",
    "promote",
    "obliterate",
    "schedule",
    "heartbeat",
)


def _header() -> str:
    lines = [f"local K_{name} = KEYS[{i}]" for i, name in enumerate(SCRIPT_KEYS, 1)]
    lines.append("local JP = ARGV[1]")
    lines.append(f"local LOG_SUFFIX = '{LOG_SUFFIX}'")
    lines.append("local FIELDS = {" + ", ".join(f"'{f}'" for f in FIELDS) + "}")
    lines.append("local F = {" + ", ".join(f"['{f}'] = {i}" for i, f in enumerate(FIELDS, 1)) + "}")
    return "\n".join(lines) + "\n"


def source(name: str) -> str:
    """The full text of script ``name`` as sent to Redis."""
    folder = resources.files("polyjobs.backends.redis")
    common = (folder / "common.lua").read_text()
    return _header() + common + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one Redis client, by name."""

    def __init__(self, client: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in NAMES
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    @property
    def shas(self) -> dict[str, str]:
        return {name: script.sha for name, script in self._scripts.items()}
