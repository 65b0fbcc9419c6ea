"""The one console: all terminal output goes through it (rich, JSON, errors, redaction).

Whatever came from a job, a queue name or a backend is printed as text, never as markup
(``[red]``, ``[link=...]`` stay literal) and with its control characters made visible
(``\\x1b`` instead of an escape sequence the terminal would obey): see :func:`visible`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from polyjobs.redact import redact_text, redact_value

if TYPE_CHECKING:
    from rich.console import Console as RichConsole
    from rich.console import RenderableType
    from rich.table import Table

WIDE = 200  # tables piped to a file or another program are never squeezed
#: Format characters that reorder or hide text (bidi overrides, zero-width): shown escaped.
_INVISIBLE = {0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF}
_INVISIBLE |= set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# What visible() escapes, as one pattern: text with none of it (nearly every line) is returned
# as it is after one scan in C. Surrogates are the characters of Unicode category "Cs".
_HIDDEN = "".join(f"\\u{c:04x}" for c in sorted(_INVISIBLE))
_ESCAPED = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_HIDDEN}\\ud800-\\udfff]")
_ESCAPED_MULTILINE = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_HIDDEN}\\ud800-\\udfff]")


def visible(text: Any, *, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\x07``,
    ``\\u202e``...), so that nothing a job or a backend holds can move the cursor, change
    colours or reorder what is shown. Newlines and tabs are kept when ``multiline``."""
    value = "" if text is None else str(text)
    pattern = _ESCAPED_MULTILINE if multiline else _ESCAPED
    if pattern.search(value) is None:
        return value
    return pattern.sub(lambda found: _escape(found.group(0)), value)


def shown(value: Any, *, multiline: bool = False) -> str:
    """A value as it is shown to a person: redacted, then made :func:`visible`."""
    return visible(redact_text("" if value is None else str(value)), multiline=multiline)


ColumnKind = Literal["key", "text", "num"]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column. ``key`` cells (ids, queue names) are never cut or wrapped: when they do
    not fit, the table is printed as one block per row instead; ``text`` cells wrap (a word
    longer than the column folds onto the next line, nothing is cut); ``num`` cells are
    right-aligned."""

    name: str
    kind: ColumnKind = "text"
    #: a ``text`` column's words up to this long are kept whole (URLs, paths)
    whole_words: int = 10


def _rich_console(*, stderr: bool = False, width: int | None = None) -> RichConsole:
    from rich.console import Console as RichConsole

    return RichConsole(stderr=stderr, highlight=False, emoji=False, width=width)


def _text(value: Any) -> Any:
    from rich.text import Text

    return Text(shown(value))


class Console:
    """Owns stdout/stderr. Every string shown is redacted first; ``--json`` bypasses rich.

    ``width`` fixes the width of both streams (tests render at 80 columns with it).
    """

    def __init__(
        self, *, json_mode: bool = False, width: int | None = None, record: bool = False
    ) -> None:
        self.json_mode = json_mode
        self._width = width
        self._record = record
        self._out: RichConsole | None = None
        self._err: RichConsole | None = None
        #: The rich console of a live display that owns the terminal, if one is running:
        #: lines go through it so that they print above the display instead of tearing it.
        self.live_console: RichConsole | None = None

    @property
    def out(self) -> RichConsole:
        if self._out is None:
            if self._record:
                from rich.console import Console as RichConsole

                self._out = RichConsole(
                    record=True, width=self._width or 80, highlight=False, emoji=False
                )
            else:
                self._out = _rich_console(width=self._width)
                if self._width is None and not self._out.is_terminal:
                    columns = os.environ.get("COLUMNS", "")
                    self._out = _rich_console(width=int(columns) if columns.isdigit() else WIDE)
        return self._out

    @property
    def err(self) -> RichConsole:
        if self._err is None:
            self._err = self.out if self._record else _rich_console(stderr=True, width=self._width)
        return self._err

    @property
    def is_terminal(self) -> bool:
        return self.out.is_terminal

    @property
    def width(self) -> int:
        return self.out.width

    def _print(self, target: RichConsole, text: str, style: str | None = None) -> None:
        from rich.text import Text

        shown_on = self.live_console or target
        shown_on.print(Text(text, style=style or ""), soft_wrap=True)

    def _plain(self, stream: Literal["out", "err"], text: str) -> None:
        """Unstyled text and a newline, as rich would print it (no wrapping), written straight
        to the stream: ``polyjobs start`` prints a line per job, and rich's
        rendering of each cost about as much as running a no-op job. Through rich when a live
        display owns the terminal (the line goes above it), when recording, and for a tab (which
        rich expands by cells)."""
        if self.live_console is not None or self._record or "\t" in text:
            self._print(self.out if stream == "out" else self.err, text)
            return
        if stream == "err":
            try:
                sys.stdout.flush()  # what was printed before stays before
            except BrokenPipeError:
                self._gone("out")
        target = sys.stderr if stream == "err" else sys.stdout
        try:
            target.write(text + "\n")
            target.flush()
        except BrokenPipeError:  # the reader is gone (`polyjobs start | head`)
            self._gone(stream)

    def _gone(self, stream: Literal["out", "err"]) -> None:
        """A stream whose reader is gone: later writes to it go nowhere (its descriptor now
        points at the null device, so neither a line nor the flush at exit fails) and the work
        goes on; stdout's loss is said once, on stderr."""
        gone = sys.stdout if stream == "out" else sys.stderr
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, gone.fileno())
            os.close(null)
        except (OSError, ValueError):  # no descriptor (a test's capture): nothing to keep
            return
        if stream == "out":
            self._plain("err", "polyjobs: standard output is closed; nothing more is printed there")

    def line(self, text: str) -> None:
        """A line on stdout: text, never markup; control characters made visible."""
        self._plain("out", shown(text, multiline=True))

    def note(self, text: str) -> None:
        """A diagnostic line on stderr."""
        self._plain("err", shown(text, multiline=True))

    def error(self, text: str) -> None:
        """One line on stderr: ``error: ...`` (a newline inside is shown as ``\\n``)."""
        self._print(self.err, "error: " + shown(str(text).replace("\n", " ")), style="red")

    def raw_line(self, text: str) -> None:
        """One line written to stdout as is (a JSON log record: never wrapped or styled)."""
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self._gone("out")

    def json(self, data: Any) -> None:
        text = json.dumps(redact_value(data), default=str, indent=2)
        sys.stdout.write(redact_text(text) + "\n")
        sys.stdout.flush()

    def table(
        self,
        columns: Sequence[str | Column],
        rows: Iterable[Sequence[Any]],
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        """A table that fits the terminal: see :class:`Column`."""
        cols = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.print(fit_table(cols, [list(r) for r in rows], self.width, title, caption))

    def print(self, renderable: RenderableType) -> None:
        (self.live_console or self.out).print(renderable, soft_wrap=False)


def build_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    caption: str | None = None,
) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=None if title is None else _text(title),
        caption=None if caption is None else _text(caption),
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for i, col in enumerate(columns):
        if col.kind == "key":
            table.add_column(col.name, no_wrap=True, overflow="fold")
        elif col.kind == "num":
            table.add_column(col.name, justify="right", no_wrap=True)
        else:
            words = [len(w) for row in rows for w in shown(row[i]).split() if i < len(row)]
            keep = min(max(words, default=0), col.whole_words)
            table.add_column(col.name, overflow="fold", min_width=max(keep, 1))
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    return table


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    width: int,
    title: str | None = None,
    caption: str | None = None,
) -> RenderableType:
    """The table, or when its ``key`` and ``num`` columns cannot all be shown whole in
    ``width`` columns, one block per row (``name: value`` lines) that never cuts a value."""
    from rich.console import Group
    from rich.text import Text

    table = build_table(columns, rows, title, caption)
    if fits(columns, rows, width):
        return table
    blocks: list[Any] = []
    if title:
        blocks.append(Text(shown(title), style="bold"))
    label = max(len(c.name) for c in columns)
    for row in rows:
        for col, cell in zip(columns, row, strict=False):
            blocks.append(Text(f"{col.name:>{label}}: {shown(cell)}"))
        blocks.append(Text(""))
    if caption:
        blocks.append(Text(shown(caption)))
    return Group(*blocks)


def fits(columns: Sequence[Column], rows: Sequence[Sequence[Any]], width: int) -> bool:
    """Whether the table fits ``width`` columns with every key and number whole (text
    columns may wrap down to their longest word, or 10 columns when that is longer)."""
    total = 0
    for i, col in enumerate(columns):
        cells = [shown(row[i]) for row in rows if i < len(row)]
        longest = max((len(c) for c in cells), default=0)
        if col.kind == "text":
            words = [len(w) for c in cells for w in c.split()]
            longest = min(max(words, default=0), col.whole_words)
        total += max(longest, len(col.name)) + 2  # a space of padding on each side
    return total - 2 <= width  # without the outer edges
