"""A worker process loads only what a worker needs: the monitor's stack (FastAPI,
uvicorn, SQLite, Prometheus) and a TLS context are the monitor's and amqps' alone
(they were 13 MB and a quarter second of every worker's start)."""

from __future__ import annotations

import subprocess
import sys

WORKER_BUILD = """
import sys
from bus.settings import Settings
from fireworks.cli import build
settings = Settings(_env_file=None, rabbitmq_url="amqp://guest:guest@127.0.0.1:1/%2F",
                    worker_id="w1")
bus, service = build(settings, "worker")
assert bus._ssl_options_for is None, "a TLS context for a plain amqp broker"
print(" ".join(sorted(name for name in sys.modules if "." not in name)))
"""


def test_a_worker_loads_nothing_of_the_monitor() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_BUILD], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"pika", "pydantic", "workers"} <= loaded  # it did build a worker
    assert not loaded & {"fastapi", "uvicorn", "starlette", "sqlite3", "prometheus_client"}
