"""The console's plain lines (a job event per line under ``polyjobs start``): the same text rich
printed, written without rendering it through rich (whose cost per line was about that of
running a no-op job)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console as RichConsole
from rich.text import Text

from polyjobs.cli.console import Console, shown, visible

SAMPLES = [
    "",
    "2026-11-29T16:03:54 completed polymarket-alerts 42",
    "[bold]not markup[/bold] [link=http://x]y[/link]",
    "wide 日本語 ✓ 😀 and trailing   ",
    "two\nlines\n",
    "escape \x1b[31mred\x1b[0m bell \x07 cr \r del \x7f c1 \x85",
    "bidi \u202e gnp.exe zero\u200bwidth \ufeff lone \udcff",
    "tab\there and 日本\tthere",  # rich expands tabs by cells: printed through rich
    "redis://user:secret@host:6379/0 token=abc",
]


def _through_rich(text: str, *, terminal: bool) -> str:
    out = io.StringIO()
    rich = RichConsole(file=out, highlight=False, emoji=False, width=80, force_terminal=terminal)
    rich.print(Text(shown(text, multiline=True), style=""), soft_wrap=True)
    return out.getvalue()


@pytest.mark.parametrize("text", SAMPLES)
def test_line_and_note_print_what_rich_printed(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    console = Console()
    console.line(text)
    console.note(text)
    printed = capsys.readouterr()
    assert printed.out == _through_rich(text, terminal=False)
    assert printed.err == _through_rich(text, terminal=False)
    # a line on a terminal is the same text: unstyled text gets no escape sequence from rich
    assert _through_rich(text, terminal=True) == _through_rich(text, terminal=False)
    if "\t" not in text:  # no rich console was made to print them
        assert console._out is None and console._err is None


def test_a_note_comes_after_the_lines_printed_before_it() -> None:
    """stdout is flushed before a note goes to stderr: with both on one pipe, the order holds."""
    import subprocess
    import sys

    script = (
        "from polyjobs.cli.console import Console\n"
        "c = Console()\n"
        "for i in range(3):\n"
        "    c.line(f'line {i}')\n"
        "    c.note(f'note {i}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "line 0",
        "note 0",
        "line 1",
        "note 1",
        "line 2",
        "note 2",
    ]


def test_visible_escapes_exactly_the_hidden_characters() -> None:
    hidden = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200B, 0x202E]]
    hidden += [chr(0x2066), chr(0xFEFF), "\udcff"]
    for char in hidden:
        assert visible(char).startswith("\\"), repr(char)
        assert visible("a" + char + "b") == "a" + visible(char) + "b"
    assert visible("\n\t", multiline=True) == "\n\t"
    assert visible("\n\t") == "\\x0a\\x09"
    kept = "plain ascii ~ é ß 日本語 😀 \u00a0 \u2028 [x]"
    assert visible(kept) == kept


def test_lines_to_a_closed_pipe_are_dropped_once_said_and_the_work_goes_on() -> None:
    """``polyjobs start | head -1``: once stdout's reader is gone, one note on stderr, no
    traceback per line, and the process carries on (and exits normally)."""
    import subprocess
    import sys

    script = (
        "import os\n"
        "from polyjobs.cli.console import Console\n"
        "read, write = os.pipe()\n"
        "os.close(read)\n"
        "os.dup2(write, 1)\n"
        "c = Console()\n"
        "for i in range(3):\n"
        "    c.line(f'line {i}')\n"
        "c.raw_line('{}')\n"
        "c.note('still working')\n"
        "print('printed at exit')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stderr) == (
        0,
        "polyjobs: standard output is closed; nothing more is printed there\nstill working\n",
    )
