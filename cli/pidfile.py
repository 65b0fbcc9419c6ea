"""The pid file of the local ``polyjobs start`` instance, in the state directory."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from polyjobs.errors import ConfigError

PID_FILE = "polyjobs.pid"


@dataclass(frozen=True, slots=True)
class PidInfo:
    pid: int
    backend: str
    started: float


def pid_path(home: Path) -> Path:
    return home / PID_FILE


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (an exited one waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read(home: Path) -> PidInfo | None:
    """The pid file's content, or None when there is none or it is unreadable."""
    path = pid_path(home)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return PidInfo(int(raw["pid"]), str(raw.get("backend", "")), float(raw.get("started", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(home: Path, backend: str) -> Path:
    """Claim the pid file; refuse when another live instance holds it (a stale one is replaced)."""
    home.mkdir(parents=True, exist_ok=True)
    current = read(home)
    if current is not None and current.pid != os.getpid() and alive(current.pid):
        raise ConfigError(
            f"polyjobs is already running here (pid {current.pid}, {pid_path(home)}); "
            "stop it with `polyjobs stop` or use another POLYJOBS_HOME"
        )
    path = pid_path(home)
    data = {"pid": os.getpid(), "backend": backend, "started": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
    return path


def remove(home: Path) -> None:
    """Remove the pid file if it is this process's."""
    current = read(home)
    if current is not None and current.pid == os.getpid():
        pid_path(home).unlink(missing_ok=True)
