"""Contract: the control channel (``control``): commands to every process, e.g. stop-all."""

from __future__ import annotations

import asyncio
import json
import time

from polyjobs.backend import CAP_CONTROL, Backend, controller
from polyjobs.control import request_stop_all, wait_until_no_workers
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.runtime import QueueSpec, Runtime
from polyjobs.testing.support import WAIT, ContractBase
from polyjobs.worker import WorkerOptions


class ControlContract(ContractBase):
    async def test_messages_are_ordered_and_filtered_by_time(self, backend: Backend) -> None:
        self.require(backend, CAP_CONTROL)
        channel = controller(backend)
        since = time.time() - 0.001
        first = await channel.send_control("ping", json.dumps({"n": 1}))
        second = await channel.send_control("ping", json.dumps({"n": 2}))
        assert second.at > first.at >= since
        mine = [m for m in await channel.control_messages(since) if m.at >= first.at]
        assert [(m.command, json.loads(m.payload_json)["n"]) for m in mine][:2] == [
            ("ping", 1),
            ("ping", 2),
        ]
        assert [m.at for m in await channel.control_messages(second.at)] == []

    async def test_a_stop_request_stops_every_runtime(self, backend: Backend, queue: Queue) -> None:
        """Two runtimes (two 'machines') on one backend leave the registry after stop-all;
        the job in progress finishes within the grace."""
        self.require(backend, CAP_CONTROL)
        finished: list[str] = []

        async def slow(job: Job) -> None:
            await asyncio.sleep(0.5)
            finished.append(job.id)

        options = WorkerOptions(heartbeat_interval=0.2, block=0.2, stalled_interval=0.5)
        runtimes = [
            Runtime([QueueSpec(queue.name, slow)], backend, worker_options=options)
            for _ in range(2)
        ]
        runs = [asyncio.create_task(r.run(grace=5)) for r in runtimes]
        try:
            job = await queue.add("slow", {})
            await asyncio.sleep(0.5)  # let both register and one take the job
            await request_stop_all(backend, grace=5, requested_by="contract test")
            left = await wait_until_no_workers(backend, [queue.name], timeout=WAIT)
            assert left == []
            await asyncio.wait_for(asyncio.gather(*runs), WAIT)
        finally:
            for task in runs:
                task.cancel()
        assert finished == [job.id]
        assert (await queue.counts())["active"] == 0
