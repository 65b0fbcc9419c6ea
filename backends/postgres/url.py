"""``postgresql://`` URLs: what the driver connects to, and polyjobs' own options."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from polyjobs.errors import InvalidArgumentError
from polyjobs.redact import redact_url

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "polyjobs"
DEFAULT_POOL = 10
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class PostgresUrl:
    """A backend URL split into the driver's DSN (TLS and libpq-style options pass through:
    ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ...) and polyjobs' options:
    ``schema`` (default ``polyjobs``), ``pool`` (connections, default 10) and ``migrate``
    (``false``: never change the schema when opening; ``polyjobs migrate`` does it)."""

    dsn: str
    schema: str
    pool: int
    migrate: bool
    redacted: str

    @property
    def channel(self) -> str:
        """The ``LISTEN``/``NOTIFY`` channel of this schema (at most 63 bytes)."""
        name = f"polyjobs_{self.schema}"
        if len(name) <= 63:
            return name
        return "polyjobs_" + hashlib.sha256(self.schema.encode()).hexdigest()[:32]

    @classmethod
    def parse(cls, url: str) -> PostgresUrl:
        redacted = redact_url(url)
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise InvalidArgumentError(
                f"not a PostgreSQL URL: {redacted!r} (expected postgresql:// or postgres://)"
            )
        schema, pool, migrate = DEFAULT_SCHEMA, DEFAULT_POOL, True
        rest: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "schema":
                schema = value
            elif name == "pool":
                if not value.isdigit() or not 1 <= int(value) <= 1000:
                    raise InvalidArgumentError(
                        f"pool must be a number of connections from 1 to 1000 in {redacted!r}"
                    )
                pool = int(value)
            elif name == "migrate":
                if value.lower() not in TRUE + FALSE:
                    raise InvalidArgumentError(f"migrate must be true or false in {redacted!r}")
                migrate = value.lower() in TRUE
            else:
                rest.append((name, value))
        if not SCHEMA_NAME.fullmatch(schema):
            raise InvalidArgumentError(
                f"invalid schema name {schema!r} in {redacted!r}: use letters, digits and _ "
                "(at most 63, not starting with a digit)"
            )
        dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
        return cls(dsn, schema, pool, migrate, redacted)
