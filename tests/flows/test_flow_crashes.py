"""Worker processes SIGKILLed in the middle of a 1,000-node flow (one top, 9 middle jobs, 990
leaves in another queue), on SQLite and on Redis: no node is lost, every value reaches its
parent, and the top job runs and completes once."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from polyjobs import FlowProducer, Queue, open_backend

WORKER = str(Path(__file__).with_name("flow_worker.py"))
MIDS, LEAVES = 9, 110
KILLS = 5


@pytest.mark.parametrize("backend_url", ["sqlite", "redis"], indirect=True)
async def test_sigkilled_workers_lose_no_node_of_a_flow(backend_url: str, tmp_path: Path) -> None:
    rng = random.Random(17)
    runs_file = tmp_path / "runs.txt"
    tree = {
        "name": "top",
        "queue": "fk-top",
        "opts": {"remove_on_complete": False},
        "children": [
            {
                "name": "mid",
                "opts": {"remove_on_complete": False},
                "children": [
                    {
                        "name": "leaf",
                        "queue": "fk-leaf",
                        "data": {"n": m * LEAVES + i, "sleep": rng.uniform(0.005, 0.03)},
                        "opts": {"remove_on_complete": False},
                    }
                    for i in range(LEAVES)
                ],
            }
            for m in range(MIDS)
        ],
    }

    def spawn() -> subprocess.Popen[bytes]:
        args = [sys.executable, WORKER, backend_url, str(runs_file)]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL)

    async with open_backend(backend_url) as backend:
        top = await FlowProducer(backend).add(tree)
        leaves, tops = Queue("fk-leaf", backend), Queue("fk-top", backend)
        procs = [spawn() for _ in range(3)]
        kills = 0
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await asyncio.sleep(0.4)
                left = await leaves.counts()
                if kills < KILLS and left["waiting"] + left["active"] > 0:
                    victim = rng.randrange(len(procs))
                    procs[victim].kill()
                    procs[victim].wait(5)
                    procs[victim] = spawn()
                    kills += 1
                job = await tops.require_job(top.job.id)
                if job.state == "completed":
                    break
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(5)
        assert kills >= 3, f"only {kills} kills: the flow finished before the test could kill"
        done = await tops.require_job(top.job.id)
        assert done.state == "completed", f"top is {done.state}"
        assert done.returnvalue == sum(range(MIDS * LEAVES))
        for mid in top.children:
            values = await (await tops.require_job(mid.job.id)).children_values()
            assert len(values) == LEAVES
        counts = await leaves.counts()
        assert (counts["completed"], counts["failed"], counts["waiting"]) == (MIDS * LEAVES, 0, 0)
        assert (await tops.counts())["completed"] == MIDS + 1
        ran = Counter(runs_file.read_text().split())
        assert ran[f"fk-top:{top.job.id}"] == 1
        assert len(ran) == 1 + MIDS + MIDS * LEAVES  # every node ran
