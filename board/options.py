"""``BoardOptions``: how one board app behaves (read-only, token, sampling), as frozen data."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyjobs.errors import ConfigError

if TYPE_CHECKING:
    from polyjobs.listings import Listing
    from polyjobs.runtime import QueueSpec

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
TOKEN_ENV = "POLYJOBS_BOARD_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True, slots=True)
class BoardOptions:
    """Options of a board app.

    Attributes:
        read_only: hide every action and refuse it with 403.
        token: when set, every page and API call needs it (``Authorization: Bearer`` or the
            login form's cookie); ``/metrics`` too.
        insecure: allow serving on a non-loopback address without a token.
        specs: the registered queues (their defaults and data validation apply to enqueued jobs).
        backend_label: what the page header shows for the backend (already redacted).
        sample_interval: seconds between two throughput samples.
        history: how many samples the throughput ring buffer keeps.
        allowed_hosts: ``Host`` header values accepted (``None``: loopback names when the board
            is bound to loopback without a token, which defeats DNS rebinding; else any).
        page_size: jobs per page in the UI.
        listings: the applications' read-only tables (``polyjobs_listings``), by key.
        settings: the resolved settings the listings read their configuration from.
    """

    read_only: bool = False
    token: str | None = None
    insecure: bool = False
    specs: Mapping[str, QueueSpec] = field(default_factory=dict)
    backend_label: str = ""
    sample_interval: float = 10.0
    history: int = 90
    allowed_hosts: tuple[str, ...] | None = None
    page_size: int = 20
    listings: Mapping[str, Listing] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.sample_interval <= 0 or self.history < 2 or self.page_size < 1:
            raise ConfigError("board sample_interval, history and page_size must be positive")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, options: BoardOptions) -> None:
    """Refuse to serve on a non-loopback address without a token unless ``insecure``."""
    if is_loopback(host) or options.token or options.insecure:
        return
    raise ConfigError(
        f"refusing to serve the board on {host} without a token: set {TOKEN_ENV} "
        "(or pass --insecure to serve it to anyone who can reach it)"
    )


def loopback_hosts(host: str, options: BoardOptions) -> tuple[str, ...] | None:
    """The ``Host`` header values to accept, or None for any."""
    if options.allowed_hosts is not None:
        return options.allowed_hosts
    if is_loopback(host) and not options.token:
        return ("127.0.0.1", "localhost", "::1", "[::1]")
    return None
