"""Make docs/board.png: a board over busy queues, shot in headless Chromium.

Run from the repository root: ``.venv/bin/python tests/board/make_screenshot.py docs/board.png``
(needs the board and browser extras and Debian's chromium + chromium-driver).
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from polyjobs import Job, Queue, Worker, open_backend
from polyjobs.board import BoardOptions, bind_socket, serve_board

QUEUES = {
    "polymarket-whale-updates": 0.0,
    "polymarket-anomaly-batch": 0.02,
    "polymarket-analysis": 0.08,
    "polymarket-alerts": 0.15,
}
SECONDS = 40


async def work(job: Job) -> dict[str, Any]:
    await job.log(f"processing {job.data}")
    await asyncio.sleep(random.uniform(0.01, 0.2))
    await job.update_progress(100)
    if random.random() < QUEUES[job.queue_name]:
        raise RuntimeError("Polymarket API answered 503")
    return {"checked": random.randint(1, 50)}


async def feed(backend: Any, stop: asyncio.Event) -> None:
    tick = 0
    while not stop.is_set():
        tick += 1
        for name in QUEUES:
            burst = int(abs(random.gauss(3, 2)) * (1 + (tick // 8) % 3))
            await Queue(name, backend).add_bulk(
                [("job", {"transactionId": f"0x{random.getrandbits(40):010x}"})] * burst
            )
        await asyncio.sleep(0.5)


def shoot(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,640",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        browser.get(url)
        browser.save_screenshot(str(out))
    finally:
        browser.quit()


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_backend(f"sqlite:///{Path(tmp) / 'board.db'}") as backend:
            for name in QUEUES:
                await Queue(name, backend).add("job", {"seed": True})
            await Queue("polymarket-alerts", backend).add("job", {"alertId": "a1"}, delay=600)
            sock = bind_socket("127.0.0.1", 0)
            port = sock.getsockname()[1]
            options = BoardOptions(
                backend_label="sqlite:///.polyjobs/polyjobs.db", sample_interval=1
            )
            server = asyncio.create_task(
                serve_board(backend, "127.0.0.1", port, options, sock=sock)
            )
            stop = asyncio.Event()
            workers = [Worker(name, work, backend, concurrency=4) for name in QUEUES]
            tasks = [asyncio.create_task(w.run()) for w in workers]
            feeder = asyncio.create_task(feed(backend, stop))
            await asyncio.sleep(SECONDS)
            stop.set()
            await feeder
            await Queue("polymarket-whale-updates", backend).pause()
            await asyncio.to_thread(shoot, f"http://127.0.0.1:{port}/admin/queues", out)
            for worker in workers:
                await worker.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
            sock.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/board.png")))
