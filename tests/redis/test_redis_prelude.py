"""Each script is sent with only the prelude it needs (issue 21): the helpers of ``common.lua``
and ``flows.lua`` it refers to, directly or through other helpers, and no others.

The oracle is Redis' own Lua compiler: a name that no kept ``local`` declares compiles to a
global access (``GETGLOBAL``/``SETGLOBAL``), which the tests read from ``string.dump`` of the
script compiled by the server."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from polyjobs.backends.redis import scripts
from polyjobs.backends.redis.keys import SCRIPT_KEYS
from polyjobs.backends.redis.prelude import Unit, lazy, names_used, needed, split
from polyjobs.backends.redis.records import FIELDS
from tests.redis.conftest import URL

QUEUE_SCRIPTS = [name for name in scripts.NAMES if name not in scripts.GLOBAL]
WHOLE = split(scripts.full_prelude())
DEFINED = frozenset().union(*(unit.defines for unit in WHOLE))


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(URL)
    try:
        yield c
    finally:
        await c.aclose()


async def _globals(client: aioredis.Redis, text: str) -> set[str]:
    """The globals Lua ``text`` reads or writes, as the server compiles it."""
    if text.startswith("#!"):
        text = text.split("\n", 1)[1]  # the flags line is EVAL's, not Lua's
    dump = await client.eval("return string.dump(assert(loadstring(ARGV[1])))", 0, text)
    return _Chunk(bytes(dump)).globals()


class _Chunk:
    """Just enough of a Lua 5.1 chunk (``string.dump``) to list its global accesses."""

    GETGLOBAL, SETGLOBAL = 5, 7

    def __init__(self, data: bytes) -> None:
        assert data[:5] == b"\x1bLua\x51", data[:5]
        self.data = data
        self.order: str = "little" if data[6] == 1 else "big"
        self.int_size, self.size_t, self.instruction, self.number = data[7:11]
        self.at = 12
        self.found: set[str] = set()

    def globals(self) -> set[str]:
        self._function()
        assert self.at == len(self.data)
        return self.found

    def _int(self, size: int) -> int:
        value = int.from_bytes(self.data[self.at : self.at + size], self.order)  # type: ignore[arg-type]
        self.at += size
        return value

    def _string(self) -> str:
        size = self._int(self.size_t)
        text = self.data[self.at : self.at + size - 1].decode() if size else ""
        self.at += size
        return text

    def _function(self) -> None:
        self._string()  # source
        self.at += 2 * self.int_size + 4  # lines, upvalues, parameters, vararg, stack size
        code = [self._int(self.instruction) for _ in range(self._int(self.int_size))]
        constants: list[str | None] = []
        for _ in range(self._int(self.int_size)):
            kind = self.data[self.at]
            self.at += 1
            if kind == 4:
                constants.append(self._string())
            else:
                self.at += {0: 0, 1: 1, 3: self.number}[kind]
                constants.append(None)
        for op in code:
            if (op & 0x3F) in (self.GETGLOBAL, self.SETGLOBAL):
                name = constants[op >> 14]
                assert name is not None
                self.found.add(name)
        for _ in range(self._int(self.int_size)):
            self._function()
        lines = self._int(self.int_size)
        self.at += lines * self.int_size  # line numbers
        for _ in range(self._int(self.int_size)):
            self._string()
            self.at += 2 * self.int_size  # a local's name, scope
        for _ in range(self._int(self.int_size)):
            self._string()  # upvalue names


def _kept(name: str) -> list[Unit]:
    return needed(WHOLE, names_used(scripts.fold(scripts.read(f"{name}.lua"))))


@pytest.mark.parametrize("name", scripts.NAMES)
async def test_every_script_loads_and_refers_to_nothing_left_out(
    client: aioredis.Redis, name: str
) -> None:
    text = scripts.source(name)
    sha = await client.script_load(text)
    assert (sha.decode() if isinstance(sha, bytes) else sha) == scripts.Scripts(client).shas[name]
    used = await _globals(client, text)
    assert not used & (DEFINED | {"F"}), f"{name} refers to helpers it was sent without"
    assert not {g for g in used if g.startswith("K_")}, f"{name} refers to keys not written out"
    if name not in scripts.GLOBAL:
        body = scripts.fold(scripts.read(f"{name}.lua"))
        whole = await _globals(client, scripts.full_prelude() + "\n" + body)
        assert used <= whole  # the same builtins (redis, cjson, string, ...) as with everything
        assert "redis" in used


async def test_the_oracle_sees_a_helper_left_out(client: aioredis.Redis) -> None:
    units = [unit for unit in _kept("add") if "wmember" not in unit.defines]
    text = "".join(unit.text for unit in units) + "\n" + scripts.read("add.lua")
    assert "wmember" in await _globals(client, text)


@pytest.mark.parametrize("name", QUEUE_SCRIPTS)
def test_every_kept_unit_is_referred_to(name: str) -> None:
    kept = _kept(name)
    for unit in kept:
        if unit.always:
            continue
        users = names_used(scripts.fold(scripts.read(f"{name}.lua"))).union(
            *(other.uses for other in kept if other is not unit)
        )
        assert unit.defines & users, f"{name} was sent {sorted(unit.defines)}, which it never uses"


def test_helpers_used_only_through_others_are_kept_and_unused_ones_are_not() -> None:
    fetch = names_used(scripts.read("fetch.lua"))
    assert {"allowance", "group_ready", "start_job"}.isdisjoint(fetch)  # only through take
    assert {"allowance", "group_ready", "start_job"} <= _defined(_kept("fetch"))
    # the job fields are constants in the text, not tables built on every call (scripts.fold)
    assert not {"F", "FIELDS"} & _defined(_kept("fetch"))
    assert "F['" not in scripts.source("fetch") and "'st', 'ts', 'ra'" in scripts.source("fetch")
    add = _defined(_kept("add"))
    assert {"add_job", "wmember", "deduplicate", "unlink", "hold"} <= add
    assert not {"take", "take_grouped", "store_metrics", "forget", "F", "FIELDS"} & add
    assert len(_kept("add")) < len(WHOLE) / 2
    # a queue that deletes jobs settles their flows: delete_job -> FORGET = forget -> flows
    assert {"FORGET", "forget", "cascade", "retain_in"} <= _defined(_kept("remove"))
    assert scripts.source("control") == scripts.read("control.lua")  # no prelude at all


def test_fold_writes_the_job_fields_out() -> None:
    folded = scripts.fold("return v[F['st']], #FIELDS, K_meta, CAP_LOOK_AGAIN")
    meta = f"KEYS[{SCRIPT_KEYS.index('meta') + 1}]"
    assert folded == f"return v[{FIELDS.index('st') + 1}], {len(FIELDS)}, {meta}, CAP_LOOK_AGAIN"
    assert scripts.fold("f(unpack(FIELDS))").startswith("f('n', 'd', 'o', 'st',")
    # only those names: not a longer name, nor another table's unpack
    same = "return #FIELDS_X, table.unpack(FIELDS), my_unpack(FIELDS)"
    assert scripts.fold(same) == same
    with pytest.raises(ValueError, match="'nope' is not a job field"):
        scripts.fold("return v[F['nope']]")
    with pytest.raises(ValueError, match="K_nope is not a fixed key"):
        scripts.fold("return K_nope")


def _defined(units: list[Unit]) -> set[str]:
    return set().union(*(unit.defines for unit in units))


SAMPLE = """\
local A = KEYS[1]
local later
local function used(x)
  return later(x) .. A
end

-- unused names one_in_a_comment; a comment is not a reference
local function one_in_a_comment()
  return 'used helper later'
end
local function helper() return 1 end
later = function(x)
  return helper() + x
end
local HOOK = nil
local function hooked() return 2 end
HOOK = hooked
local long = [[
local function fake() end
]]
local total = 1 +
2
local side = redis.call('GET', A)
"""


def test_split_and_needed_on_a_sample() -> None:
    units = split(SAMPLE)
    assert "".join(unit.text for unit in units) == SAMPLE
    assert [sorted(unit.defines) for unit in units] == [
        ["A"], ["later"], ["used"], ["one_in_a_comment"], ["helper"], ["later"], ["HOOK"],
        ["hooked"], ["HOOK"], ["long"], ["total"], ["side"],
    ]  # fmt: skip
    assert units[3].text.startswith("-- unused names")  # the comment goes with its unit
    assert [unit.always for unit in units].count(True) == 1  # side: it calls Redis

    kept = needed(units, names_used("return used(1) -- HOOK, hooked"))
    assert [sorted(u.defines)[0] for u in kept] == ["A", "later", "used", "helper", "later", "side"]
    kept = needed(units, names_used("return HOOK()"))
    assert [sorted(u.defines)[0] for u in kept] == ["A", "HOOK", "hooked", "HOOK", "side"]


def test_names_skip_spaces_comments_strings_and_fields() -> None:
    text = "a --[==[ b ]==] c.d -- e\n\t f:g('h') .. [[i]] ..\"j\"--[[k]]l  "
    assert names_used(text) == {"a", "c", "f", "l"}


def test_only_declarations_without_a_value_make_none() -> None:
    units = split("local a\nlocal b, c = nil\nlocal d = nil or 1\nlocal e = {}\nf = nil\n")
    assert [unit.makes_value for unit in units] == [False, False, True, True, True]


@pytest.mark.parametrize(
    "text",
    ["local a = 1 local b = 2\n", "local function f()\n", "local a = 'x\n"],
    ids=["two locals on a line", "unbalanced", "unreadable"],
)
def test_a_prelude_it_cannot_cut_safely_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Lua prelude"):
        split(text)


REGISTRY = """\
local HANDLERS = {}
local function register(name, f)
  HANDLERS[name] = f
  return true
end
local function ping() return 'pong' end
local REGISTERED = register('ping', ping)
local LOWER = string.lower('X')
"""


async def test_a_value_that_calls_a_helper_is_kept_for_its_effect(
    client: aioredis.Redis,
) -> None:
    body = "return HANDLERS['ping']()"
    kept = needed(split(REGISTRY), names_used(body))
    assert {"HANDLERS", "register", "ping", "REGISTERED"} <= _defined(kept)
    assert "LOWER" not in _defined(kept)  # a call of the standard library: no helper's effect
    for text in (REGISTRY, "".join(unit.text for unit in kept)):
        assert await client.eval(text + body, 0) == b"pong"


def _counting_cuts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    cuts: list[object] = []

    def counted(*args: object) -> object:
        cuts.append(args)
        return needed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scripts, "needed", counted)
    return cuts


def test_a_second_backend_reuses_the_cut_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    first = scripts.Scripts(None)  # type: ignore[arg-type]
    shas = {name: first.shas[name] for name in scripts.NAMES}
    cuts = _counting_cuts(monkeypatch)
    second = scripts.Scripts(None)  # type: ignore[arg-type]
    assert {name: second.shas[name] for name in scripts.NAMES} == shas
    assert cuts == []  # cut once per process, not again at every backend's open


async def test_a_backend_cuts_only_the_scripts_it_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that only adds (``polyjobs enqueue``) cuts the add script, not all of them."""
    from polyjobs import Queue, open_backend

    scripts.source.cache_clear()
    monkeypatch.setattr(scripts, "SHAS", scripts._Shas())
    cuts = _counting_cuts(monkeypatch)
    async with open_backend(URL) as backend:
        await Queue("cut-one", backend).add("x", 1)
        await backend.obliterate("cut-one")
    assert "add" in scripts.SHAS and "fetch" not in scripts.SHAS and "finish" not in scripts.SHAS
    assert len(cuts) == len(scripts.SHAS) < len(scripts.NAMES) // 2
    assert scripts.SHAS["add"] == hashlib.sha1(scripts.source("add").encode()).hexdigest()


LAZY = """\
local HOT = 1
local function hot() return HOT end
local COLD_SEEN = nil
local function shared() return 'shared' end
local function only_cold() return 'only cold' end
local later
local function cold()
  COLD_SEEN = true
  return only_cold() .. ' ' .. shared() .. ' ' .. later()
end
later = function() return 'later' end
"""
LAZY_BODY = """\
local out = {hot(), shared(), tostring(COLD_SEEN)}
if ARGV[1] == '1' then
  load_cold()
  out[4] = cold()
  out[5] = tostring(COLD_SEEN)
end
return out
"""


async def test_definitions_only_cold_code_needs_are_made_where_the_body_asks(
    client: aioredis.Redis,
) -> None:
    """``lazy``: the cold units that make a value, and what only they need, are made where the
    body calls the loader, not on every call; declarations (``nil``) and what the rest needs
    stay where they were; the script behaves as with the whole text."""
    units = split(LAZY)
    cold = [u for u in units if u.defines & {"COLD_SEEN", "cold", "later"}]
    kept = needed(units, names_used(LAZY_BODY))
    prelude, body = lazy(units, kept, cold, LAZY_BODY, "load_cold")
    assert "load_cold" not in body and "only_cold" not in prelude and "later" not in prelude
    assert prelude.endswith("\nlocal cold\n")  # the one the body names; the block assigns it
    block = body.split("  do\n", 1)[1]
    assert "local function only_cold(" in block and "\ncold = function(" in block
    assert "local later" in block and "COLD_SEEN = nil" not in block
    assert "local function shared(" in prelude and "local COLD_SEEN = nil" in prelude
    # the same globals as the units in place (but the loader), so every name means the same
    in_place = "".join(unit.text for unit in kept) + LAZY_BODY
    assert await _globals(client, prelude + body) == await _globals(client, in_place) - {
        "load_cold"
    }
    whole = LAZY + "local function load_cold() end\n" + LAZY_BODY
    for text in (whole, prelude + body):
        assert await client.eval(text, 0, "0") == [1, b"shared", b"nil"]
        assert await client.eval(text, 0, "1") == [
            1, b"shared", b"nil", b"only cold shared later", b"true",
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("local function c() return d() end\nlocal function d() end\n", "load()\nreturn c()"),
        ("local function c() end\nlocal function h() return c() end\n", "load()\nreturn h()"),
        ("local function c() end\n", "if load() then return c() end"),
        ("local function c() end\n", "load()\nload()\nreturn c()"),
    ],
    ids=[
        "cold code refers to a name declared after it",
        "code made on every call refers to a cold name",
        "the loader called in an expression",
        "the loader called twice",
    ],
)
def test_a_lazy_prelude_that_would_change_a_name_is_refused(text: str, body: str) -> None:
    units = split(text)
    cold = [u for u in units if "c" in u.defines]
    with pytest.raises(ValueError, match=r"Lua (prelude|script)"):
        lazy(units, needed(units, names_used(body)), cold, body, "load")


async def test_finish_makes_the_flows_helpers_only_when_the_queue_has_flows(
    client: aioredis.Redis,
) -> None:
    """``finish`` makes the helpers of flows (and ``add_job``, which only they use) in the
    block its ``load_flows()`` stands for, run when the queue's meta has ``fl``; the script
    refers to the same globals as with its units in place."""
    text = scripts.source("finish")
    every_call, block = text.split("if FLOWS_HERE then\n", 1)[1].split("\n  do\n", 1)
    assert "load_flows" not in text and "\nlocal job_ended\n" in text
    for name in ("forget", "cascade", "add_job", "base_of"):
        assert f"local function {name}(" in block and f"function {name}(" not in every_call
    assert "\njob_ended = function(" in block and "\nFORGET = forget" in block
    prelude = text.split("local FLOWS_HERE = nil", 1)[0]
    assert "local FORGET = nil" in prelude and "local function add_job(" not in prelude
    assert "local function take(" in prelude and "local function retain(" in prelude
    assert "local function add_job(" in scripts.source("add")  # add needs it on every call


LOADING = [name for name in QUEUE_SCRIPTS if scripts.FLOWS_LOADER in scripts.read(f"{name}.lua")]


@pytest.mark.parametrize("name", LOADING)
async def test_a_script_with_its_flows_helpers_moved_refers_to_the_same_globals(
    client: aioredis.Redis, name: str
) -> None:
    """Moved to where the script asks for them, the helpers refer to what they did in place
    (the server's compile of both: a name that now meant a local of the body would be a global
    fewer)."""
    body = scripts.fold(scripts.read(f"{name}.lua"))
    in_place = "".join(unit.text for unit in _kept(name)) + "\n" + body
    text = scripts.source(name)
    assert await _globals(client, text) == await _globals(client, in_place) - {"load_flows"}


def test_add_makes_the_window_helpers_only_for_a_call_with_a_window() -> None:
    text = scripts.source("add")
    prelude, block = text.split("if windows then\n  do\n", 1)
    for name in ("deduplicate", "hold", "unlink"):
        assert f"function {name}(" not in prelude
    assert "\ndeduplicate = function(" in block and "\nhold = function(" in block
    assert "local function unlink(" in block  # only they need it
    assert "local function add_job(" in prelude and "\nlocal deduplicate, hold\n" in prelude
