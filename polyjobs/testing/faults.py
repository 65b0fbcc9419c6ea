"""Fault injection for the contract suite: wrappers around a real backend that count calls or
make some of them fail, as a flaky network would. They wrap the public Backend calls; they
never patch a backend's internals."""

from __future__ import annotations

from collections import Counter
from typing import Any

from polyjobs.backend import Backend
from polyjobs.errors import BackendError


class CountingBackend:
    """Wraps a backend and counts the calls made to it."""

    def __init__(self, inner: Backend, calls: Counter[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            return attr(*args, **kwargs)

        return counted


class NoRenewalBackend(CountingBackend):
    """A connection on which lease renewals fail (a partition hitting one worker only)."""

    def __getattr__(self, name: str) -> Any:
        if name == "extend":

            async def extend(*args: Any, **kwargs: Any) -> list[str]:
                raise BackendError("lease renewal is down on this connection")

            return extend
        return super().__getattr__(name)


class FaultyBackend(CountingBackend):
    """A connection whose first ``failures`` calls of ``method`` fail before reaching the
    storage (a network blip)."""

    def __init__(self, inner: Backend, method: str, failures: int) -> None:
        super().__init__(inner, Counter())
        self._method = method
        self._failures = failures

    def __getattr__(self, name: str) -> Any:
        if name == self._method and self._failures > 0:

            async def broken(*args: Any, **kwargs: Any) -> Any:
                self._failures -= 1
                raise BackendError(f"{name}: connection reset")

            return broken
        return super().__getattr__(name)


class LostReplyBackend(CountingBackend):
    """A connection on which the first ``finish`` is applied but its reply is lost."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, Counter())
        self._lose = 1

    def __getattr__(self, name: str) -> Any:
        real = super().__getattr__(name)
        if name != "finish":
            return real

        async def finish(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)
            if self._lose:
                self._lose -= 1
                raise BackendError("finish: connection reset before the reply")
            return result

        return finish
