"""Huey: ``RedisHuey`` (blocking BRPOP), consumer with ``workers`` = concurrency of type
``thread``. Huey serializes with pickle (no JSON option for its messages). No bulk API."""

from __future__ import annotations

from typing import Any

from _bench import REC, drive_sync, job_data, parse_args
from huey import RedisHuey


def main() -> None:
    args = parse_args()
    huey = RedisHuey("bench", url=args.url)

    @huey.task()
    def noop(data: dict[str, float]) -> None:
        REC.hit(data)

    def add_one() -> None:
        noop(job_data())

    def run_worker(concurrency: int) -> Any:
        consumer = huey.create_consumer(workers=concurrency, worker_type="thread")
        consumer.run()

    drive_sync(args, add_one, run_worker)


if __name__ == "__main__":
    main()
