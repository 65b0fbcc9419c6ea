"""The Lua scripts of the Redis backend: one atomic script per transition.

Each ``<name>.lua`` (beside this module) runs after its prelude, except the :data:`GLOBAL` ones,
which touch no queue. The prelude is what the script needs of a generated header (the key
prefixes and constants of :mod:`polyjobs.backends.redis.keys`, the job fields from
:mod:`polyjobs.backends.redis.records`), ``common.lua`` and ``flows.lua``: their top-level
definitions that the script refers to, directly or through other definitions, in their order
(:mod:`polyjobs.backends.redis.prelude`). Redis runs a script's whole text on every call, so a
helper it never uses would cost a closure per call (and ``finish`` makes the helpers of flows only
when the queue has flows: :data:`FLOWS_LOADER`); the fixed keys (``K_meta``) and job-field
positions are written out as constants (:func:`fold`). Scripts are registered once per client and
called by SHA; a script is loaded again on ``NOSCRIPT`` (e.g. after a server restart).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from polyjobs.backend import METRICS_KEEP
from polyjobs.backends.redis.connection import COMMAND_TIMEOUT, Client, connection_for
from polyjobs.backends.redis.keys import EVENTS_MAXLEN, JOB_TAG, LOG_TAG, SCRIPT_KEYS
from polyjobs.backends.redis.multiplex import Multiplexed
from polyjobs.backends.redis.prelude import Unit, lazy, names_used, needed, split
from polyjobs.backends.redis.records import FIELDS, MISSING, NOT_A_HASH

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is an optional speed-up
    hiredis = None


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
    "limit",
    "control",
    "flow",
    "flowread",
    "read",
    "cancel",
)

#: Redis 7 script flags (a ``#!lua flags=...`` first line), by script. Without one, Redis
#: refuses a script's first write that may grow memory while over ``maxmemory``; ``allow-oom``
#: lets lease renewals and heartbeats (which overwrite what exists) write anyway, so the leases
#: of live jobs hold while the stalled sweep (which starts with a ZREM, always allowed) runs.
#: ``no-writes`` scripts only read: they run over maxmemory, where MULTI/EXEC is refused.
FLAGS = {
    "extend": "allow-oom",
    "heartbeat": "allow-oom",
    "read": "no-writes",
    "list": "no-writes",
}

#: Scripts on keys outside any queue: sent as written, without the queue header and prelude.
GLOBAL = frozenset({"control"})


def _header() -> str:
    lines = [f"local JP = ARGV[1] .. '{JOB_TAG}'"]
    lines.append(f"local LP = ARGV[1] .. '{LOG_TAG}'")
    # text: Redis formats a number argument of redis.call with '%.17g', on every XADD
    lines.append(f"local EVENTS_MAXLEN = '{EVENTS_MAXLEN}'")
    lines.append(f"local METRICS_KEEP = {int(METRICS_KEEP)}")
    lines.append(f"local NOT_A_HASH = '{NOT_A_HASH}'")
    lines.append(f"local MISSING = '{MISSING}'")
    lines.append("local FIELDS = {" + ", ".join(f"'{f}'" for f in FIELDS) + "}")
    return "\n".join(lines) + "\n"


def fold(text: str) -> str:
    """Lua ``text`` with constants written out: ``F['st']`` -> the field's position in
    ``FIELDS``, ``unpack(FIELDS)`` -> the names, ``#FIELDS`` -> their number, a fixed key
    ``K_meta`` -> ``KEYS[6]`` (its place in :data:`SCRIPT_KEYS`). Redis runs a script's top
    level on every call: tables built there (``FIELDS``, a name -> position table) are built on
    every call, and every helper that refers to a local of the top level captures it when its
    closure is made, a walk of the open upvalues that grows with each one; a constant, or the
    global ``KEYS``, costs neither. A name that is not a field or a fixed key raises
    ``ValueError``. It works on the text as it is, comments and strings included (the scripts
    name these constants only as code), and ``unpack(FIELDS)`` must be a call's last argument
    (where Lua keeps all its values, as the written-out names do)."""

    def position(match: re.Match[str]) -> str:
        if match.group(1) not in FIELDS:
            raise ValueError(f"Lua script: {match.group(1)!r} is not a job field")
        return str(FIELDS.index(match.group(1)) + 1)

    def key(match: re.Match[str]) -> str:
        if match.group(1) not in SCRIPT_KEYS:
            raise ValueError(f"Lua script: K_{match.group(1)} is not a fixed key")
        return f"KEYS[{SCRIPT_KEYS.index(match.group(1)) + 1}]"

    text = _KEY.sub(key, _FIELD.sub(position, text))
    text = _UNPACK.sub(", ".join(f"'{f}'" for f in FIELDS), text)
    return _COUNT.sub(str(len(FIELDS)), text)


_FIELD = re.compile(r"\bF\['(\w+)'\]")
_KEY = re.compile(r"\bK_(\w+)\b")
_UNPACK = re.compile(r"(?<![.\w])unpack\(FIELDS\)")
_COUNT = re.compile(r"#FIELDS\b")


def full_prelude() -> str:
    """The header, ``common.lua`` and ``flows.lua``, folded (:func:`fold`): what a script may
    use."""
    return _before_flows() + fold(read("flows.lua") + "\n")


def _before_flows() -> str:
    return fold(_header() + read("common.lua") + "\n")


@functools.cache
def _prelude_units() -> tuple[Unit, ...]:
    return split(full_prelude())


#: A script whose text calls this (a statement of its top level) makes the definitions it needs
#: only for flows (those of ``flows.lua``, and what only they need) there, not on every call:
#: the call is replaced by them (:func:`~polyjobs.backends.redis.prelude.lazy`). ``finish``
#: calls it when the queue has flows.
FLOWS_LOADER = "load_flows"


@functools.cache
def _flows_units() -> tuple[Unit, ...]:
    """The units of ``flows.lua`` in :func:`_prelude_units`."""
    start, at = len(_before_flows()), 0
    out = []
    for unit in _prelude_units():
        if at >= start:
            out.append(unit)
        at += len(unit.text)
    return tuple(out)


@functools.cache
def source(name: str) -> str:
    """The full text of script ``name`` as sent to Redis: its prelude (the units of
    :func:`full_prelude` it needs, see :func:`~polyjobs.backends.redis.prelude.needed`), then
    its own text. Cut once per process: every backend opened after the first reuses it."""
    shebang = f"#!lua flags={FLAGS[name]}\n" if name in FLAGS else ""
    body = fold(read(f"{name}.lua"))
    if name in GLOBAL:
        return shebang + body
    names = names_used(body)
    units = needed(_prelude_units(), names)
    if FLOWS_LOADER in names:
        prelude, body = lazy(_prelude_units(), units, _flows_units(), body, FLOWS_LOADER)
        return shebang + prelude + "\n" + body
    return shebang + "".join(unit.text for unit in units) + "\n" + body


def read(file: str) -> str:
    """The text of ``file`` beside this module."""
    return (resources.files("polyjobs.backends.redis") / file).read_text()


class _Shas(dict[str, str]):
    """Script name -> the SHA1 of its text, each script cut and hashed when first called: a
    command that only adds cuts one script, not all of them (each ~0.5 ms of CPU)."""

    def __missing__(self, name: str) -> str:
        if name not in NAMES:
            raise KeyError(name)
        sha = self[name] = hashlib.sha1(source(name).encode()).hexdigest()
        return sha


#: The scripts' SHAs, shared by every backend of the process.
SHAS = _Shas()


class Scripts:
    """The scripts of one backend: loaded once, then called by SHA (``EVALSHA``); on
    ``NOSCRIPT`` (a restarted or failed-over server) a script is loaded again and the call
    repeated on the same connection.

    Scripts are the hot path. With a :class:`~polyjobs.backends.redis.multiplex.Multiplexed`
    connection (``lean``), every call goes over it, many in flight at once; otherwise (Redis
    Cluster, TLS, no hiredis) each call bypasses redis-py's command layer on one pooled
    connection (the command packed by hiredis when installed, no per-call retry or
    instrumentation).
    """

    def __init__(self, client: Client, lean: Multiplexed | None = None) -> None:
        self._client = client
        self._lean = lean
        self.shas = SHAS

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name``; its error replies raise ``ResponseError``, other failures
        (connection lost, timeout, cancellation) drop the connection and raise."""
        sha = self.shas[name]
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        lean = self._lean
        if lean is not None:
            try:
                return await lean.call(*command)
            except NoScriptError:
                load = ("SCRIPT", "LOAD", source(name))
                return (await lean.call_many(load, command))[1]
        async with connection_for(self._client, keys[0]) as conn:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await conn.send_packed_command(_pack(conn, command), check_health=False)
                try:
                    return await conn.read_response()
                except NoScriptError:
                    load = ("SCRIPT", "LOAD", source(name))
                    await conn.send_packed_command(_pack(conn, load), check_health=False)
                    await conn.read_response()
                    await conn.send_packed_command(_pack(conn, command), check_health=False)
                    return await conn.read_response()


def _pack(conn: Any, command: tuple[Any, ...]) -> Any:
    if hiredis is not None:
        return hiredis.pack_command(command)
    return conn.pack_command(*command)
