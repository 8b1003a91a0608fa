"""The monitor service fed deliveries off the broker, with a real history database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.codec import CONTENT_TYPE, encode
from bus.connection import Delivery
from models.messages import Registration, Status
from models.worker_model import Worker
from monitor.monitor import MonitorService
from monitor.store import HistoryStore
from unit.offline import OfflineBus, offline_settings

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OLD, NEW = T0 - timedelta(hours=1), T0  # two processes of one worker, by start time


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(str(tmp_path / "history.db"), retention=86_400)
    yield store
    store.close()


def worker(active: bool, activity: int) -> Worker:
    return Worker(worker_id="w1", active=active, activity=activity, timestamp=T0)


def test_a_late_status_of_a_process_since_restarted_is_not_kept_as_history(
    store: HistoryStore,
) -> None:
    monitor = MonitorService(offline_settings(), OfflineBus(), store)
    topology = monitor.topology

    def register(started_at: datetime) -> None:
        message = Registration(state=worker(True, 0), status_interval=2.0, started_at=started_at)
        key = topology.lifecycle_key(message.kind, "w1")
        monitor.on_lifecycle(Delivery(encode(message), "", key, CONTENT_TYPE))

    def report(started_at: datetime, active: bool, activity: int) -> None:
        message = Status(
            seq=1, state=worker(active, activity), status_interval=2.0, started_at=started_at
        )
        monitor.on_status(Delivery(encode(message), "", topology.status_key("w1"), CONTENT_TYPE))

    register(OLD)
    register(NEW)
    report(OLD, False, 40)  # the old process's last report, heard late
    report(NEW, True, 1)
    store._flush()

    assert [(s.active, s.activity) for s in store.samples("w1")] == [(True, 1)]
