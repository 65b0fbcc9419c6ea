"""The detector's listings show what upstream sent (market titles, pseudonyms) as inert text:
no markup, and no control character that could move the cursor or recolour the terminal."""

from __future__ import annotations

import pytest

from polyjobs.cli.console import Console
from polyjobs.polymarket.listing import Page
from polyjobs.processors.commands import _show


def test_listing_cells_show_control_characters_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(width=200)
    page = Page(items=[{}], offset=0, limit=20, total=1)
    hostile = "rain\x1b[2J\x1b]0;owned\x07[red]x[/red]\u202etxt"
    _show(console, page, "wallets", ("address", "name"), [["0xabc", hostile]])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "rain\\x1b[2J" in out and "[red]x[/red]" in out and "\\u202etxt" in out
