"""The backend contract as JSON messages: how a :class:`~polyjobs.backend.Backend` is called
across a process boundary (:mod:`polyjobs.serve` and the ``socket://`` backend).

Values are plain JSON, typed by the contract itself: a call's arguments and its result are
encoded from, and decoded into, the annotations of the protocol method (dataclasses such as
``NewJob`` or ``JobRecord`` become JSON objects of their fields). Nothing is ever pickled;
a message can only make the other side build the contract's own data classes. User payloads
(``JobRecord.data``, ``opts``...) travel as the JSON values they already are.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from polyjobs import backend as contract
from polyjobs import errors
from polyjobs.errors import InvalidArgumentError

#: The protocols whose methods can be called over the wire.
PROTOCOLS: tuple[type, ...] = (
    contract.Backend,
    contract.RateLimitBackend,
    contract.ControlBackend,
    contract.FlowBackend,
    contract.DedupBackend,
    contract.MetricsBackend,
    contract.CancelBackend,
    contract.ConcurrencyBackend,
    contract.GroupBackend,
)
#: Methods that are the caller's own business, never sent.
LOCAL_ONLY = frozenset({"open", "close"})
#: Error classes a server may name in a reply (anything else arrives as ``BackendError``).
ERRORS: dict[str, type[errors.PolyjobsError]] = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.PolyjobsError)
    and not issubclass(cls, errors.ProcessorSignal | errors.JobFailedError)
}


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    """A contract method's parameters (name, type) and its result type."""

    params: tuple[tuple[str, Any], ...]
    result: Any


def _signatures() -> dict[str, Signature]:
    namespace = {**vars(contract), **vars(typing), "Sequence": collections.abc.Sequence}
    out: dict[str, Signature] = {}
    for proto in PROTOCOLS:
        for name, func in vars(proto).items():
            if name.startswith("_") or name in LOCAL_ONLY or not inspect.iscoroutinefunction(func):
                continue
            hints = get_type_hints(func, globalns=namespace)
            params = tuple((p, hints[p]) for p in inspect.signature(func).parameters if p != "self")
            out[name] = Signature(params, hints.get("return"))
    return out


SIGNATURES = _signatures()


def encode(value: Any) -> Any:
    """A contract value as JSON-ready data (dataclasses as objects of their fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        # keys that are not strings (``JobRef``): a list of [key, value] pairs
        return [[encode(k), encode(v)] for k, v in value.items()]
    return value


def decode(value: Any, hint: Any) -> Any:
    """``value`` (JSON data) as the type ``hint`` of the contract; ``InvalidArgumentError``
    when it does not have that shape."""
    if hint is Any or hint is None or hint is type(None):
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType, Literal):
        return _decode_choice(value, hint)
    if origin in (list, tuple, collections.abc.Sequence):
        (item,) = get_args(hint)[:1] or (Any,)
        if not isinstance(value, list):
            raise InvalidArgumentError(f"expected a list on the wire, got {type(value).__name__}")
        return [decode(v, item) for v in value]
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        key_hint, value_hint = get_args(hint) or (str, Any)
        if key_hint is not str and isinstance(value, list):
            return _decode_pairs(value, key_hint, value_hint)
        if not isinstance(value, dict):
            raise InvalidArgumentError(f"expected an object on the wire, got {value!r}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(value, hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise InvalidArgumentError(f"expected {hint.__name__} on the wire, got {value!r}")
    return value


def _decode_pairs(value: list[Any], key_hint: Any, value_hint: Any) -> dict[Any, Any]:
    out = {}
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidArgumentError("expected [key, value] pairs on the wire")
        out[decode(pair[0], key_hint)] = decode(pair[1], value_hint)
    return out


def _decode_choice(value: Any, hint: Any) -> Any:
    """A value of ``X | None`` or of a ``Literal``."""
    if get_origin(hint) is Literal:
        if value not in get_args(hint):
            raise InvalidArgumentError(f"unexpected value {value!r} on the wire")
        return value
    options = [a for a in get_args(hint) if a is not type(None)]
    if value is None:
        return None
    return decode(value, options[0]) if len(options) == 1 else value


def _decode_dataclass(value: Any, cls: type) -> Any:
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"expected a {cls.__name__} object on the wire")
    module = inspect.getmodule(cls)
    hints = get_type_hints(cls, globalns=vars(module) if module else None)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = decode(value[f.name], hints[f.name])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"bad {cls.__name__} on the wire: {exc}") from None


def request(call_id: int, method: str, args: tuple[Any, ...]) -> bytes:
    """One request line."""
    message = {"id": call_id, "method": method, "args": [encode(a) for a in args]}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode_args(method: str, args: Any) -> list[Any]:
    """A request's arguments, typed; ``InvalidArgumentError`` for an unknown method or a
    wrong shape."""
    sig = SIGNATURES.get(method)
    if sig is None:
        raise InvalidArgumentError(f"no backend method {method!r}")
    if not isinstance(args, list) or len(args) != len(sig.params):
        raise InvalidArgumentError(f"{method} takes {len(sig.params)} arguments")
    return [decode(a, hint) for a, (_, hint) in zip(args, sig.params, strict=True)]


def reply(call_id: Any, result: Any = None, error: BaseException | None = None) -> bytes:
    """One reply line: the encoded result, or the error's class name and message."""
    if error is None:
        message: dict[str, Any] = {"id": call_id, "result": encode(result)}
    else:
        name = type(error).__name__ if type(error).__name__ in ERRORS else "BackendError"
        message = {"id": call_id, "error": {"type": name, "message": str(error)}}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def error_from(data: Any) -> errors.PolyjobsError:
    """The exception a reply's ``error`` names (``BackendError`` when unknown)."""
    name = data.get("type") if isinstance(data, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    return ERRORS.get(str(name), errors.BackendError)(str(message))
