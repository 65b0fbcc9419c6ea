"""Plumbing for ``benchmarks/run.py``: a tiny Redis client, a private redis-server, the peer
venv and node_modules, and peer subprocesses with a deadline. Standard library only, so the
harness runs under any Python 3.11+."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_VENV = HERE / ".peers"
PEERS_DIR = HERE / "peers"
NODE_DIR = HERE / "node"
REQUIREMENTS = PEERS_DIR / "requirements.txt"


class PeerError(Exception):
    """A peer could not run a scenario (install, crash, timeout); the table shows why."""


# -- Redis ---------------------------------------------------------------------------------
class Resp:
    """Just enough RESP2 for FLUSHDB, INFO and PING (the harness never imports a driver)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str | int) -> Any:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise PeerError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        raise PeerError(f"redis: unexpected reply {line!r}")

    def info(self, section: str) -> dict[str, str]:
        text = self.call("INFO", section)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used (user + system, all its threads)."""
        info = self.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def total_calls(self) -> int:
        """Commands the server has executed, including those called inside Lua scripts."""
        total = 0
        for key, value in self.info("commandstats").items():
            if key.startswith("cmdstat_"):
                total += int(value.split("calls=", 1)[1].split(",", 1)[0])
        return total

    def script_usec(self) -> tuple[int, int]:
        """Calls and microseconds the server has spent in scripts (``EVAL``, ``EVALSHA``,
        ``FCALL`` and their read-only forms), the commands they call included."""
        calls = usec = 0
        for key, value in self.info("commandstats").items():
            if key in SCRIPT_STATS:
                fields = dict(pair.split("=", 1) for pair in value.split(","))
                calls += int(fields["calls"])
                usec += int(fields["usec"])
        return calls, usec

    def close(self) -> None:
        self.file.close()
        self.sock.close()


#: INFO commandstats entries of the script commands.
SCRIPT_STATS = frozenset(
    f"cmdstat_{name}" for name in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
)


@dataclass
class RedisServer:
    """A throw-away redis-server on a free port (no persistence), so INFO counts and FLUSHDB
    concern this benchmark only."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: str = ""

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise PeerError("redis-server not found; pass --redis-url")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = tempfile.mkdtemp(prefix="polyjobs-bench-redis-")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", self.workdir, "--databases", "32"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client = Resp("127.0.0.1", self.port)
                client.call("PING")
                client.close()
                return f"redis://127.0.0.1:{self.port}"
            except (OSError, PeerError):
                time.sleep(0.05)
        raise PeerError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


# -- environments --------------------------------------------------------------------------
def project_python() -> str:
    """A Python that imports polyjobs: this one, or the repository's .venv."""
    try:
        import polyjobs  # noqa: F401

        return sys.executable
    except ImportError:
        venv = REPO / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable


def import_polyjobs_from_bench_source() -> None:
    """In a child process of a benchmark: import polyjobs from the source tree named by
    ``POLYJOBS_BENCH_SRC`` (an :func:`export_revision` directory), not the installed (editable)
    one; nothing when it is not set. Call before the first ``import polyjobs``."""
    src = os.environ.get("POLYJOBS_BENCH_SRC")
    if src:
        sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
        sys.path.insert(0, src)


def export_revision(rev: str) -> tuple[str, str]:
    """``git archive`` of ``rev`` into a temporary directory: (directory, commit id), so the
    benchmark measures committed code even while the working tree is being edited. A name
    that is no revision ends the benchmark with one line."""
    found = subprocess.run(
        ["git", "rev-parse", "--short", "--verify", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"not a revision of this repository: {rev!r}")
    commit = found.stdout.strip()
    target = tempfile.mkdtemp(prefix=f"polyjobs-bench-{commit}-")
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    return target, commit


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_venv(venv: Path, requirements: Path, log: Any) -> str | None:
    """Create ``venv`` with the pinned ``requirements`` when missing or outdated; an error text
    (the peers then fail visibly) or None."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    marker = venv / ".requirements.sha256"
    python = venv / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return None
    log(f"creating {venv} (pip install -r {requirements.name}) ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, "-r", str(requirements)]).returncode != 0:
        return "pip install failed"
    marker.write_text(digest)
    return None


def ensure_peer_venv(log: Any) -> list[str]:
    """Create benchmarks/.peers and install the pinned peers when missing or outdated.

    Returns the requirements that failed to install (their peers then fail visibly)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = PEERS_VENV / ".requirements.sha256"
    if peers_python().exists() and marker.exists() and marker.read_text() == digest:
        return []
    log(f"creating the peer venv {PEERS_VENV} (pip install -r {REQUIREMENTS.name}) ...")
    if not peers_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(peers_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, "-r", str(REQUIREMENTS)]).returncode == 0:
        marker.write_text(digest)
        return []
    failed = []
    for line in REQUIREMENTS.read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req and subprocess.run([*pip, req]).returncode != 0:
            failed.append(req)
    return failed


def ensure_node(log: Any) -> str | None:
    """npm install in benchmarks/node when node_modules is missing; an error text or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    if (NODE_DIR / "node_modules" / "bullmq").exists():
        return None
    log("npm install in benchmarks/node ...")
    command = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
    done = subprocess.run(
        ["npm", command, "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"npm {command} failed: {done.stderr.strip().splitlines()[-1:]}"
    return None


def machine_facts(redis: Resp) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = shutil.which("node")
    node_version = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "absent"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "redis": redis.info("server").get("redis_version", "?"),
        "node": node_version,
        "os": platform.platform(),
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the measured libraries (peer venv, node_modules, polyjobs)."""
    versions: dict[str, str] = {}
    names = ["polyjobs", "redis", "hiredis", "uvloop"]
    code = "import importlib.metadata as m,sys\nfor n in sys.argv[1:]:\n"
    code += "    try: print(n, m.version(n))\n    except Exception: print(n, '-')"
    out = subprocess.run([project_python(), "-c", code, *names], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        name, version = line.split()
        versions[f"{name} (project)"] = version
    if peers_python().exists():
        lines = [r.split("#", 1)[0].strip() for r in REQUIREMENTS.read_text().splitlines()]
        peers = [r.split("==")[0].split("[")[0] for r in lines if r]
        out = subprocess.run(
            [str(peers_python()), "-c", code, *peers], capture_output=True, text=True
        )
        for line in out.stdout.splitlines():
            name, version = line.split()
            versions[name] = version
    package = NODE_DIR / "node_modules" / "bullmq" / "package.json"
    if package.exists():
        import json

        versions["bullmq (node)"] = json.loads(package.read_text())["version"]
    return versions


# -- peer processes ------------------------------------------------------------------------
@dataclass
class PeerProcess:
    """One peer subprocess; stdout lines are collected by a thread, stderr goes to a file."""

    argv: list[str]
    env: dict[str, str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    proc: subprocess.Popen[str] | None = None
    stderr_path: str = ""

    def start(self) -> PeerProcess:
        handle, self.stderr_path = tempfile.mkstemp(prefix="polyjobs-bench-", suffix=".err")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            env=self.env,
            cwd=str(HERE),
            start_new_session=True,
        )
        os.close(handle)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, deadline: float) -> str:
        """The first stdout line starting with ``prefix``; PeerError on exit or deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise PeerError(f"timeout waiting for {prefix.strip()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise PeerError(self.failure())
            if line.startswith(prefix):
                return line[len(prefix) :]

    def failure(self) -> str:
        assert self.proc is not None
        code = self.proc.wait()
        tail = Path(self.stderr_path).read_text(errors="replace").strip().splitlines()
        last = next((t.strip() for t in reversed(tail) if t.strip()), "no output")
        return f"exit {code}: {last[:160]}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        if self.stderr_path:
            Path(self.stderr_path).unlink(missing_ok=True)


#: The columns of the embedded/SQL store benchmarks (sqlite.py, postgres.py): key, title, unit,
#: whether higher is better.
STORE_METRICS = [
    ("enqueue_single", "enqueue 1-by-1", "jobs/s", True),
    ("enqueue_bulk", "enqueue bulk", "jobs/s", True),
    ("process_c10", "process c=10", "jobs/s", True),
    ("process_c100", "process c=100", "jobs/s", True),
    ("latency_p50", "pick-up p50", "ms", False),
    ("latency_p99", "pick-up p99", "ms", False),
    ("rss_mb", "RSS c=10", "MB", False),
]


# -- one database-backed peer at a time (benchmarks/sqlite.py, benchmarks/postgres.py) --------
@dataclass
class StoreBench:
    """The scenarios of a benchmark whose peers each get a fresh database (:meth:`fresh`):
    enqueue 1-by-1 and in bulk, process at c=10 and c=100, pick-up latency from another
    process. The peers are scripts under ``peers/`` run with ``peer.argv()``."""

    n: int
    latency_n: int
    rate: float
    batch: int
    timeout: float

    def fresh(self, peer: Any) -> str:
        """The URL of a database no step has used."""
        raise NotImplementedError

    def spawn(self, peer: Any, url: str, mode: str, n: int, c: int = 10) -> PeerProcess:
        argv = [*peer.argv(), mode, "--url", url, "--n", str(n), "--concurrency", str(c)]
        argv += ["--rate", str(self.rate), "--batch", str(self.batch)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **peer.env}
        return PeerProcess(argv, env).start()

    def once(self, peer: Any, url: str, mode: str, n: int, c: int = 10) -> dict[str, Any]:
        proc = self.spawn(peer, url, mode, n, c)
        try:
            out: dict[str, Any] = json.loads(
                proc.expect("RESULT ", time.monotonic() + self.timeout)
            )
            return out
        finally:
            proc.close()

    def enqueue(self, peer: Any, mode: str) -> float | str:
        result = self.once(peer, self.fresh(peer), mode, self.n)
        if "unsupported" in result:
            return f"n/a: {result['unsupported']}"
        return self.n / float(result["elapsed"])

    def process(self, peer: Any, c: int) -> dict[str, float]:
        url = self.fresh(peer)
        self.once(peer, url, "fill", self.n)
        result = self.once(peer, url, "work", self.n, c)
        span = float(result["span"])
        return {
            "throughput": (result["count"] - 1) / span if span > 0 else 0.0,
            "rss_mb": float(result["rss_mb"]),
        }

    def latency(self, peer: Any) -> dict[str, float]:
        url = self.fresh(peer)
        worker = self.spawn(peer, url, "work", self.latency_n, 10)
        try:
            deadline = time.monotonic() + self.timeout
            worker.expect("READY", deadline)
            time.sleep(1.5)  # let the worker settle into its idle wait
            self.once(peer, url, "produce", self.latency_n)
            result = json.loads(worker.expect("RESULT ", deadline))
        finally:
            worker.close()
        ms = sorted(1000 * x for x in result["latencies"])
        return {
            "latency_p50": statistics.median(ms),
            "latency_p99": ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)],
        }

    def steps(self, peer: Any) -> list[tuple[list[str], Any]]:
        """The scenarios for ``peer`` in order: (the columns a step fills, the step)."""

        def c10() -> dict[str, Any]:
            got = self.process(peer, 10)
            return {"process_c10": got["throughput"], "rss_mb": got["rss_mb"]}

        return [
            (["enqueue_single"], lambda: {"enqueue_single": self.enqueue(peer, "enqueue-single")}),
            (["enqueue_bulk"], lambda: {"enqueue_bulk": self.enqueue(peer, "enqueue-bulk")}),
            (["process_c10", "rss_mb"], c10),
            (["process_c100"], lambda: {"process_c100": self.process(peer, 100)["throughput"]}),
            (["latency_p50", "latency_p99"], lambda: self.latency(peer)),
        ]

    def attempt(self, peer: Any, keys: list[str], step: Any, log: Any) -> dict[str, Any]:
        """One step's cells (a step that fails is a cell saying why, never a crash)."""
        started = time.monotonic()
        try:
            cells: dict[str, Any] = step()
        except Exception as exc:  # a peer's failure is a table cell, never a crash
            cells = {key: f"error: {exc or type(exc).__name__}" for key in keys}
        log(f"  {peer.name}: {', '.join(keys)} ({time.monotonic() - started:.1f}s)")
        return cells

    def measure(self, peer: Any, log: Any) -> dict[str, Any]:
        """Every scenario for ``peer``, one after another: a row of the table."""
        row: dict[str, Any] = {}
        for keys, step in self.steps(peer):
            row.update(self.attempt(peer, keys, step, log))
        return row
