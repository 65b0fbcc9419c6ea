"""Celery on the Redis broker: ``solo`` pool at concurrency 1, ``threads`` pool otherwise; JSON
serializer, results ignored, no heartbeat/gossip/mingle. No bulk enqueue API."""

from __future__ import annotations

from typing import Any

from _bench import REC, drive_sync, job_data, parse_args
from celery import Celery


def main() -> None:
    args = parse_args()
    app = Celery("bench", broker=args.url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )

    @app.task(name="noop")
    def noop(data: dict[str, float]) -> None:
        REC.hit(data)

    def add_one() -> None:
        noop.delay(job_data())

    def run_worker(concurrency: int) -> Any:
        pool = "solo" if concurrency == 1 else "threads"
        app.worker_main(
            [
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ]
        )

    drive_sync(args, add_one, run_worker)


if __name__ == "__main__":
    main()
