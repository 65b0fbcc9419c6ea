"""`polyjobs start --metrics-port`: Prometheus metrics from the process that runs the jobs,
scraped over HTTP while its jobs run."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.support import POLYJOBS, add_jobs


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(
    url: str, check: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + 20
    while True:
        found = scrape(url)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_start_serves_metrics_of_its_own_work(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "POLYJOBS_HOME": str(tmp_path / "state"),
        "POLYJOBS_PLUGINS": "polyjobs_test_plugin",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    env.pop("POLYJOBS_BACKEND", None)
    env.pop("REDIS_URL", None)
    add_jobs(env, "test-slow", [{"seconds": 0.5} for _ in range(3)])
    proc = subprocess.Popen(
        [POLYJOBS, "start", "-q", "slow", "--no-schedule", "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"metrics on (http://\S+/metrics)", line)
            url = found.group(1) if found else None
        assert url is not None, "the metrics server did not announce its URL"
        online = ("polyjobs_workers_online", (("queue", "test-slow"),))
        during = wait_for(url, lambda m: m.get(online) == 1)
        assert during[online] == 1
        assert during[("polyjobs_backend_up", ())] == 1
        done = ("polyjobs_jobs_completed_total", (("queue", "test-slow"),))
        after = wait_for(url, lambda m: m.get(done) == 3)
        assert after[done] == 3
        count = (
            "polyjobs_job_processing_seconds_count",
            (("queue", "test-slow"), ("state", "completed")),
        )
        assert after[count] == 3
        total = (
            "polyjobs_job_processing_seconds_sum",
            (("queue", "test-slow"), ("state", "completed")),
        )
        assert after[total] >= 3 * 0.45
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
