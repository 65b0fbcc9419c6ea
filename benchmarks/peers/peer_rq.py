"""RQ: ``SimpleWorker`` (runs jobs in the worker process, no fork per job), ``JSONSerializer``
instead of the default pickle, ``enqueue_many`` (one pipeline) for bulk. RQ has no in-process
concurrency, so only concurrency 1 is measured."""

from __future__ import annotations

from typing import Any

from _bench import REC, drive_sync, finish, job_data, parse_args
from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

FUNC = "peer_rq.noop"


def noop(data: dict[str, float]) -> None:
    REC.hit(data)


def main() -> None:
    args = parse_args()
    redis = Redis.from_url(args.url)
    queue = Queue("bench", connection=redis, serializer=JSONSerializer)

    def add_one() -> None:
        queue.enqueue(FUNC, job_data())

    def add_many(size: int) -> None:
        queue.enqueue_many([Queue.prepare_data(FUNC, (job_data(),)) for _ in range(size)])

    def run_worker(concurrency: int) -> Any:
        if concurrency != 1:
            finish({"unsupported": "no in-process concurrency (SimpleWorker runs one job)"})
        worker = SimpleWorker([queue], connection=redis, serializer=JSONSerializer)
        worker.work(logging_level="WARNING")

    drive_sync(args, add_one, run_worker, add_many, "enqueue_many")


if __name__ == "__main__":
    main()
