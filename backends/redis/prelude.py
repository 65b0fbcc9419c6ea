"""Cut the Lua prelude of the Redis scripts to what one script needs.

Redis runs a script's whole text on every call (``EVALSHA`` caches the compiled chunk, not its
results), so every ``local function`` of the prelude is a closure made again on every call, used
or not. :func:`split` cuts a prelude into its top-level statements (units); :func:`needed` keeps,
in their order, those a script's text refers to, directly or through other kept units;
:func:`lazy` moves those only rarely run code needs to where the script asks for them.

The prelude's layout this relies on (checked: :func:`split` raises ``ValueError`` otherwise):
each top-level statement starts at the start of a line, after a line that does not leave an
expression open (``a =``, ``x ..``, ``(`` ...). Only the tokens matter: names in strings and
comments are not references.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple


@dataclass(frozen=True)
class Unit:
    """One top-level statement of a prelude, with the comment lines right above it."""

    text: str
    #: Names it declares (``local function f``, ``local a, b = ...``, ``local a``) or assigns
    #: (``a = ...``: the value of a name declared earlier, e.g. a forward declaration).
    defines: frozenset[str]
    #: Names it refers to (itself included).
    uses: frozenset[str]
    #: Kept whatever a script uses: a statement that defines nothing, or a definition whose
    #: value mentions Redis or calls a helper of the prelude (it may run for its effect).
    always: bool
    #: It makes a value: it defines a name, and is not a bare ``local a`` or ``local a = nil``.
    makes_value: bool = True


def needed(units: Sequence[Unit], names: Iterable[str]) -> list[Unit]:
    """The units code that refers to ``names`` needs, in their order: every unit that declares
    or assigns a needed name, the names those units use being needed in turn, and the
    ``always`` ones. A unit left out declares and assigns only names that nothing kept refers
    to, so every kept reference means what it means in the whole prelude; the order is kept, so
    forward declarations (``local f`` ... ``f = function``) and hooks (``HOOK = f``) work as in
    the whole text."""
    definers: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        for name in unit.defines:
            definers.setdefault(name, []).append(i)
    keep = {i for i, unit in enumerate(units) if unit.always}
    todo = list(names)
    for i in keep:
        todo.extend(units[i].uses)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for i in definers.get(name, ()):
            if i not in keep:
                keep.add(i)
                todo.extend(units[i].uses)
    return [units[i] for i in sorted(keep)]


def lazy(
    units: Sequence[Unit], kept: Sequence[Unit], cold: Iterable[Unit], body: str, loader: str
) -> tuple[str, str]:
    """The prelude and body of a script whose text is ``body`` (``kept``: what it needs, in
    order; ``units``: the whole prelude) with the definitions only ``cold`` units need made
    where the body calls ``loader()`` (once, as a statement of its top level), not on every call:
    a queue without flows never makes them (``finish``). Those definitions are the ``cold`` ones
    that make a value (``local function``, ``local a = ...`` other than ``nil``, assignments),
    and every kept unit that only they need; what the body or the rest of the prelude needs, or
    defines only ``nil``, stays where it was. They go, in their order, in a ``do ... end`` block
    in place of the call; the names of theirs that the body refers to are declared (nil) at the
    end of the prelude, and the block assigns them. Raises ``ValueError`` when this could change
    what a name refers to: a cold definition that refers to a name declared only after it, or a
    definition kept in place that refers to one the block makes."""
    cold_ids = {id(unit) for unit in cold if unit.makes_value}
    rest = [unit for unit in units if id(unit) not in cold_ids]
    eager_ids = {id(unit) for unit in needed(rest, names_used(body))}
    eager = [unit for unit in kept if id(unit) in eager_ids]
    later = [unit for unit in kept if id(unit) not in eager_ids]
    for i, unit in enumerate(kept):
        if id(unit) in eager_ids:
            continue
        before = frozenset().union(*(other.defines for other in kept[: i + 1]))
        after = frozenset().union(*(other.defines for other in kept[i + 1 :]))
        if unit.uses & (after - before):
            raise ValueError(f"Lua prelude: {sorted(unit.defines)} refers to names declared later")
    made = frozenset().union(*(unit.defines for unit in later))
    made = made.difference(*(unit.defines for unit in eager))
    for unit in eager:
        if unit.uses & made - unit.defines:
            raise ValueError(
                f"Lua prelude: {sorted(unit.defines)}, made on every call, refers to"
                f" {sorted(unit.uses & made)}, which only {loader}() makes"
            )
    calls = list(re.finditer(rf"^([ \t]*){loader}\(\)[ \t]*$", body, re.M))
    if len(calls) != 1 or names_used(body.replace(f"{loader}()", "")) & {loader}:
        raise ValueError(f"Lua script: {loader}() must be called once, as a statement")
    entries = sorted(made & names_used(body))
    block = "".join(
        _ENTRY.sub(_assignment, unit.text, count=1) if unit.defines & set(entries) else unit.text
        for unit in later
    )
    prelude = "".join(unit.text for unit in eager)
    if entries:
        prelude += f"\nlocal {', '.join(entries)}\n"
    call = calls[0]
    body = f"{body[: call.start()]}{call.group(1)}do\n{block}\nend{body[call.end() :]}"
    return prelude, body


#: ``local function f(`` and ``local a =`` at a statement's start -> ``f = function(``, ``a =``
#: (the body's names, declared before: the block assigns them).
_ENTRY = re.compile(r"^local (?:function (\w+)(?=\()|(\w+)(?= *=))", re.M)


def _assignment(match: re.Match[str]) -> str:
    return f"{match.group(1)} = function" if match.group(1) else match.group(2)


def _declares_only(tokens: Sequence[_Token], declared: int) -> bool:
    """Whether ``tokens`` are ``local a, b`` or ``local a, b = nil`` (``declared`` names)."""
    after = 2 * declared  # the token after ``local`` and the names
    return after == len(tokens) or (after + 2 == len(tokens) and tokens[after + 1].is_name("nil"))


def names_used(text: str) -> frozenset[str]:
    """The names Lua ``text`` refers to: not keywords, not fields (after ``.`` or ``:``)."""
    return _names(_tokens(text))


def split(text: str) -> tuple[Unit, ...]:
    """``text`` cut into its top-level statements; their texts put together are ``text``."""
    tokens = _tokens(text)
    starts: list[int] = []
    depth = 0  # open blocks and brackets
    previous = ""  # the text of the token before
    for i, (kind, word, start) in enumerate(tokens):
        if depth == 0:
            if (start == 0 or text[start - 1] == "\n") and previous not in _GOES_ON:
                starts.append(i)
            elif kind == "name" and word == "local":
                raise ValueError(f"Lua prelude: a top-level local in mid-line: {tokens[i]}")
        previous = word
        if kind == "name":
            if word in _OPENS_BLOCK:
                depth += 1
            elif word == "end" or word == "until":
                depth -= 1
        elif kind == "symbol":
            if word in _OPENS_BRACKET:
                depth += 1
            elif word in _CLOSES_BRACKET:
                depth -= 1
    if depth != 0 or not starts:
        raise ValueError("Lua prelude: unbalanced blocks or brackets, or empty")
    bounds = [0] + [_comments_above(text, tokens[i].start) for i in starts[1:]] + [len(text)]
    ends = [*starts[1:], len(tokens)]
    pieces = [
        (text[begin:stop], tokens[first:last])
        for first, last, begin, stop in zip(starts, ends, bounds[:-1], bounds[1:], strict=True)
    ]
    units = [_unit(piece, piece_tokens) for piece, piece_tokens in pieces]
    defined = frozenset().union(*(unit.defines for unit in units))
    # a value that calls a helper may be there for the helper's effect (a registration, a
    # write), which a script that never names the value still relies on
    return tuple(
        replace(unit, always=True)
        if not unit.always and (_calls_run(piece_tokens) - unit.defines) & defined
        else unit
        for unit, (_, piece_tokens) in zip(units, pieces, strict=True)
    )


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<long>(?:--)?\[(?P<eq>=*)\[.*?\](?P=eq)\])
    |(?P<comment>--[^\n]*)
    |(?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
    |(?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<symbol>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^\#<>=(){}\[\];:,.])
    |$)""",
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = frozenset(
    "and break do else elseif end false for function if in local nil not or repeat return then"
    " true until while".split()
)
#: Tokens after which an expression goes on: a line after one continues the statement.
_GOES_ON = frozenset("= , .. + - * / % ^ == ~= < <= > >= and or not # local return".split())
_OPENS_BLOCK = frozenset({"function", "if", "do", "repeat"})
_OPENS_BRACKET = frozenset({"(", "{", "["})
_CLOSES_BRACKET = frozenset({")", "}", "]"})


class _Token(NamedTuple):
    kind: str  # 'name' (keywords too), 'symbol', 'string', 'number'
    text: str
    start: int

    def is_name(self, *words: str) -> bool:
        return self.kind == "name" and self.text in words

    def is_symbol(self, *symbols: str) -> bool:
        return self.kind == "symbol" and self.text in symbols


def _tokens(text: str) -> list[_Token]:
    """The Lua tokens of ``text``, without spaces and comments."""
    out: list[_Token] = []
    append = out.append
    at = 0
    for match in _TOKEN.finditer(text):  # each token with the spaces before it
        if match.start() != at:
            break
        at = match.end()
        kind = match.lastgroup
        if kind is None or kind == "comment":  # spaces up to the end of the text, a comment
            continue
        start = match.start(kind)
        if kind == "long":
            if text.startswith("--", start):
                continue
            kind = "string"
        append(_Token(kind, text[start:at], start))
    if at != len(text):
        raise ValueError(f"Lua prelude: cannot read {text[at : at + 20].strip()!r}")
    return out


def _names(tokens: Sequence[_Token]) -> frozenset[str]:
    return frozenset(
        token.text
        for i, token in enumerate(tokens)
        if token.kind == "name"
        and token.text not in _KEYWORDS
        and (i == 0 or not tokens[i - 1].is_symbol(".", ":"))
    )


def _comments_above(text: str, at: int) -> int:
    """Where the comment lines right above the line of offset ``at`` begin."""
    start = text.rfind("\n", 0, at) + 1
    while start > 0:
        above = text.rfind("\n", 0, start - 1) + 1
        if not text[above:start].lstrip().startswith("--"):
            break
        start = above
    return start


def _unit(text: str, tokens: Sequence[_Token]) -> Unit:
    uses = _names(tokens)
    if len(tokens) > 2 and tokens[0].is_name("local") and tokens[1].is_name("function"):
        return Unit(text, frozenset({tokens[2].text}), uses, always=False)
    local = tokens[0].is_name("local")
    names = _name_list(tokens[1:] if local else tokens)
    after = len(names) * 2 - (0 if local else 1)  # the token after the names
    if names and (local or (after < len(tokens) and tokens[after].is_symbol("="))):
        always = "redis" in _names_run(tokens)
        makes = not (local and _declares_only(tokens, len(names)))
        return Unit(text, frozenset(names), uses, always=always, makes_value=makes)
    return Unit(text, frozenset(), uses, always=True, makes_value=False)


def _name_list(tokens: Sequence[_Token]) -> list[str]:
    """The names ``a, b, c`` at the start of ``tokens``."""
    names = []
    for i, token in enumerate(tokens):
        if i % 2 == 1:
            if not token.is_symbol(","):
                break
        elif token.kind == "name" and token.text not in _KEYWORDS:
            names.append(token.text)
        else:
            break
    return names


def _names_run(tokens: Sequence[_Token]) -> frozenset[str]:
    """The names ``tokens`` refer to outside the bodies of the functions they define: what runs
    when the statement does."""
    return _names(_outside_bodies(tokens))


def _calls_run(tokens: Sequence[_Token]) -> frozenset[str]:
    """The names whose values (or their fields) are called when the statement runs: ``f`` of
    ``f(x)``, ``t`` of ``t.add{...}`` or ``t:m 's'``, outside the bodies of functions."""
    outside = _outside_bodies(tokens)
    called: set[str] = set()
    base = ""  # the name the expression being read starts from
    for i, token in enumerate(outside):
        before = outside[i - 1] if i else None
        if token.kind == "name" and token.text not in _KEYWORDS:
            if before is None or not before.is_symbol(".", ":"):
                base = token.text
        elif (token.is_symbol("(", "{") or token.kind == "string") and (
            before is not None and (before.kind == "name" or before.is_symbol(")", "]"))
        ):
            if base and not (before.kind == "name" and before.text in _KEYWORDS):
                called.add(base)
    return frozenset(called)


def _outside_bodies(tokens: Sequence[_Token]) -> list[_Token]:
    """``tokens`` without the bodies (and parameters) of the functions they define."""
    outside: list[_Token] = []
    depth = 0  # blocks open inside a function body (0: not in one)
    for token in tokens:
        if token.is_name("function") or (depth and token.is_name("if", "do", "repeat")):
            depth += 1
        elif depth and token.is_name("end", "until"):
            depth -= 1
        elif not depth:
            outside.append(token)
    return outside
