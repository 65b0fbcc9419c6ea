"""The repository stands alone: nothing in it points at files it does not hold (a design
document, a shared directory of fixtures on one machine). A reader, or a test run on another
machine, has only the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = {".py", ".md", ".toml", ".lua", ".html", ".css", ".js", ".cfg", ".ini", ".txt", ""}
SKIPPED_DIRS = {".git", ".venv", "node_modules", "dist", "build", "__pycache__", "results"}
OUTSIDE = re.compile(
    r"/work/shared|/work/locks|\.\./shared|DESIGN\.md|STYLE\.md|reference design|domain research"
    r"|the reference's",
    re.IGNORECASE,
)


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix in TEXT:
            found.append(path)
    return found


def test_no_file_points_outside_the_repository() -> None:
    files = repository_files()
    assert len(files) > 100
    me = Path(__file__).resolve()
    pointers = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
        for path in files
        if path != me
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not pointers, "files point outside the repository:\n" + "\n".join(pointers)
