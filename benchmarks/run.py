"""polyjobs against its peers, side by side, in one run.

    python benchmarks/run.py                    # everything (N = 10,000), ~15 min
    python benchmarks/run.py --quick            # N = 2,000, five libraries
    python benchmarks/run.py --only polyjobs,bullmq-node
    python benchmarks/run.py --profile 10       # cProfile of polyjobs at concurrency 10

Creates benchmarks/.peers (the peers' venv) and benchmarks/node/node_modules when missing,
starts a private redis-server (or uses --redis-url), runs every library in its own
subprocesses, prints the tables and writes benchmarks/results/<date>.json. See README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HERE,
    NODE_DIR,
    PEERS_DIR,
    PeerProcess,
    RedisServer,
    Resp,
    ensure_node,
    ensure_peer_venv,
    export_revision,
    library_versions,
    machine_facts,
    peers_python,
    project_python,
)
from floors import measure as measure_floors
from floors import render as render_floors


@dataclass(frozen=True)
class Peer:
    name: str
    kind: str  # "project" (polyjobs' venv), "peers" (benchmarks/.peers) or "node"
    script: str
    db: int
    env: dict[str, str] = field(default_factory=dict)
    max_concurrency: int = 1000  # in one worker process

    def argv(self) -> list[str]:
        if self.kind == "node":
            return ["node", str(NODE_DIR / self.script)]
        python = project_python() if self.kind == "project" else str(peers_python())
        return [python, str(PEERS_DIR / self.script)]


PEERS = [
    Peer("polyjobs", "project", "peer_polyjobs.py", 1),
    Peer("polyjobs-uvloop", "project", "peer_polyjobs.py", 2, {"POLYJOBS_BENCH_UVLOOP": "1"}),
    Peer("bullmq-node", "node", "bench.js", 3),
    Peer("bullmq", "peers", "peer_bullmq.py", 4),
    Peer("arq", "peers", "peer_arq.py", 5),
    Peer("saq", "peers", "peer_saq.py", 6),
    Peer("dramatiq", "peers", "peer_dramatiq.py", 7),
    Peer("huey", "peers", "peer_huey.py", 8),
    Peer("taskiq", "peers", "peer_taskiq.py", 9),
    Peer("celery", "peers", "peer_celery.py", 10),
    Peer("rq", "peers", "peer_rq.py", 11, max_concurrency=1),
]
QUICK = ["polyjobs", "bullmq-node", "bullmq", "saq", "dramatiq"]
BASELINE = "polyjobs"
TIMES = "\u00d7"  # the multiplication sign of "1.3x"

# (key, column title, unit, higher is better)
METRICS = [
    ("enqueue_single", "enqueue 1-by-1", "jobs/s", True),
    ("enqueue_inflight", "enqueue 50 in flight", "jobs/s", True),
    ("enqueue_bulk", "enqueue bulk", "jobs/s", True),
    ("process_c1", "process c=1", "jobs/s", True),
    ("process_c10", "process c=10", "jobs/s", True),
    ("process_c100", "process c=100", "jobs/s", True),
    ("latency_p50", "pick-up p50", "ms", False),
    ("latency_p99", "pick-up p99", "ms", False),
    ("add_cpu", "CPU/add 1-by-1", "µs", False),
    ("add_script_us", "Redis scripts/add 1-by-1", "µs", False),
    ("job_cpu", "CPU/job c=10", "µs", False),
    ("rss_mb", "RSS c=10", "MB", False),
    ("cmds_per_job", "cmds/job c=10", "", False),
]

# Issue 21's targets: (metric, comparison, reference, factor) — reference a peer name (whose
# value is multiplied by factor) or a number.
TARGETS: list[tuple[str, str, str | float, float]] = [
    ("enqueue_single", ">=", "bullmq-node", 1.5),
    ("enqueue_inflight", ">=", "bullmq-node", 2.0),
    ("enqueue_bulk", ">=", "bullmq-node", 1.0),
    ("process_c1", ">=", "bullmq-node", 1.0),
    ("process_c10", ">=", "bullmq-node", 1.5),
    ("latency_p50", "<=", 0.5, 1.0),
    ("latency_p99", "<=", 2.0, 1.0),
    ("rss_mb", "<=", 40.0, 1.0),
    ("cmds_per_job", "<", "bullmq-node", 1.0),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """One run: where Redis is, the sizes, and the per-scenario timeout."""

    base_url: str
    n: int
    latency_n: int
    rate: float
    batch: int
    timeout: float
    redis: Resp

    def url(self, peer: Peer) -> str:
        return f"{self.base_url}/{peer.db}"

    def spawn(self, peer: Peer, mode: str, n: int, concurrency: int = 10) -> PeerProcess:
        argv = [*peer.argv(), mode, "--url", self.url(peer), "--n", str(n)]
        argv += ["--concurrency", str(concurrency), "--rate", str(self.rate)]
        argv += ["--batch", str(self.batch)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **peer.env}
        return PeerProcess(argv, env).start()

    def once(self, peer: Peer, mode: str, n: int, concurrency: int = 10) -> dict[str, Any]:
        proc = self.spawn(peer, mode, n, concurrency)
        try:
            result: dict[str, Any] = json.loads(
                proc.expect("RESULT ", time.monotonic() + self.timeout)
            )
            return result
        finally:
            proc.close()

    def flush(self, peer: Peer) -> None:
        self.redis.call("SELECT", peer.db)
        self.redis.call("FLUSHDB")


# -- scenarios (each returns {metric: value}; PeerError marks them failed) ------------------
def enqueue(bench: Bench, peer: Peer, mode: str) -> float | str:
    return enqueue_costs(bench, peer, mode)[0]


def enqueue_costs(
    bench: Bench, peer: Peer, mode: str
) -> tuple[float | str, float | str, float | str]:
    """Jobs/s; CPU µs per add: the producer's own (what it reports for the timed adds) plus
    Redis' (the server's CPU over the step), steadier than the rate on a busy machine since CPU
    does not count time spent waiting for a core; and the µs Redis spent running scripts per
    add (INFO commandstats: the script commands' own time, the commands they call included;
    ``n/a`` for a library whose adds run no script)."""
    bench.flush(peer)
    before = bench.redis.cpu_seconds()
    calls, usec = bench.redis.script_usec()
    result = bench.once(peer, mode, bench.n)
    server = bench.redis.cpu_seconds() - before
    after_calls, after_usec = bench.redis.script_usec()
    if "unsupported" in result:
        return f"n/a: {result['unsupported']}", "n/a", "n/a"
    cpu = "n/a: not reported" if "cpu" not in result else 1e6 * (result["cpu"] + server) / bench.n
    scripts: float | str = (after_usec - usec) / bench.n
    if after_calls == calls:
        scripts = "n/a: no scripts"
    return bench.n / result["elapsed"], cpu, scripts


def process(bench: Bench, peer: Peer, concurrency: int) -> dict[str, Any]:
    bench.flush(peer)
    bench.once(peer, "fill", bench.n)
    before = bench.redis.total_calls()
    server = bench.redis.cpu_seconds()
    result = bench.once(peer, "work", bench.n, concurrency)
    server = bench.redis.cpu_seconds() - server
    calls = bench.redis.total_calls() - before - 2  # minus the first INFOs
    if "unsupported" in result:
        return {"throughput": f"n/a: {result['unsupported']}"}
    cpu: float | str = "n/a: not reported"
    if "cpu_span" in result and result["count"] > 1:
        # the worker's CPU between its first and last job, plus Redis' over the whole run
        cpu = 1e6 * (result["cpu_span"] / (result["count"] - 1) + server / bench.n)
    return {
        "throughput": (result["count"] - 1) / result["span"] if result["span"] > 0 else 0.0,
        "rss_mb": result["rss_mb"],
        "cmds_per_job": calls / bench.n,
        "job_cpu": cpu,
    }


def latency(bench: Bench, peer: Peer) -> dict[str, float]:
    """A worker at concurrency 10 is started first; a producer then adds jobs at ``rate``."""
    bench.flush(peer)
    worker = bench.spawn(peer, "work", bench.latency_n, min(10, peer.max_concurrency))
    try:
        deadline = time.monotonic() + bench.timeout
        worker.expect("READY", deadline)
        time.sleep(1.5)  # let the worker settle into its idle wait
        bench.once(peer, "produce", bench.latency_n)
        result = json.loads(worker.expect("RESULT ", deadline))
    finally:
        worker.close()
    ms = sorted(1000 * x for x in result["latencies"])
    return {
        "latency_p50": statistics.median(ms),
        "latency_p99": ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)],
    }


def run_peer(bench: Bench, peer: Peer, broken: str | None) -> dict[str, Any]:
    """All scenarios for one library; a failing scenario is recorded, the rest still run."""
    row: dict[str, Any] = {}
    if broken:
        return {key: f"error: {broken}" for key, *_ in METRICS}

    def attempt(keys: list[str], step: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            row.update(step())
        except Exception as exc:  # a peer's failure is a table cell, never a crash
            for key in keys:
                row.setdefault(key, f"error: {exc or type(exc).__name__}")
        log(f"  {peer.name}: {', '.join(keys)} ({time.monotonic() - started:.1f}s)")

    def single() -> dict[str, Any]:
        rate, cpu, scripts = enqueue_costs(bench, peer, "enqueue-single")
        return {"enqueue_single": rate, "add_cpu": cpu, "add_script_us": scripts}

    attempt(["enqueue_single", "add_cpu", "add_script_us"], single)
    attempt(
        ["enqueue_inflight"],
        lambda: {"enqueue_inflight": enqueue(bench, peer, "enqueue-inflight")},
    )
    attempt(["enqueue_bulk"], lambda: {"enqueue_bulk": enqueue(bench, peer, "enqueue-bulk")})
    # RSS, commands and CPU per job come from the c=10 run (c=1 for a library without
    # concurrency)
    footprint_at = min(10, peer.max_concurrency)
    footprint = ["rss_mb", "cmds_per_job", "job_cpu"]
    for c in (1, 10, 100):
        if c > peer.max_concurrency:
            row[f"process_c{c}"] = "n/a: no concurrency inside one worker process"
            continue
        keys = [f"process_c{c}"] + (footprint if c == footprint_at else [])

        def step(c: int = c) -> dict[str, Any]:
            got = process(bench, peer, c)
            out = {f"process_c{c}": got["throughput"]}
            if c == footprint_at and "rss_mb" in got:
                out |= {key: got[key] for key in footprint}
            return out

        attempt(keys, step)
    if footprint_at != 10:
        row["note"] = (
            f"n/a: RSS, cmds/job and pick-up latency measured at concurrency {footprint_at}"
        )
    attempt(["latency_p50", "latency_p99"], lambda: latency(bench, peer))
    bench.flush(peer)
    return row


# -- output ----------------------------------------------------------------------------------
def fmt(value: Any, unit: str) -> str:
    if isinstance(value, str):
        return value.split(":", 1)[0]  # "error" / "n/a"; the reason is in the notes
    if unit == "jobs/s":
        return f"{value:,.0f}"
    return f"{value:.2f}" if unit == "ms" else f"{value:.1f}"


def ratio(ours: Any, theirs: Any, higher_better: bool) -> str:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
        return "-"
    if min(ours, theirs) <= 0:
        return "-"
    return f"{(ours / theirs) if higher_better else (theirs / ours):.2f}{TIMES}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def result_tables(results: dict[str, dict[str, Any]], metrics: list[Any]) -> list[str]:
    """The results as lines: one table of every library's values, one of polyjobs' ratio to
    each other library (when polyjobs ran), and the notes of the cells that are not numbers.
    ``metrics``: (key, title, unit, higher is better) per column."""
    names = list(results)
    headers = ["library"] + [f"{t} ({u})" for _, t, u, _ in metrics]
    values = [[n] + [fmt(results[n].get(k, "error"), u) for k, _, u, _ in metrics] for n in names]
    out = [table(headers, values)]
    if "polyjobs" in results:
        ours = results["polyjobs"]
        rows = [
            [f"polyjobs/{n}"]
            + [ratio(ours.get(k), results[n].get(k), hb) for k, _, _, hb in metrics]
            for n in names
            if n != "polyjobs"
        ]
        out += [
            "",
            f"polyjobs relative to each library (>1{TIMES} means polyjobs is better):",
            "",
            table(["ratio"] + [t for _, t, _, _ in metrics], rows),
        ]
    notes = sorted(
        {f"- {n}, {k}: {v}" for n, r in results.items() for k, v in r.items() if isinstance(v, str)}
    )
    if notes:
        out += ["", "Notes (n/a = not measured, error = failed):", *notes]
    return out


def render(results: dict[str, dict[str, Any]], facts: dict[str, Any], meta: dict[str, Any]) -> str:
    names = list(results)
    headers = ["library"] + [
        f"{title} ({unit})" if unit else title for _, title, unit, _ in METRICS
    ]
    values = [[n] + [fmt(results[n].get(k, "error"), u) for k, _, u, _ in METRICS] for n in names]
    out = [
        f"polyjobs benchmark {meta['date']} — N={meta['n']:,} no-op jobs, pick-up latency "
        f"{meta['latency_n']:,} jobs at {meta['rate']:.0f}/s, bulk batches of {meta['batch']}",
        f"machine: {facts['cpu']}, {facts['cores']} cores, "
        f"load {' '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}, "
        f"Python {facts['python']}, Redis {facts['redis']} ({meta['redis']}), Node {facts['node']}",
        f"polyjobs from: {meta.get('polyjobs_source', 'working tree')}"
        + (f"; medians of {meta['rounds']} rounds" if meta.get("rounds") else ""),
        "Shared machine: compare the ratios (measured side by side), not absolute numbers.",
        "",
        table(headers, values),
    ]
    if BASELINE in results:
        ours = results[BASELINE]
        rows = [
            [f"{BASELINE}/{n}"]
            + [ratio(ours.get(k), results[n].get(k), hb) for k, _, _, hb in METRICS]
            for n in names
            if n != BASELINE
        ]
        out += [
            "",
            f"{BASELINE} relative to each library (>1{TIMES} means {BASELINE} is better: "
            "faster, or lower latency / memory / commands):",
            "",
            table(["ratio"] + [title for _, title, _, _ in METRICS], rows),
            "",
            *targets(results),
        ]
    notes = sorted(
        {f"- {n}, {k}: {v}" for n in names for k, v in results[n].items() if isinstance(v, str)}
    )
    if notes:
        out += ["", "Notes (n/a = not measured, error = failed):", *notes]
    return "\n".join(out)


def run_round(
    bench: Bench, peers: list[Peer], broken: dict[str, str | None], k: int, of: int
) -> dict[str, dict[str, Any]]:
    """Every library once, in order (round ``k`` of ``of``)."""
    results: dict[str, dict[str, Any]] = {}
    for peer in peers:
        log(f"{peer.name} ..." + (f" (round {k + 1} of {of})" if of > 1 else ""))
        results[peer.name] = run_peer(bench, peer, broken.get(peer.name))
    return results


def medians(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per library and metric, the median of the rounds that measured it (the first round's
    text, e.g. ``n/a: ...``, when none did)."""
    out: dict[str, dict[str, Any]] = {}
    for name in rounds[0]:
        row: dict[str, Any] = {}
        for key in {k for r in rounds for k in r[name]}:
            values = [r[name].get(key) for r in rounds]
            numbers = [v for v in values if isinstance(v, int | float)]
            row[key] = statistics.median(numbers) if numbers else values[0]
        out[name] = row
    return out


def per_round(rounds: list[dict[str, dict[str, Any]]], metrics: list[Any] | None = None) -> str:
    """The baseline's ratio to each library in every round, and their median (with K rounds):
    on a shared machine the spread says more than any one number. ``metrics``: the columns
    (this benchmark's by default)."""
    if len(rounds) < 2 or BASELINE not in rounds[0]:
        return ""
    rows = []
    for name in [n for n in rounds[0] if n != BASELINE]:
        for key, title, _, better in METRICS if metrics is None else metrics:
            cells = [ratio(r[BASELINE].get(key), r[name].get(key), better) for r in rounds]
            found = [float(c.rstrip(TIMES)) for c in cells if c != "-"]
            middle = f"{statistics.median(found):.2f}{TIMES}" if found else "-"
            rows.append([f"{BASELINE}/{name}", title, " / ".join(cells), middle])
    return "\n".join(
        [
            "",
            "",
            f"Every round ({len(rounds)}; the tables above show medians of the values):",
            "",
            table(["ratio", "column", "rounds", "median"], rows),
        ]
    )


def targets(results: dict[str, dict[str, Any]]) -> list[str]:
    ours = results[BASELINE]
    lines = ["Targets (issue 21):"]
    for key, op, ref, factor in TARGETS:
        title = next(t for k, t, _, _ in METRICS if k == key)
        theirs = results.get(ref, {}).get(key) if isinstance(ref, str) else ref
        value = ours.get(key)
        what = f"{factor:g}{TIMES} {ref}" if isinstance(ref, str) and factor != 1 else str(ref)
        if not isinstance(value, int | float) or not isinstance(theirs, int | float):
            lines.append(f"- {title} {op} {what}: not measured")
            continue
        theirs *= factor
        met = {">=": value >= theirs, "<=": value <= theirs, "<": value < theirs}[op]
        lines.append(
            f"- {title} {op} {what} ({theirs:,.2f}): {value:,.2f} — {'met' if met else 'NOT met'}"
        )
    return lines


# -- profile ---------------------------------------------------------------------------------
def profile(bench: Bench, out: Path, concurrency: int) -> str:
    """cProfile of one polyjobs worker over N pre-enqueued jobs."""
    import pstats

    peer = next(p for p in PEERS if p.name == BASELINE)
    bench.flush(peer)
    bench.once(peer, "fill", bench.n)
    stats_path = Path(tempfile.mkdtemp(prefix="polyjobs-bench-")) / "worker.pstats"
    argv = [*peer.argv(), "work", "--url", bench.url(peer), "--n", str(bench.n)]
    argv += ["--concurrency", str(concurrency), "--profile", str(stats_path)]
    worker = PeerProcess(argv, {**os.environ, **peer.env}).start()
    try:
        result = json.loads(worker.expect("RESULT ", time.monotonic() + bench.timeout))
    finally:
        worker.close()
    bench.flush(peer)
    import io

    text = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=text)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    rate = (result["count"] - 1) / result["span"]
    report = f"polyjobs c={concurrency} under cProfile: {rate:,.0f} jobs/s (profiling slows it)\n"
    report += text.getvalue()
    out.write_text(report)
    stats_path.unlink()
    stats_path.parent.rmdir()
    return report


# -- main ------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2,000 and five libraries")
    parser.add_argument("--only", default="", help="comma-separated libraries to run")
    parser.add_argument("--n", type=int, default=0, help="jobs per scenario (default 10,000)")
    parser.add_argument("--latency-jobs", type=int, default=0, help="default 2,000 (quick 1,000)")
    parser.add_argument("--rate", type=float, default=200.0, help="pick-up latency rate (jobs/s)")
    parser.add_argument("--batch", type=int, default=500, help="bulk enqueue batch size")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per scenario")
    parser.add_argument(
        "--redis-url",
        default="",
        help="use this Redis (dbs 1-11 are FLUSHed) instead of a private redis-server",
    )
    parser.add_argument(
        "--polyjobs-rev",
        default="",
        help="measure polyjobs as committed at this git revision (e.g. HEAD), not the work tree",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="C", help="only profile polyjobs at concurrency C"
    )
    parser.add_argument(
        "--no-floors",
        action="store_true",
        help="skip the machine's floors (round trips, hand-over; benchmarks/floors.py)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="K rounds of every library in turn; the tables show medians, the ratios per round",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    args.n = args.n or (2000 if args.quick else 10_000)
    args.latency_jobs = args.latency_jobs or (1000 if args.quick else 2000)
    args.timeout = args.timeout or (90.0 if args.quick else 240.0)
    return args


def select(args: argparse.Namespace) -> list[Peer]:
    known = {p.name: p for p in PEERS}
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            sys.exit(f"unknown libraries {unknown}; known: {', '.join(known)}")
        return [known[w] for w in wanted]
    return [known[n] for n in QUICK] if args.quick else list(PEERS)


def machine_floors(base: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The round-trip and hand-over floors of this machine (``floors.py``, on db 12) and their
    text; nothing with ``--no-floors``."""
    if args.no_floors:
        return {}, ""
    log("floors: round trips and hand-over (benchmarks/floors.py)")
    floors = measure_floors(f"{base}/12", rate=args.rate, handover_n=args.latency_jobs)
    return floors, "\n\n" + render_floors(floors, args.rate)


def single_add_floor(results: dict[str, dict[str, Any]], floors: dict[str, Any]) -> str:
    """What the single-add target asks per add, against what an add costs before any client
    work: the C client's round trip (a floor) plus polyjobs' add script in Redis ("" when
    something is not measured)."""
    ours, theirs = results.get(BASELINE, {}), results.get("bullmq-node", {})
    goal = next(factor for key, _, _, factor in TARGETS if key == "enqueue_single")
    rate, script = theirs.get("enqueue_single"), ours.get("add_script_us")
    trip = floors.get("rtt_redis_benchmark_us")
    if not (
        isinstance(rate, int | float)
        and isinstance(script, int | float)
        and isinstance(trip, int | float)
    ):
        return ""
    need = 1e6 / (rate * goal)
    floor = trip + script
    verdict = (
        "more than the target allows: no client, however fast, reaches it on this machine"
        if floor > need
        else f"{need - floor:.1f} µs left for the client"
    )
    return (
        f"\n\nSingle adds against the floor: {goal:g}{TIMES} bullmq-node is "
        f"{rate * goal:,.0f} adds/s, {need:.1f} µs per add; redis-benchmark's round trip "
        f"({trip:.1f} µs) plus the add script of {BASELINE} in Redis ({script:.1f} µs) is "
        f"{floor:.1f} µs, {verdict}."
    )


def main() -> None:
    args = parse_args()
    peers = select(args)
    server = RedisServer()
    base = args.redis_url.rstrip("/") if args.redis_url else server.start()
    host_port = base.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    redis = Resp(host, int(port or 6379))
    source, src = "working tree", ""
    if args.polyjobs_rev:
        src, commit = export_revision(args.polyjobs_rev)
        source = f"{args.polyjobs_rev} = {commit}"
        for i, peer in enumerate(PEERS):
            if peer.kind == "project":
                PEERS[i] = replace(peer, env={**peer.env, "POLYJOBS_BENCH_SRC": src})
        peers = [next(p for p in PEERS if p.name == peer.name) for peer in peers]
    try:
        bench = Bench(base, args.n, args.latency_jobs, args.rate, args.batch, args.timeout, redis)
        stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        results_dir = HERE / "results"
        results_dir.mkdir(exist_ok=True)
        if args.profile:
            name = f"profile-c{args.profile}-{stamp}.txt"
            print(profile(bench, results_dir / name, args.profile))
            return
        broken: dict[str, str | None] = {}
        if any(p.kind == "peers" for p in peers):
            failed = ensure_peer_venv(log)  # a peer whose package failed fails at import
            if failed:
                log(f"could not install: {', '.join(failed)}")
        if any(p.kind == "node" for p in peers):
            broken["bullmq-node"] = ensure_node(log)
        facts = machine_facts(redis)
        meta = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "n": args.n,
            "latency_n": args.latency_jobs,
            "rate": args.rate,
            "batch": args.batch,
            "timeout_s": args.timeout,
            "redis": "private redis-server" if not args.redis_url else args.redis_url,
            "polyjobs_source": source,
            "versions": library_versions(),
        }
        rounds = [run_round(bench, peers, broken, k, args.repeat) for k in range(args.repeat)]
        results = medians(rounds)
        if args.repeat > 1:
            meta["rounds"] = args.repeat
        text = render(results, facts, meta) + per_round(rounds)
        floors, floors_text = machine_floors(base, args)
        text += floors_text + single_add_floor(results, floors)
        print(text)
        path = results_dir / f"{stamp}.json"
        saved: dict[str, Any] = {"meta": meta, "machine": facts, "results": results}
        saved["floors"] = floors
        if args.repeat > 1:
            saved["rounds"] = rounds
        path.write_text(json.dumps({**saved, "table": text}, indent=1))
        log(f"wrote {path.relative_to(HERE.parent)}")
    finally:
        redis.close()
        server.stop()
        if src:
            shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
