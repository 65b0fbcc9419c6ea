"""The one console: all terminal output goes through it (rich, JSON, errors, redaction)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console as RichConsole
from rich.table import Table

from polyjobs.redact import redact_text

WIDE = 200  # tables piped to a file or another program are never squeezed


class Console:
    """Owns stdout/stderr. Every string shown is redacted first; ``--json`` bypasses rich."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.out = RichConsole(highlight=False, soft_wrap=True)
        if not self.out.is_terminal:
            self.out = RichConsole(highlight=False, soft_wrap=True, width=WIDE)
        self.err = RichConsole(stderr=True, highlight=False, soft_wrap=True)

    @property
    def is_terminal(self) -> bool:
        return self.out.is_terminal

    def line(self, text: str) -> None:
        """A plain line on stdout (no markup interpretation)."""
        self.out.print(redact_text(text), markup=False)

    def note(self, text: str) -> None:
        """A diagnostic line on stderr."""
        self.err.print(redact_text(text), markup=False)

    def error(self, text: str) -> None:
        self.err.print(f"error: {redact_text(text)}", markup=False, style="red")

    def json(self, data: Any) -> None:
        sys.stdout.write(redact_text(json.dumps(data, default=str, indent=2)) + "\n")
        sys.stdout.flush()

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        table = Table(title=title, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(redact_text("" if cell is None else str(cell)) for cell in row))
        self.out.print(table)

    def print(self, renderable: Any) -> None:
        self.out.print(renderable)
