"""How long redaction takes on large hostile inputs (issue 15: it used to be quadratic).

    .venv/bin/python benchmarks/redact.py [--size 1000000] [--old REV --old-size 60000]

Times ``redact_text`` once per input shape (runs of letters or digits, many ``://``, ``:`` and
``@``, repeated ``token=`` and ``Bearer``) of ``--size`` characters. ``--old REV`` also times the
``polyjobs/redact.py`` of that git revision (``git show``) on ``--old-size`` characters of
letters, to compare with the implementation it replaced (648b02e~1 is the last quadratic one).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from polyjobs.redact import redact_text

SHAPES: dict[str, str] = {
    "letters": "a",
    "digits": "9",
    "scheme-runs": "a://",
    "colons": "a:",
    "at-signs": "x:@",
    "token=": "token=",
    "Bearer": "Bearer ",
    "webhooks": "/api/webhooks/1/",
    "url-with-secret": "redis://u:p@h ",
}


def timed(fn: Callable[[str], str], text: str) -> float:
    """CPU seconds of one call (of this thread: other processes on the machine do not count)."""
    started = time.thread_time()
    fn(text)
    return time.thread_time() - started


def old_redact(rev: str) -> Callable[[str], str]:
    source = subprocess.run(
        ["git", "show", f"{rev}:polyjobs/redact.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_redact.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_redact", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: Callable[[str], str] = module.redact_text
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--old", help="also time polyjobs/redact.py of this git revision")
    parser.add_argument("--old-size", type=int, default=60_000)
    args = parser.parse_args()
    print(f"redact_text on {args.size:,} characters (CPU time)")
    for name, unit in SHAPES.items():
        text = unit * (args.size // len(unit))
        print(f"  {name:16} {timed(redact_text, text) * 1000:8.1f} ms")
    if args.old:
        old = old_redact(args.old)
        text = "a" * args.old_size
        print(f"{args.old}: letters x {args.old_size:,}: {timed(old, text):.2f} s")
        print(f"now:  letters x {args.old_size:,}: {timed(redact_text, text) * 1000:.2f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
