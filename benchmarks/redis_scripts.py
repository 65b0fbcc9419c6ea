"""Redis server time per script call, by prelude (issue 21): what a script's prelude costs Redis.

    .venv/bin/python benchmarks/redis_scripts.py [--calls 20000] [--rounds 5]

On a private redis-server (so ``INFO commandstats`` counts only these calls), for every queue
script: ``EVALSHA`` of its prelude followed by ``return 1``, with the whole prelude (every helper
of ``common.lua`` and ``flows.lua``, as before issue 21's pruning) and with the pruned one (what
the script refers to; what is sent now); ``return 1`` alone; a real single ``add`` with either
prelude; and ``FCALL`` of a Redis Function whose library defined the whole prelude once at
``FUNCTION LOAD`` and that only re-binds the per-call values (keys, prefix, state) before
``return 1`` (the floor of the Redis Functions design). Rounds alternate the variants; the table
shows each variant's median µs per call (``usec_per_call``) over the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RedisServer, Resp

from polyjobs.backends.redis import scripts
from polyjobs.backends.redis.keys import SCRIPT_KEYS

PREFIX = "bench:{q}:"
KEYS = [PREFIX + name for name in SCRIPT_KEYS]
BATCH = 200


def function_library() -> str:
    """The whole prelude defined once in a library; ``probe`` re-binds what changes per call."""
    header = "".join(f"local K_{name}\n" for name in SCRIPT_KEYS)
    rest = scripts.full_prelude().split("\n")
    # nothing of the standard library may run while a library loads: PFX is bound per call
    body = "\n".join(
        "local PFX" if line.startswith("local PFX") else line
        for line in rest
        if not line.startswith("local K_")
    )
    rebind = "\n".join(f"  K_{name} = keys[{i}]" for i, name in enumerate(SCRIPT_KEYS, 1))
    return (
        "#!lua name=pjbench\n"
        "local KEYS, ARGV = {}, {''}\n" + header + body + "\n"
        "redis.register_function('probe', function(keys, args)\n"
        "  KEYS, ARGV = keys, args\n" + rebind + "\n"
        "  JP = args[1] .. 'j:'\n  LP = args[1] .. 'l:'\n"
        "  PFX = string.match(args[1], '^(.*){[^{}]*}:$')\n"
        "  NOW, WAKE_PENDING, METRICS, FLOWS_HERE = nil, false, {}, nil\n"
        "  return 1\nend)\n"
    )


def add_args() -> list[str]:
    now = f"{time.time():.6f}"
    job = ["", "noop", '{"i":1}', "{}", now, now, "0", "0", ""]
    return [PREFIX, now, "1", *job, "", "", "0", "0", "0"]


def per_call(redis: Resp, command: list[str], calls: int, stat: str) -> float:
    redis.call("CONFIG", "RESETSTAT")
    packed = b"".join(_pack(command) for _ in range(BATCH))
    for _ in range(calls // BATCH):
        redis.sock.sendall(packed)
        for _ in range(BATCH):
            redis._read()
    info = redis.info("commandstats")[f"cmdstat_{stat}"]
    return float(info.split("usec_per_call=", 1)[1].split(",", 1)[0])


def _pack(args: list[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = RedisServer()
    url = server.start()
    try:
        redis = Resp("127.0.0.1", int(url.rsplit(":", 1)[1]))
        whole = scripts.full_prelude()
        variants: dict[str, tuple[list[str], str]] = {}

        def script(label: str, text: str, argv: list[str]) -> None:
            sha = redis.call("SCRIPT", "LOAD", text)
            assert sha == hashlib.sha1(text.encode()).hexdigest()
            variants[label] = (["EVALSHA", sha, str(len(KEYS)), *KEYS, *argv], "evalsha")

        script("return 1", "return 1", [PREFIX])
        redis.call("FUNCTION", "LOAD", "REPLACE", function_library())
        variants["FCALL, whole prelude loaded once"] = (
            ["FCALL", "probe", str(len(KEYS)), *KEYS, PREFIX],
            "fcall",
        )
        for name in scripts.NAMES:
            if name in scripts.GLOBAL:
                continue
            kept = scripts.source(name).rsplit(scripts.read(f"{name}.lua"), 1)[0]
            if kept.startswith("#!"):  # the flags line: measured without, as the whole one
                kept = kept.split("\n", 1)[1]
            script(f"{name}: whole prelude", whole + "\nreturn 1", [PREFIX])
            script(f"{name}: pruned prelude", kept + "return 1", [PREFIX])
        body = scripts.read("add.lua")
        script("add (real, 1 job): whole prelude", whole + "\n" + body, add_args())
        script("add (real, 1 job): pruned prelude", scripts.source("add"), add_args())
        results: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.rounds):
            for label, (command, stat) in variants.items():
                results[label].append(per_call(redis, command, args.calls, stat))
                if label.startswith("add"):
                    redis.call("FLUSHDB")
        width = max(map(len, results))
        print(f"{'variant':<{width}}  µs/call median  (rounds)")
        for label, values in results.items():
            rounds = " ".join(f"{v:.2f}" for v in values)
            print(f"{label:<{width}}  {statistics.median(values):6.2f}  ({rounds})")
        redis.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
