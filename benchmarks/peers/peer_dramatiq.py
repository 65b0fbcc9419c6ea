"""Dramatiq: ``RedisBroker``, one worker process with ``worker_threads`` = concurrency, default
middleware, JSON (its default encoder), ``worker_timeout`` 100 ms instead of 1 s (an idle consumer
polls with backoff up to it). No bulk enqueue API."""

from __future__ import annotations

from typing import Any

import dramatiq
from _bench import REC, drive_sync, job_data, parse_args
from dramatiq.brokers.redis import RedisBroker


def main() -> None:
    args = parse_args()
    broker = RedisBroker(url=args.url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="bench", max_retries=0)
    def noop(data: dict[str, float]) -> None:
        REC.hit(data)

    def add_one() -> None:
        noop.send(job_data())

    def run_worker(concurrency: int) -> Any:
        worker = dramatiq.Worker(broker, worker_threads=concurrency, worker_timeout=100)
        worker.start()

    drive_sync(args, add_one, run_worker)


if __name__ == "__main__":
    main()
