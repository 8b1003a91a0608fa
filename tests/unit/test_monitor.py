"""The monitor service fed deliveries off the broker, with a real history database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.codec import CONTENT_TYPE, encode
from bus.connection import Delivery
from models.messages import Goodbye, Registration, Status
from models.worker_model import Worker
from monitor.monitor import MonitorService
from monitor.store import HistoryStore
from unit.offline import OfflineBus, offline_settings

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OLD, NEW = T0 - timedelta(hours=1), T0  # two processes of one worker, by start time


@pytest.fixture
def monitor(store: HistoryStore) -> MonitorService:
    return MonitorService(offline_settings(), OfflineBus(), store)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(str(tmp_path / "history.db"), retention=86_400)
    yield store
    store.close()


def worker(active: bool, activity: int) -> Worker:
    return Worker(worker_id="w1", active=active, activity=activity, timestamp=T0)


def deliver(monitor: MonitorService, message: Registration | Goodbye | Status) -> None:
    """`message` as it reaches the monitor from worker w1 (routing key and all)."""
    topology = monitor.topology
    if isinstance(message, Status):
        body = encode(message)
        monitor.on_status(Delivery(body, "", topology.status_key("w1"), CONTENT_TYPE))
    else:
        key = topology.lifecycle_key(message.kind, "w1")
        monitor.on_lifecycle(Delivery(encode(message), "", key, CONTENT_TYPE))


def registration(started_at: datetime) -> Registration:
    return Registration(state=worker(True, 0), status_interval=2.0, started_at=started_at)


def report(started_at: datetime, active: bool, activity: int) -> Status:
    return Status(seq=1, state=worker(active, activity), status_interval=2.0, started_at=started_at)


def samples(store: HistoryStore) -> list[tuple[bool, int]]:
    store._flush()  # what the writer thread does once per flush interval
    return [(s.active, s.activity) for s in store.samples("w1")]


def test_a_late_status_of_a_process_since_restarted_is_not_kept_as_history(
    monitor: MonitorService, store: HistoryStore
) -> None:
    deliver(monitor, registration(OLD))
    deliver(monitor, registration(NEW))
    deliver(monitor, report(OLD, False, 40))  # the old process's last report, heard late
    deliver(monitor, report(NEW, True, 1))
    assert samples(store) == [(True, 1)]


def test_a_status_overtaken_by_a_goodbye_is_not_kept_as_history(
    monitor: MonitorService, store: HistoryStore
) -> None:
    deliver(monitor, registration(NEW))
    deliver(monitor, Goodbye(state=worker(False, 7)))
    deliver(monitor, report(NEW, True, 6))  # sent before the goodbye, heard after it
    assert samples(store) == []
