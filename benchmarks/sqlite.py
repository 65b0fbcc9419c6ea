"""polyjobs' embedded SQLite backend against the SQLite-backed Python queues, side by side, in
one run.

    python benchmarks/sqlite.py                  # N = 10,000: polyjobs, Huey, persist-queue
    python benchmarks/sqlite.py --n 2000 --only polyjobs,huey
    python benchmarks/sqlite.py --polyjobs-rev HEAD

Every library gets a fresh database file (in one temporary directory) before every step and
runs in its own subprocesses with the driver protocol of ``run.py`` (``peers/_bench.py``):
enqueue one by one, bulk where the library has it, process at concurrency 10 and 100 (a worker
draining N jobs added beforehand), and the pick-up latency of jobs added from another process
at a steady rate to an idle worker. Creates ``benchmarks/.peers-sqlite`` (the peers, pinned in
``peers/requirements-sqlite.txt``) when missing. Prints the tables and writes
``results/sqlite-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HERE,
    PEERS_DIR,
    StoreBench,
    ensure_venv,
    export_revision,
    project_python,
)
from _common import (
    STORE_METRICS as METRICS,
)
from run import log, result_tables

SQLITE_VENV = HERE / ".peers-sqlite"
SQLITE_REQUIREMENTS = PEERS_DIR / "requirements-sqlite.txt"


@dataclass(frozen=True)
class Peer:
    name: str
    kind: str  # "project" (polyjobs' venv) or "sqlite" (benchmarks/.peers-sqlite)
    script: str
    env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        python = project_python() if self.kind == "project" else str(SQLITE_VENV / "bin" / "python")
        return [python, str(PEERS_DIR / self.script)]


PEERS = [
    Peer("polyjobs", "project", "peer_polyjobs.py"),
    Peer("huey", "sqlite", "peer_huey_sqlite.py"),
    Peer("persist-queue", "sqlite", "peer_persistqueue.py"),
]


@dataclass
class Bench(StoreBench):
    folder: Path = Path()

    def fresh(self, peer: Peer) -> str:
        """A URL of a database file no step has used."""
        for old in self.folder.glob(f"{peer.name}*"):
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        return f"sqlite:///{self.folder / (peer.name + '.db')}"


def run_peer(bench: Bench, peer: Peer, broken: str | None) -> dict[str, Any]:
    if broken:
        return {key: f"error: {broken}" for key, *_ in METRICS}
    return bench.measure(peer, log)


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"polyjobs SQLite benchmark {meta['date']} — N={meta['n']:,} no-op jobs, pick-up "
        f"latency {meta['latency_n']:,} jobs at {meta['rate']:.0f}/s from another process, bulk "
        f"batches of {meta['batch']}",
        f"machine: {meta['cores']} cores, load {' '.join(f'{x:.2f}' for x in meta['load'])} at "
        f"start, {' '.join(f'{x:.2f}' for x in meta['load_end'])} at the end; Python "
        f"{meta['python']}; SQLite {meta['sqlite']}",
        f"polyjobs from: {meta['source']}",
        "Shared machine: compare the ratios (measured side by side), not absolute numbers.",
        "",
        *result_tables(results, METRICS),
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency-jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", default="")
    parser.add_argument("--polyjobs-rev", default="")
    args = parser.parse_args()
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
    venv_error = None
    if any(p.kind == "sqlite" for p in peers):
        venv_error = ensure_venv(SQLITE_VENV, SQLITE_REQUIREMENTS, log)
    folder = Path(tempfile.mkdtemp(prefix="polyjobs-bench-sqlite-"))
    try:
        bench = Bench(args.n, args.latency_jobs, args.rate, args.batch, args.timeout, folder=folder)
        meta: dict[str, Any] = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "n": args.n,
            "latency_n": args.latency_jobs,
            "rate": args.rate,
            "batch": args.batch,
            "cores": os.cpu_count(),
            "load": os.getloadavg(),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "source": source,
        }
        results: dict[str, dict[str, Any]] = {}
        for peer in peers:
            log(f"{peer.name} ...")
            broken = venv_error if peer.kind == "sqlite" else None
            results[peer.name] = run_peer(bench, peer, broken)
        meta["load_end"] = os.getloadavg()
        text = render(results, meta)
        print(text)
        stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        path = HERE / "results" / f"sqlite-{stamp}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "results": results, "table": text}, indent=1))
        log(f"wrote {path.relative_to(HERE.parent)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if src:
            shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    main()
