"""CPU per line that ``polyjobs start`` prints for a completed job (text format, no live view).

    .venv/bin/python benchmarks/line_cost.py [--lines 20000] > /dev/null
    .venv/bin/python benchmarks/line_cost.py | cat > /dev/null     # stdout a pipe

The lines go to stdout (send it where the command's output would go); the result goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

from polyjobs.cli.console import Console
from polyjobs.cli.logs import Events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    events = Events(Console(), "text")
    payload = {"result": None}
    start = time.process_time()
    for i in range(args.lines):
        events.job("completed", "bench-noop", str(i), payload)
    spent = time.process_time() - start
    per_line = spent / args.lines * 1e6
    print(f"{per_line:.1f} µs of CPU per line ({args.lines} lines)", file=sys.stderr)


if __name__ == "__main__":
    main()
