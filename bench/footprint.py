"""Footprint: resident memory and idle CPU of the real `fireworks worker` and `fireworks
monitor` processes, beside a bare pika + pydantic process and the Celery worker."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench.celery_side import CeleryWorker
from bench.common import Child, Plan, idle_cpu, namespace, terminate, wait_for
from bus.local_broker import free_port

MB = 1024 * 1024


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


@contextlib.contextmanager
def _fireworks(url: str, workdir: Path, logs: Path) -> Iterator[tuple[int, int]]:
    """A real monitor (history and API on) and one real worker, as `fireworks` runs them
    (from a directory without a .env). Yields their process ids once the worker is online."""
    port = free_port()
    env = {
        **os.environ,
        "RABBITMQ_URL": url,
        "FIREWORKS_NAMESPACE": namespace("foot"),
        "HTTP_PORT": str(port),
        "FIREWORKS_DB": str(workdir / "footprint.db"),
        "WORKER_ID": "f1",
    }
    processes = []
    try:
        for kind in ("monitor", "worker"):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fireworks", kind],
                    cwd=workdir,
                    env=env,
                    stdout=(logs / f"footprint-{kind}.log").open("ab"),
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            if kind == "monitor":
                wait_for(lambda: _get(port, "/healthz")[0] == 200, 60, "the monitor's API")

        def worker_online() -> bool:
            status, body = _get(port, "/api/workers")
            workers = json.loads(body) if status == 200 else []
            return any(w["worker_id"] == "f1" and w["liveness"] == "online" for w in workers)

        wait_for(worker_online, 60, "the worker online")
        yield processes[0].pid, processes[1].pid
    finally:
        terminate(processes)


def measure(
    url: str, plan: Plan, workdir: Path, logs: Path, celery: CeleryWorker
) -> list[dict[str, float]]:
    """One dict per idle window: `<who>_rss_mb` and `<who>_cpu_pct` (of one core)."""
    bare = Child("bench.bare", [url], logs / "bare.log")
    try:
        bare.expect("ready", timeout=30)
        with _fireworks(url, workdir, logs) as (monitor_pid, worker_pid):
            who = {
                "worker": psutil.Process(worker_pid),
                "monitor": psutil.Process(monitor_pid),
                "bare": psutil.Process(bare.process.pid),
                "celery": psutil.Process(celery.process.pid),
            }
            windows = []
            for window in range(plan.repeat + 1):
                cpu = idle_cpu({name: [process] for name, process in who.items()}, plan.idle_window)
                figures = {f"{name}_cpu_pct": percent for name, percent in cpu.items()}
                for name, process in who.items():
                    figures[f"{name}_rss_mb"] = process.memory_info().rss / MB
                if window > 0:  # the first window lets start-up work settle
                    windows.append(figures)
            return windows
    finally:
        terminate([bare.process])
