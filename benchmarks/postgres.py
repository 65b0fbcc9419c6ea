"""polyjobs on PostgreSQL against the PostgreSQL job queues, side by side, in one run.

    python benchmarks/postgres.py                 # N = 10,000, four libraries
    python benchmarks/postgres.py --n 2000 --only polyjobs,pgqueuer
    python benchmarks/postgres.py --polyjobs-rev HEAD
    python benchmarks/postgres.py --baseline feec48b   # also that revision, as polyjobs@<rev>
    python benchmarks/postgres.py --only polyjobs,pgqueuer --n 5000 --baseline main --repeat 5

Starts a private PostgreSQL cluster on a free port (``initdb`` + ``pg_ctl`` from the installed
server, default settings: fsync and ``synchronous_commit`` on), gives every library a fresh
database before every step, and runs each in its own subprocesses with the same driver protocol
as ``run.py`` (``peers/_bench.py``). The libraries take turns step by step (every library's
single adds, then every library's bulk adds, ...), the first of each step moving by one place
every round; with ``--repeat K`` the tables show each value's median over the K rounds and the
ratios of every round, and how many rounds polyjobs was ahead on every column. Single adds,
which wait for one commit each and so for the shared disk, go in ``--slices`` slices (default
10) per library, the libraries taking turns slice by slice. Creates
``benchmarks/.peers-postgres`` (pgqueuer, Procrastinate; pinned in
``peers/requirements-postgres.txt``) and ``node/node_modules`` (BullMQ and ``pg``) when missing.
Prints the tables and writes ``results/postgres-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HERE,
    NODE_DIR,
    PEERS_DIR,
    StoreBench,
    ensure_venv,
    export_revision,
    project_python,
)
from _common import (
    STORE_METRICS as METRICS,
)
from run import TIMES, log, medians, per_round, ratio, result_tables

PG_VENV = HERE / ".peers-postgres"
PG_REQUIREMENTS = PEERS_DIR / "requirements-postgres.txt"


@dataclass(frozen=True)
class Peer:
    name: str
    kind: str  # "project", "pg" (benchmarks/.peers-postgres) or "node"
    script: str
    env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        if self.kind == "node":
            return ["node", str(NODE_DIR / self.script)]
        python = project_python() if self.kind == "project" else str(PG_VENV / "bin" / "python")
        return [python, str(PEERS_DIR / self.script)]


PEERS = [
    Peer("polyjobs", "project", "peer_polyjobs.py"),
    Peer("bullmq-node", "node", "bench_pg.js"),
    Peer("pgqueuer", "pg", "peer_pgqueuer.py"),
    Peer("procrastinate", "pg", "peer_procrastinate.py"),
]


# -- a private PostgreSQL cluster ------------------------------------------------------------
def _tool(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found: install PostgreSQL's server package")
    return found


class Cluster:
    """``initdb`` in a temporary directory and ``pg_ctl start`` on a free port (as the
    ``postgres`` user when run as root: the server refuses root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="polyjobs-bench-pg-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.as_postgres = os.geteuid() == 0
        self.version = ""

    def _run(self, *argv: str) -> str:
        command = ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else list(argv)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            sys.exit(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-300:]}")
        return done.stdout

    def start(self, *settings: str) -> None:
        """Start the server; ``settings`` are extra ``name=value`` server settings."""
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._run(_tool("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
        options += "-c max_connections=300" + "".join(f" -c {x}" for x in settings)
        log_file = str(self.dir / "server.log")
        self._run(_tool("pg_ctl"), "-D", data, "-o", options, "-l", log_file, "-w", "start")
        self.version = self.sql("postgres", "SHOW server_version").strip()

    def stop(self) -> None:
        try:
            self._run(_tool("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, database: str, statement: str) -> str:
        return self._run(
            _tool("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-tAq",
            "-c",
            statement,
        )

    def fresh(self, database: str) -> str:
        self.sql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        self.sql("postgres", f"CREATE DATABASE {database}")
        return self.url(database)


# -- environments ----------------------------------------------------------------------------
def ensure_pg_venv() -> str | None:
    """Create benchmarks/.peers-postgres with the pinned peers; an error text or None."""
    return ensure_venv(PG_VENV, PG_REQUIREMENTS, log)


def ensure_node_pg() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    modules = NODE_DIR / "node_modules"
    if (modules / "bullmq").exists() and (modules / "pg").exists():
        return None
    log("npm ci in benchmarks/node ...")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True
    )
    return None if done.returncode == 0 else f"npm ci failed: {done.stderr.strip()[-160:]}"


# -- scenarios -------------------------------------------------------------------------------
@dataclass
class Bench(StoreBench):
    cluster: Cluster | None = None
    slices: int = 1

    def db(self, peer: Peer) -> str:
        return "bench_" + "".join(c if c.isalnum() else "_" for c in peer.name)

    def fresh(self, peer: Peer) -> str:
        """A URL of a database no step has used (the peer's, dropped and made again)."""
        assert self.cluster is not None
        return self.cluster.fresh(self.db(peer))


def run_round(
    bench: Bench, peers: list[Peer], broken: dict[str, str | None], k: int, of: int
) -> dict[str, dict[str, Any]]:
    """Round ``k`` of ``of``: each step for every library in turn, starting ``k`` places
    further down the list, so no library always meets the machine first (or last)."""
    order = peers[k % len(peers) :] + peers[: k % len(peers)]
    results: dict[str, dict[str, Any]] = {p.name: {} for p in peers}
    steps = {p.name: bench.steps(p) for p in order}
    for index in range(len(steps[order[0].name])):
        where = f" (round {k + 1} of {of})" if of > 1 else ""
        if steps[order[0].name][index][0] == ["enqueue_single"] and bench.slices > 1:
            log(f"enqueue_single, {bench.slices} slices in turn{where}")
            for name, cell in single_in_slices(bench, order, broken).items():
                results[name]["enqueue_single"] = cell
            continue
        for peer in order:
            keys, step = steps[peer.name][index]
            reason = broken.get(peer.name)
            if reason:
                results[peer.name].update({key: f"error: {reason}" for key in keys})
                continue
            log(f"{peer.name}: {', '.join(keys)}{where}")
            results[peer.name].update(bench.attempt(peer, keys, step, log))
    return results


def single_in_slices(
    bench: Bench, order: list[Peer], broken: dict[str, str | None]
) -> dict[str, float | str]:
    """Single adds, N in ``bench.slices`` slices per library, the libraries taking turns
    slice by slice (each adding to its own database): N over the sum of a library's slice
    times. A slice lasts a second or so, so the disk's swings, which last longer, meet every
    library alike; one library's N in one go would meet them alone."""
    size = max(1, bench.n // bench.slices)
    urls: dict[str, str] = {}
    spent: dict[str, float | str] = {}
    for peer in order:
        reason = broken.get(peer.name)
        if reason:
            spent[peer.name] = f"error: {reason}"
        else:
            urls[peer.name], spent[peer.name] = bench.fresh(peer), 0.0
    for _ in range(bench.slices):
        for peer in order:
            so_far = spent[peer.name]
            if isinstance(so_far, str):
                continue
            try:
                got = bench.once(peer, urls[peer.name], "enqueue-single", size)
                spent[peer.name] = so_far + float(got["elapsed"])
            except Exception as exc:  # a peer's failure is a table cell, never a crash
                spent[peer.name] = f"error: {exc or type(exc).__name__}"
    return {
        name: value if isinstance(value, str) else size * bench.slices / value
        for name, value in spent.items()
    }


def ahead_counts(rounds: list[dict[str, dict[str, Any]]]) -> str:
    """For each other library, in how many rounds polyjobs was behind on no column both
    measured (every ratio at least 1.00, as printed), and where it was behind in the others."""
    if "polyjobs" not in rounds[0]:
        return ""
    title = f"Rounds with polyjobs behind on no column (every ratio at least 1.00{TIMES}):"
    lines = ["", title, ""]
    for name in [n for n in rounds[0] if n != "polyjobs"]:
        behind: list[str] = []
        clean = 0
        for k, r in enumerate(rounds, 1):
            lost = []
            for key, title, _, better in METRICS:
                cell = ratio(r["polyjobs"].get(key), r[name].get(key), better)
                if cell != "-" and float(cell.rstrip(TIMES)) < 1.0:
                    lost.append(f"{title} {cell}")
            clean += not lost
            if lost:
                behind.append(f"round {k}: {', '.join(lost)}")
        detail = f" (behind in {'; '.join(behind)})" if behind else ""
        lines.append(f"- polyjobs/{name}: {clean} of {len(rounds)}{detail}")
    return "\n".join(lines)


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"polyjobs PostgreSQL benchmark {meta['date']} — N={meta['n']:,} no-op jobs, pick-up "
        f"latency {meta['latency_n']:,} jobs at {meta['rate']:.0f}/s, bulk batches of "
        f"{meta['batch']}",
        f"machine: {meta['cores']} cores, load {' '.join(f'{x:.2f}' for x in meta['load'])} at "
        f"start, {' '.join(f'{x:.2f}' for x in meta['load_end'])} at the end; Python "
        f"{meta['python']}; PostgreSQL {meta['postgres']} (private cluster, default settings)",
        f"polyjobs from: {meta['source']}"
        + (f"; medians of {meta['rounds']} interleaved rounds" if meta.get("rounds") else "")
        + (
            f"; single adds in {meta['slices']} slices a library, in turn"
            if meta.get("slices", 1) > 1
            else ""
        ),
        "Shared machine: compare the ratios (measured side by side), not absolute numbers.",
        "",
        *result_tables(results, METRICS),
    ]
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency-jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", default="")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="K rounds, the libraries taking turns step by step; medians and per-round ratios",
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=10,
        metavar="S",
        help="single adds in S slices of N/S per library, the libraries taking turns slice by "
        "slice (1: each library's N in one go)",
    )
    parser.add_argument("--polyjobs-rev", default="")
    parser.add_argument(
        "--baseline",
        default="",
        help="also measure polyjobs as committed at this revision (a row polyjobs@<rev>, right "
        "after polyjobs), for before/after ratios from one run",
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.slices < 1:
        sys.exit("--repeat and --slices must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    peers = PEERS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        known = {p.name: p for p in PEERS}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            sys.exit(f"unknown libraries {unknown}; known: {', '.join(known)}")
        peers = [known[w] for w in wanted]
    source, src = "working tree", ""
    if args.polyjobs_rev:
        src, commit = export_revision(args.polyjobs_rev)
        source = f"{args.polyjobs_rev} = {commit}"
        peers = [
            Peer(p.name, p.kind, p.script, {**p.env, "POLYJOBS_BENCH_SRC": src})
            if p.kind == "project"
            else p
            for p in peers
        ]
    baseline_src = ""
    if args.baseline:
        baseline_src, base_commit = export_revision(args.baseline)
        env = {"POLYJOBS_BENCH_SRC": baseline_src}
        base = Peer(f"polyjobs@{base_commit}", "project", "peer_polyjobs.py", env)
        at = next((i + 1 for i, p in enumerate(peers) if p.name == "polyjobs"), 0)
        peers = [*peers[:at], base, *peers[at:]]
    broken: dict[str, str | None] = {}
    if any(p.kind == "pg" for p in peers):
        error = ensure_pg_venv()
        for p in peers:
            if p.kind == "pg":
                broken[p.name] = error
    if any(p.kind == "node" for p in peers):
        broken["bullmq-node"] = ensure_node_pg()
    cluster = Cluster()
    cluster.start()
    try:
        bench = Bench(
            args.n,
            args.latency_jobs,
            args.rate,
            args.batch,
            args.timeout,
            cluster=cluster,
            slices=args.slices,
        )
        meta: dict[str, Any] = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "n": args.n,
            "latency_n": args.latency_jobs,
            "rate": args.rate,
            "batch": args.batch,
            "cores": os.cpu_count(),
            "load": os.getloadavg(),
            "python": sys.version.split()[0],
            "postgres": cluster.version,
            "source": source,
            "slices": args.slices,
        }
        rounds = [run_round(bench, peers, broken, k, args.repeat) for k in range(args.repeat)]
        results = medians(rounds)
        if args.repeat > 1:
            meta["rounds"] = args.repeat
        meta["load_end"] = os.getloadavg()
        text = render(results, meta) + per_round(rounds, METRICS) + "\n" + ahead_counts(rounds)
        print(text)
        stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        path = HERE / "results" / f"postgres-{stamp}.json"
        path.parent.mkdir(exist_ok=True)
        saved = {"meta": meta, "results": results, "rounds": rounds, "table": text}
        path.write_text(json.dumps(saved, indent=1))
        log(f"wrote {path.relative_to(HERE.parent)}")
    finally:
        cluster.stop()
        for tree in (src, baseline_src):
            if tree:
                shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
