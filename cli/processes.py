"""``polyjobs start --processes N``: one parent supervising N worker processes.

Each child is the same ``polyjobs start`` (same queues, same backend, same flags) started again
through :mod:`subprocess` with :data:`SUPERVISED` set to its slot number: no fork of a running
event loop, nothing pickled. The parent

- refuses a backend that lives inside one process (``memory://``: no ``shared`` capability),
  and opens the backend once before the children start (a SQLite file or a PostgreSQL schema is
  created or migrated once, not by N processes racing);
- prints each child's output line by line prefixed with ``[worker I]`` (JSON lines pass through
  as they are, each already a whole object), and one line per child start and exit; on a
  terminal these print above the parent's live view (:mod:`polyjobs.cli.parent`);
- restarts a child that exits without being asked to, after 0.5 s doubling up to 30 s; the delay
  starts again from 0.5 s once a child has run 60 s. A child that fails within its first two
  seconds on its first start (a configuration error: its own line says which) ends the whole;
- on SIGINT/SIGTERM sends SIGTERM to every child (a second signal is forwarded too: the children
  then stop at once), waits the grace period plus :data:`STOP_MARGIN`, then SIGKILLs what is left;
- with ``--burst`` waits until every child has exited by itself.

Children run in their own process group, so that a Ctrl-C on the terminal reaches only the parent
(which forwards one SIGTERM) rather than every process at once; a child whose parent went away
(SIGKILLed) stops itself gracefully (:func:`watch_parent`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from polyjobs.cli.console import Console

#: Set in a child's environment to its slot number (1..N); the child then runs one worker.
SUPERVISED = "POLYJOBS_SUPERVISED_WORKER"
#: Set by a supervising ``start --demo`` to where it prepared the demo (JSON), for its workers.
SUPERVISED_DEMO = "POLYJOBS_SUPERVISED_DEMO"
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
RESET_AFTER = 60.0
EARLY_FAILURE = 2.0
#: How long after the grace period the parent waits before it SIGKILLs the children.
STOP_MARGIN = 5.0
CHILD_MAIN = "from polyjobs.cli.app import main; main()"


def supervised_slot() -> int | None:
    """This process's slot when a supervising ``start`` started it, else None."""
    value = os.environ.get(SUPERVISED, "")
    return int(value) if value.isdigit() else None


def watch_parent() -> None:
    """In a child: SIGTERM ourselves (a graceful stop) once the parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="polyjobs-parent-watch", daemon=True).start()


@dataclass(slots=True)
class Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    starts: int = 0
    delay: float = 0.0
    next_start: float = 0.0
    done: bool = False
    last_exit: str = ""
    pumps: list[threading.Thread] = field(default_factory=list)

    def state(self, stopping: bool, now: float) -> str:
        """What the live view says of this slot."""
        if self.proc is not None:
            return "stopping" if stopping else "up"
        if self.done or stopping:
            return f"exited ({self.last_exit})" if self.last_exit else "exited"
        if not self.starts:
            return "starting"
        return f"restarting in {max(self.next_start - now, 0.0):.1f}s ({self.last_exit})"


class Supervisor:
    """Run ``args`` (``start ...``) in ``count`` children until stopped (see the module doc)."""

    def __init__(
        self,
        console: Console,
        args: list[str],
        count: int,
        *,
        burst: bool,
        grace: float,
        json_lines: bool,
    ) -> None:
        self.console = console
        self.args = args
        self.slots = [Slot(i + 1) for i in range(count)]
        self.burst = burst
        self.grace = grace
        self.json_lines = json_lines
        self.signals = 0
        self.forwarded = 0
        self.kill_at: float | None = None
        self.failure: int | None = None
        self.out_lock = threading.Lock()

    # -- output -------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        with self.out_lock:
            if self.json_lines:
                self.console.note(text)
            else:
                self.console.line(text)

    def _pump(self, index: int, stream: IO[bytes], out: Any) -> None:
        prefix = b"" if self.json_lines else f"[worker {index}] ".encode()
        writing = True
        for line in iter(stream.readline, b""):
            if not writing:
                continue  # keep draining: a child must never block on a full pipe
            try:
                if self.console.live_console is not None:  # above the live view, as text
                    self.console.note((prefix + line).decode(errors="replace").rstrip("\n"))
                    continue
                with self.out_lock:
                    out.buffer.write(
                        prefix + line if line.endswith(b"\n") else prefix + line + b"\n"
                    )
                    out.flush()
            except (OSError, ValueError):  # our own output went away (a closed pipe)
                writing = False
        stream.close()

    # -- children -----------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        env = {**os.environ, SUPERVISED: str(slot.index), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_MAIN, *self.args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
        slot.proc, slot.started, slot.starts = proc, time.monotonic(), slot.starts + 1
        assert proc.stdout is not None and proc.stderr is not None
        slot.pumps = [
            threading.Thread(target=self._pump, args=(slot.index, s, o), daemon=True)
            for s, o in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
        ]
        for pump in slot.pumps:
            pump.start()
        again = "" if slot.starts == 1 else f" (start {slot.starts})"
        self.say(f"polyjobs: worker {slot.index} started, pid {proc.pid}{again}")

    def _reap(self, slot: Slot, code: int) -> None:
        proc = slot.proc
        assert proc is not None
        for pump in slot.pumps:
            pump.join(timeout=2)
        ran = time.monotonic() - slot.started
        slot.proc = None
        how = f"signal {-code}" if code < 0 else f"code {code}"
        slot.last_exit = how
        if self.signals or (self.burst and code == 0):
            slot.done = True
            self.say(f"polyjobs: worker {slot.index} (pid {proc.pid}) exited ({how})")
            return
        if slot.starts == 1 and code > 0 and ran < EARLY_FAILURE:
            slot.done = True
            self.failure = code
            self.say(
                f"polyjobs: worker {slot.index} (pid {proc.pid}) failed at start ({how});"
                " stopping the others"
            )
            return
        slot.delay = FIRST_DELAY if ran >= RESET_AFTER or not slot.delay else slot.delay * 2
        slot.delay = min(slot.delay, MAX_DELAY)
        slot.next_start = time.monotonic() + slot.delay
        self.say(
            f"polyjobs: worker {slot.index} (pid {proc.pid}) exited ({how}) after {ran:.1f}s;"
            f" restarting in {slot.delay:g}s"
        )

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1

    def _forward(self) -> None:
        """Forward each signal received so far as one SIGTERM to every live child."""
        while self.forwarded < self.signals:
            self.forwarded += 1
            if self.forwarded == 1:
                self.say(
                    f"polyjobs: stopping {sum(s.proc is not None for s in self.slots)} worker(s),"
                    f" waiting up to {self.grace:g}s; a second signal stops them at once"
                )
                self.kill_at = time.monotonic() + self.grace + STOP_MARGIN
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Supervise until every child is done; the exit code of the whole."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            return self._loop()
        finally:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> int:
        while True:
            if self.failure is not None and not self.signals:
                self.signals = 1
            if self.signals:
                self._forward()
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None:
                    code = slot.proc.poll()
                    if code is not None:
                        self._reap(slot, code)
                elif not slot.done and not self.signals and now >= slot.next_start:
                    self._spawn(slot)
                elif self.signals:
                    slot.done = True
            if all(s.done and s.proc is None for s in self.slots):
                return self.failure or 0
            if self.kill_at is not None and now >= self.kill_at:
                self._kill_left()
            time.sleep(0.05)

    def _kill_left(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                self.say(
                    f"polyjobs: worker {slot.index} (pid {slot.proc.pid}) did not stop"
                    " within the grace; killing it"
                )
                slot.proc.kill()
        self.kill_at = None
