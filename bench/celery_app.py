"""The Celery app of the peer benchmark: one trivial task, the run's private broker
(`BENCH_CELERY_BROKER`). Its worker is run as `celery -A bench.celery_app worker`."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://127.0.0.1//"))
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Never called: it exists so that `rate_limit` has a task to change."""
