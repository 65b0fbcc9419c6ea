"""Your own jobs: an application of a few lines, run by ``polyjobs start -A examples.myjobs``.

polyjobs enqueue -A examples.myjobs resize --data '{"path": "cat.png", "width": 320}'
polyjobs enqueue -A examples.myjobs greet --data '{"name": "Ada"}'
polyjobs start -A examples.myjobs --burst      # runs them, then stops
polyjobs stats -A examples.myjobs
"""

from __future__ import annotations

import asyncio
from typing import Any

from polyjobs import App, InvalidArgumentError, Job

app = App("myjobs")


def _needs_path(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise InvalidArgumentError('resize needs {"path": "...", "width": N}')


@app.queue(concurrency=4, attempts=3, timeout="30s", validate=_needs_path)
async def resize(job: Job) -> dict[str, Any]:
    """Make a thumbnail (an async processor: many run at once on one event loop)."""
    await asyncio.sleep(0.01)  # a real one would await an image service here
    width = int(job.data.get("width", 128))
    return {"thumbnail": f"{job.data['path']}@{width}w"}


@app.queue(attempts=2)
def greet(job: Job) -> str:
    """Say hello (a plain function runs in a worker thread)."""
    return f"hello, {job.data.get('name', 'world')}"
