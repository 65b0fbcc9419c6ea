"""Huey on SQLite: ``SqliteHuey`` (its defaults: WAL journal, no fsync per commit), a consumer
with ``workers`` = concurrency of type ``thread``, polling from 5 ms backing off to 100 ms when
idle (Huey's defaults are 100 ms to 10 s, far slower to pick up). Huey serializes with pickle
(no JSON option for its messages). No bulk API. ``--url`` is ``sqlite:///<path>``."""

from __future__ import annotations

from typing import Any

from _bench import REC, drive_sync, job_data, parse_args
from huey import SqliteHuey


def main() -> None:
    args = parse_args()
    huey = SqliteHuey("bench", filename=args.url.removeprefix("sqlite:///"))

    @huey.task()
    def noop(data: dict[str, float]) -> None:
        REC.hit(data)

    def add_one() -> None:
        noop(job_data())

    def run_worker(concurrency: int) -> Any:
        consumer = huey.create_consumer(
            workers=concurrency,
            worker_type="thread",
            initial_delay=0.005,
            backoff=1.15,
            max_delay=0.1,
            periodic=False,
        )
        consumer.run()

    drive_sync(args, add_one, run_worker)


if __name__ == "__main__":
    main()
