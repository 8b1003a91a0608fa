"""The peer: a real Celery 5 worker process (`celery worker --pool solo`: one process,
like one Fireworks worker) on the same broker, asked over Celery's remote control."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.celery_app import app
from bench.common import ROOT, percentile, terminate, wait_for

NODE = "bench@localhost"
POOL = "solo"


class CeleryWorker:
    def __init__(self, url: str, logs: Path) -> None:
        app.conf.broker_url = url  # the bench's side of the remote control
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool",
            POOL,
            "--hostname",
            NODE,
            "--loglevel",
            "WARNING",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "BENCH_CELERY_BROKER": url},
            stdout=(logs / "celery-worker.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._answers, 60, "the Celery worker to answer a ping")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError("the Celery worker exited; see celery-worker.log")
        return bool(app.control.ping(destination=[NODE], limit=1, timeout=0.5))

    def close(self) -> None:
        terminate([self.process])


def _timed(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    for i in range(count + 10):
        started = time.perf_counter()
        replies = call()
        elapsed = time.perf_counter() - started
        if not replies:
            raise RuntimeError("the Celery worker did not reply")
        if i >= 10:  # the first ten warm up
            samples.append(elapsed * 1000)
    return samples


def round_trips(count: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """`control.ping(destination=[one], limit=1)`, and `rate_limit` with a reply."""
    ping = _timed(lambda: app.control.ping(destination=[NODE], limit=1, timeout=2.0), count)
    control = _timed(
        lambda: app.control.rate_limit(
            "bench.noop", "1000/s", destination=[NODE], reply=True, limit=1, timeout=2.0
        ),
        count,
    )
    figures = {
        "ping_p50": percentile(ping, 50),
        "ping_p99": percentile(ping, 99),
        "control_p50": percentile(control, 50),
        "control_p99": percentile(control, 99),
    }
    return figures, {"celery_ping": ping, "celery_rate_limit": control}
