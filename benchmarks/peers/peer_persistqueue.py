"""persist-queue's ``SQLiteAckQueue``: a persistent queue (not a task runner: no retries,
schedules or results) whose items are taken with ``get`` and acknowledged with ``ack``; the
worker is ``concurrency`` threads in a loop of ``get``, the no-op, ``ack``. A blocking ``get``
sees another process's ``put`` only every 10 s (it waits on an in-process event), so the threads
poll instead, from 5 ms backing off to 100 ms when idle (as polyjobs' SQLite workers watch for
other processes' commits). Items are pickled by the library. No bulk API. ``--url`` is
``sqlite:///<path>``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from _bench import REC, drive_sync, job_data, parse_args
from persistqueue import Empty, SQLiteAckQueue


def main() -> None:
    args = parse_args()
    path = Path(args.url.removeprefix("sqlite:///"))
    queue = SQLiteAckQueue(str(path.parent), db_file_name=path.name, multithreading=True)

    def add_one() -> None:
        queue.put(job_data())

    def take_forever() -> None:
        idle = 0.005
        while True:
            try:
                item = queue.get(block=False)
            except Empty:
                time.sleep(idle)
                idle = min(idle * 1.15, 0.1)
                continue
            idle = 0.005
            REC.hit(item)
            queue.ack(item)

    def run_worker(concurrency: int) -> Any:
        for _ in range(concurrency):
            threading.Thread(target=take_forever, daemon=True).start()

    drive_sync(args, add_one, run_worker)


if __name__ == "__main__":
    main()
