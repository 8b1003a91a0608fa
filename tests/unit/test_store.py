"""HistoryStore on a real SQLite file in a temp dir: schema, batched writes, reads,
downsampling, desired state, a failing database, the backlog bound, retention."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from harness import wait_for

import monitor.store as store_module
from bus.errors import SettingsError
from models.monitor_model import EventKind, FleetEvent, Liveness, Remembered, Wish
from models.worker_model import FLEET, utc_now
from monitor.store import MIGRATIONS, HistoryStore, connect, migrate

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DAY = 24 * 3600.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    kind: EventKind, worker_id: str | None, when: datetime, **detail: str | int | bool
) -> FleetEvent:
    return FleetEvent(at=when, kind=kind, worker_id=worker_id, detail=detail)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "sub" / "history.db")  # the store makes the folder


# The writer thread of these stores, when started, flushes hourly (or soon after a wish).
IDLE = 3600.0


@pytest.fixture
def store(db_path: str) -> Iterator[HistoryStore]:
    """A store whose writer thread is not started: the test flushes by hand, and close()
    flushes what is left."""
    history = HistoryStore(db_path, retention=3650 * DAY, sample_every=5.0, flush_interval=IDLE)
    try:
        yield history
    finally:
        history.close()


def tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(name) for (name,) in rows}


# -- schema ---------------------------------------------------------------------------


def test_migrate_creates_the_schema_at_the_latest_version_and_is_idempotent(
    tmp_path: Path,
) -> None:
    connection = connect(str(tmp_path / "fresh.db"))
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 0
        assert migrate(connection) == len(MIGRATIONS)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert {"workers", "events", "samples", "desired"} <= tables(connection)
        with connection:
            connection.execute("INSERT INTO desired (target, active) VALUES ('w1', 1)")
        # Again: nothing re-run (CREATE TABLE would fail), nothing lost.
        assert migrate(connection) == len(MIGRATIONS)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert connection.execute("SELECT target, active FROM desired").fetchall() == [("w1", 1)]
    finally:
        connection.close()


def test_reopening_a_store_keeps_what_was_written(db_path: str) -> None:
    first = HistoryStore(db_path, retention=3650 * DAY, flush_interval=IDLE)
    first.start()
    first.record(event(EventKind.REGISTERED, "w1", at(0)))
    first.desire("w1", Wish(True, 1))
    first.close()  # close flushes what is still batched
    second = HistoryStore(db_path, retention=3650 * DAY, flush_interval=IDLE)
    second.start()
    try:
        assert [e.kind for e in second.events()] == [EventKind.REGISTERED]
        assert second.desired() == (None, {"w1": Wish(True, 1)})
        assert second.known("w1")
    finally:
        second.close()


# -- events --------------------------------------------------------------------------


def test_nothing_is_readable_before_a_flush_and_everything_after(store: HistoryStore) -> None:
    store.record(event(EventKind.REGISTERED, "w1", at(0)))
    assert store.events() == []  # batched, not yet written
    assert not store.known("w1")
    store._flush()
    assert [e.kind for e in store.events()] == [EventKind.REGISTERED]
    assert store.known("w1")


def test_events_read_back_in_order_with_all_their_fields(store: HistoryStore) -> None:
    command_id = uuid4()
    written = [
        event(EventKind.REGISTERED, "w1", at(0), active=False, activity=0, restarted=False),
        FleetEvent(
            at=at(1),
            kind=EventKind.COMMAND_SENT,
            worker_id="w1",
            command_id=command_id,
            detail={"active": True, "awaiting": 1},
        ),
        FleetEvent(
            at=at(2),
            kind=EventKind.ACKNOWLEDGED,
            worker_id="w1",
            command_id=command_id,
            latency_ms=4.25,
            detail={"outcome": "applied", "diff": "active: False -> True"},
        ),
        event(EventKind.ACTIVATED, "w1", at(2.5)),
    ]
    for item in written:
        store.record(item)
    store._flush()
    assert store.events() == written


def test_events_filter_by_since_and_until_inclusive(store: HistoryStore) -> None:
    for second in range(5):
        store.record(event(EventKind.ACTIVATED, "w1", at(second), n=second))
    store._flush()

    def numbers(since: datetime | None = None, until: datetime | None = None) -> list[object]:
        return [e.detail["n"] for e in store.events(since, until)]

    assert numbers(since=at(2)) == [2, 3, 4]
    assert numbers(until=at(2)) == [0, 1, 2]
    assert numbers(since=at(1), until=at(3)) == [1, 2, 3]
    assert numbers(since=at(1.5), until=at(1.9)) == []
    # Another zone for the same instants: the same answer (stored in UTC).
    plus_two = at(1).astimezone(timezone(timedelta(hours=2)))
    assert numbers(since=plus_two, until=at(3)) == [1, 2, 3]


def test_events_for_a_worker_include_the_fleets_but_not_other_workers(
    store: HistoryStore,
) -> None:
    store.record(event(EventKind.REGISTERED, "w1", at(0)))
    store.record(event(EventKind.REGISTERED, "w2", at(1)))
    store.record(event(EventKind.COMMAND_SENT, FLEET, at(2)))
    store.record(event(EventKind.ACTIVATED, "w2", at(3)))
    store.record(event(EventKind.ACTIVATED, "w1", at(4)))
    store._flush()
    assert [(e.worker_id, e.kind) for e in store.events(worker_id="w1")] == [
        ("w1", EventKind.REGISTERED),
        (FLEET, EventKind.COMMAND_SENT),
        ("w1", EventKind.ACTIVATED),
    ]
    assert len(store.events()) == 5
    assert [e.worker_id for e in store.events(worker_id="nobody")] == [FLEET]


def test_events_limit_keeps_the_latest_in_order(store: HistoryStore) -> None:
    for second in range(10):
        store.record(event(EventKind.ACTIVATED, "w1", at(second), n=second))
    store._flush()
    assert [e.detail["n"] for e in store.events(limit=3)] == [7, 8, 9]


def test_events_and_samples_mark_the_worker_as_known_but_fleet_events_do_not(
    store: HistoryStore,
) -> None:
    store.record(event(EventKind.COMMAND_SENT, FLEET, at(0)))
    store.sample("w2", at(0), active=False, activity=0)
    store._flush()
    assert not store.known(FLEET)
    assert store.known("w2")
    assert not store.known("w3")


def test_remembered_workers_have_the_liveness_of_their_last_liveness_event(
    store: HistoryStore,
) -> None:
    for kind, worker_id, second in [
        (EventKind.REGISTERED, "online", 0),
        (EventKind.ACTIVATED, "online", 3),  # not a liveness event
        (EventKind.REGISTERED, "lost", 0),
        (EventKind.LOST, "lost", 6),
        (EventKind.REGISTERED, "back", 0),
        (EventKind.LOST, "back", 6),
        (EventKind.RECONNECTED, "back", 8),
        (EventKind.REGISTERED, "left", 0),
        (EventKind.OFFLINE, "left", 7),
        (EventKind.REGISTERED, "forgotten", 0),
        (EventKind.FORGOTTEN, "forgotten", 9),
        (EventKind.REGISTERED, "long-gone", -100),
    ]:
        store.record(event(kind, worker_id, at(second)))
    store.sample("sampled", at(4), active=True, activity=3)  # its events pruned long ago
    store._flush()
    assert store.remembered(since=at(-10)) == [
        Remembered("back", at(8), Liveness.ONLINE),
        Remembered("left", at(7), Liveness.OFFLINE),
        Remembered("lost", at(6), Liveness.LOST),
        Remembered("online", at(3), Liveness.ONLINE),
        Remembered("sampled", at(4), Liveness.ONLINE),
    ]


def test_each_workers_last_liveness_event_is_found_through_its_index(tmp_path: Path) -> None:
    # Not a scan of every event of every worker: a long history must not slow a restart.
    connection = connect(str(tmp_path / "plan.db"))
    try:
        migrate(connection)
        query = (
            "SELECT kind FROM events WHERE events.worker_id = 'w1' "
            f"AND {store_module.LIVENESS_EVENTS} ORDER BY id DESC LIMIT 1"
        )
        plan = " ".join(str(row[-1]) for row in connection.execute("EXPLAIN QUERY PLAN " + query))
    finally:
        connection.close()
    assert "INDEX events_liveness" in plan, plan


# -- samples -------------------------------------------------------------------------


def test_samples_are_kept_at_most_once_per_sample_every_per_worker(
    store: HistoryStore,
) -> None:
    assert store.sample_every == timedelta(seconds=5)
    for second, activity in [(0, 0), (1, 2), (4.9, 9), (5, 10), (7, 14), (10.5, 21)]:
        store.sample("w1", at(second), active=True, activity=activity)
    store.sample("w2", at(1), active=False, activity=0)  # w1's samples do not hold w2 back
    store._flush()
    assert [(s.at, s.activity) for s in store.samples("w1")] == [
        (at(0), 0),
        (at(5), 10),
        (at(10.5), 21),
    ]
    assert [(s.at, s.active, s.activity) for s in store.samples("w2")] == [(at(1), False, 0)]


def test_a_forgotten_worker_leaves_no_wish_and_no_sample_memory(store: HistoryStore) -> None:
    store.desire("w1", Wish(True, 1))
    store.desire("w2", Wish(True, 2))
    store.sample("w1", at(0), active=True, activity=0)
    store.forget("w1")
    # The same id back at once is a new worker: its first status is sampled.
    store.sample("w1", at(2), active=False, activity=0)
    store._flush()
    assert store.desired() == (None, {"w2": Wish(True, 2)})
    assert [s.at for s in store.samples("w1")] == [at(0), at(2)]


def test_samples_filter_by_time_and_limit_keeps_the_latest(store: HistoryStore) -> None:
    for step in range(6):
        store.sample("w1", at(step * 5), active=True, activity=step)
    store._flush()
    assert [s.activity for s in store.samples("w1", since=at(10))] == [2, 3, 4, 5]
    assert [s.activity for s in store.samples("w1", until=at(10))] == [0, 1, 2]
    assert [s.activity for s in store.samples("w1", limit=2)] == [4, 5]
    assert store.samples("nobody") == []


def test_the_fleets_samples_are_read_at_once_in_time_order(store: HistoryStore) -> None:
    for step in range(4):
        store.sample("w2", at(step * 5), active=False, activity=0)
        store.sample("w10", at(step * 5 + 1), active=True, activity=step)
    store._flush()
    fleet = store.samples()
    assert [(s.worker_id, s.at) for s in fleet] == sorted(
        ((s.worker_id, s.at) for s in fleet), key=lambda pair: pair[1]
    )
    assert [s.worker_id for s in fleet] == ["w2", "w10"] * 4
    assert [s for s in fleet if s.worker_id == "w10"] == store.samples("w10")
    # The newest of the fleet's, whoever's they are; then a window of time.
    assert [(s.worker_id, s.at) for s in store.samples(limit=3)] == [
        ("w10", at(11)),
        ("w2", at(15)),
        ("w10", at(16)),
    ]
    window = store.samples(since=at(6), until=at(15))
    assert [s.at for s in window] == [at(6), at(10), at(11), at(15)]


def test_the_fleets_samples_are_found_through_their_index(store: HistoryStore) -> None:
    # Not a scan of every sample ever kept: the dashboard reads the newest every 5 s.
    asked: list[str] = []
    store._reader.set_trace_callback(asked.append)
    store.samples(since=at(0), limit=10)
    [query] = asked
    plan = [str(row[-1]) for row in store._reader.execute("EXPLAIN QUERY PLAN " + query)]
    assert any("INDEX samples_worker_at (worker_id=? AND at>? AND at<?)" in step for step in plan)
    assert "SCAN samples" not in plan, plan


# -- desired state ---------------------------------------------------------------------


def test_desired_state_per_worker_and_for_the_fleet(store: HistoryStore) -> None:
    assert store.desired() == (None, {})
    store.desire("w1", Wish(True, 1))
    store.desire("w2", Wish(False, 2))
    store._flush()
    assert store.desired() == (None, {"w1": Wish(True, 1), "w2": Wish(False, 2)})
    store.desire("w1", Wish(False, 3))  # the latest word for a worker wins
    store._flush()
    assert store.desired() == (None, {"w1": Wish(False, 3), "w2": Wish(False, 2)})
    store.desire(FLEET, Wish(True, 4))  # the fleet's word replaces every worker's own
    store._flush()
    assert store.desired() == (Wish(True, 4), {})
    store.desire("w2", Wish(False, 5))  # a worker's word after the fleet's stands next to it
    store.desire(FLEET, Wish(False, 6))
    store.desire(FLEET, Wish(True, 7))
    store.desire("w3", Wish(False, 8))
    store._flush()
    assert store.desired() == (Wish(True, 7), {"w3": Wish(False, 8)})


def test_a_wish_is_committed_soon_with_what_came_before_it_not_a_batch_later(
    db_path: str,
) -> None:
    # Its flush interval is an hour: only a wish wakes the writer within the deadline.
    store = HistoryStore(db_path, retention=3650 * DAY, flush_interval=IDLE)
    store.start()
    try:
        store.record(event(EventKind.REGISTERED, "w1", at(0)))
        store.desire("w1", Wish(True, 1))
        wait_for(lambda: store.desired() == (None, {"w1": Wish(True, 1)}), 5, "the wish")
        assert [e.kind for e in store.events()] == [EventKind.REGISTERED]  # one commit
        store.desire(FLEET, Wish(False, 2))
        wait_for(lambda: store.desired() == (Wish(False, 2), {}), 5, "the next wish")
    finally:
        store.close()


def test_a_wish_kept_before_generations_were_counts_as_newer_than_any_command(
    tmp_path: Path,
) -> None:
    # A database of the first schema: its wishes keep winning, as they did then.
    path = str(tmp_path / "v1.db")
    connection = connect(path)
    with connection:
        connection.executescript(MIGRATIONS[0])
        connection.execute("PRAGMA user_version = 1")
        connection.execute("INSERT INTO desired (target, active) VALUES ('w1', 1), ('all', 0)")
    connection.close()
    store = HistoryStore(path, retention=DAY, flush_interval=IDLE)
    try:
        newest = 2**63 - 1
        assert store.desired() == (Wish(False, newest), {"w1": Wish(True, newest)})
    finally:
        store.close()


# -- a failing database --------------------------------------------------------------


@pytest.fixture
def locker(db_path: str, store: HistoryStore) -> Iterator[sqlite3.Connection]:
    """Another connection to the same file, to take the write lock away from the store."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    # The store would wait up to 5 s for the lock on each attempt; a test need not.
    store._writer.execute("PRAGMA busy_timeout = 50")
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


def test_a_failing_flush_keeps_the_batch_and_a_later_one_writes_it_all(
    store: HistoryStore, locker: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    store.record(event(EventKind.REGISTERED, "w1", at(0)))
    store.desire("w1", Wish(True, 1))
    locker.execute("BEGIN EXCLUSIVE")  # e.g. another process holding the database
    with caplog.at_level(logging.INFO, logger="fireworks.store"):
        store._flush()
        assert store.failing
        store.record(event(EventKind.ACTIVATED, "w1", at(1)))
        store._flush()  # still locked: still failing, logged once only
        assert store.failing
        failures = [r for r in caplog.records if r.message == "history not written; will retry"]
        assert len(failures) == 1
        assert "locked" in str(getattr(failures[0], "fields", {}).get("reason"))
        locker.execute("ROLLBACK")
        store._flush()
    assert not store.failing
    assert [e.kind for e in store.events()] == [EventKind.REGISTERED, EventKind.ACTIVATED]
    assert store.desired() == (None, {"w1": Wish(True, 1)})
    assert any(r.message == "history written again" for r in caplog.records)
    assert store.dropped == 0


def test_an_item_that_cannot_be_written_is_dropped_alone_and_the_writer_goes_on(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Models bound what a worker may claim; this is the last line behind them: one bad
    # item must not stop the history (the writer thread died of this OverflowError once).
    store = HistoryStore(db_path, retention=3650 * DAY, flush_interval=0.02)
    store.start()
    try:
        store.record(event(EventKind.REGISTERED, "w1", at(0)))
        store.sample("w1", at(1), True, 2**64)  # more than SQLite's INTEGER holds
        store.record(event(EventKind.ACTIVATED, "w1", at(2)))
        wait_for(lambda: len(store.events()) == 2, 5, "the good items written")
        assert store.dropped == 1
        assert store.samples("w1") == []
        store.record(event(EventKind.DEACTIVATED, "w1", at(3)))
        wait_for(lambda: len(store.events()) == 3, 5, "the writer to go on")
        assert store.writable() and not store.failing
        assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
            "history item dropped"
        ]
    finally:
        store.close()


def test_writable_follows_the_writer_thread_and_the_database(db_path: str) -> None:
    store = HistoryStore(db_path, retention=3650 * DAY, flush_interval=0.02)
    store._writer.execute("PRAGMA busy_timeout = 50")
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert not store.writable()  # no writer thread yet
        store.start()
        assert store.writable()
        store.record(event(EventKind.REGISTERED, "w1", at(0)))
        wait_for(lambda: store.events(), 5, "the writer thread to flush")
        locker.execute("BEGIN EXCLUSIVE")
        store.record(event(EventKind.ACTIVATED, "w1", at(1)))
        wait_for(lambda: not store.writable(), 5, "the store to notice it cannot write")
        assert store.failing
        locker.execute("ROLLBACK")
        wait_for(store.writable, 5, "the store to write again")
        assert [e.kind for e in store.events()] == [EventKind.REGISTERED, EventKind.ACTIVATED]
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        store.close()
    assert not store.writable()  # closed: its writer thread is gone


# -- the backlog bound -----------------------------------------------------------------


def test_a_full_backlog_drops_the_oldest_and_counts_them(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_BACKLOG", 5)
    for n in range(8):
        store.record(event(EventKind.ACTIVATED, "w1", at(n), n=n))
    assert store.dropped == 3
    store._flush()
    assert [e.detail["n"] for e in store.events()] == [3, 4, 5, 6, 7]
    store.record(event(EventKind.ACTIVATED, "w1", at(8), n=8))  # room again after a flush
    store._flush()
    assert store.dropped == 3
    assert [e.detail["n"] for e in store.events()][-1] == 8


def test_an_item_queued_during_a_flush_of_a_full_backlog_is_not_lost(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: _flush used to pop len(batch) items after writing; an item dropped from
    a full backlog during the write had already been written, so the pops took the newly
    queued item instead, which was never written nor counted as dropped."""
    monkeypatch.setattr(store_module, "MAX_BACKLOG", 3)
    for n in range(3):  # the backlog is full, as after a database outage
        store.record(event(EventKind.ACTIVATED, "w1", at(n), n=n))
    late = event(EventKind.DEACTIVATED, "w1", at(10), n=99)
    queued: list[FleetEvent] = []

    def bus_thread_records_meanwhile(statement: str) -> None:
        # The bus thread records while the writer thread is inside the transaction
        # (deterministic here: at the writer's first INSERT).
        if not queued and statement.startswith("INSERT INTO events"):
            queued.append(late)
            store.record(late)

    store._writer.set_trace_callback(bus_thread_records_meanwhile)
    store._flush()
    store._writer.set_trace_callback(None)
    store._flush()
    written = [e.detail["n"] for e in store.events()]
    assert 99 in written, f"written {written}, dropped {store.dropped}"
    # Every item recorded is written or counted as dropped.
    assert len(written) + store.dropped >= 4


def test_a_store_never_started_can_be_closed_and_keeps_its_batch(db_path: str) -> None:
    """Regression: close() joined the writer thread unconditionally, so closing a store
    that was never started raised RuntimeError instead of flushing and closing."""
    store = HistoryStore(db_path, retention=DAY)
    store.desire("w1", Wish(True, 1))
    store.close()
    reopened = HistoryStore(db_path, retention=DAY, flush_interval=IDLE)
    reopened.start()
    try:
        assert reopened.desired() == (None, {"w1": Wish(True, 1)})
    finally:
        reopened.close()


# -- retention -----------------------------------------------------------------------


def test_prune_drops_events_samples_and_workers_past_retention(db_path: str) -> None:
    store = HistoryStore(db_path, retention=DAY, flush_interval=IDLE)
    store.start()
    try:
        old, recent = utc_now() - timedelta(days=2), utc_now() - timedelta(hours=1)
        store.record(event(EventKind.REGISTERED, "gone", old))
        store.sample("gone", old, active=False, activity=1)
        store.record(event(EventKind.REGISTERED, "w1", old))
        store.record(event(EventKind.ACTIVATED, "w1", recent))
        store.sample("w1", old, active=False, activity=1)
        store.sample("w1", recent, active=True, activity=2)
        store.desire(FLEET, Wish(False, 1))
        store.desire("gone", Wish(True, 2))
        store.desire("w1", Wish(True, 3))
        store._flush()
        assert len(store.events()) == 3
        store._enqueue(store._prune)
        store._flush()
        assert [(e.worker_id, e.kind) for e in store.events()] == [("w1", EventKind.ACTIVATED)]
        assert [s.activity for s in store.samples("w1")] == [2]
        assert store.samples("gone") == []
        assert not store.known("gone")
        assert store.known("w1")  # seen recently
        # The wish of a worker the history no longer knows goes with it; the rest stay.
        assert store.desired() == (Wish(False, 1), {"w1": Wish(True, 3)})
    finally:
        store.close()


def test_a_running_store_prunes_on_its_first_flush(db_path: str) -> None:
    store = HistoryStore(db_path, retention=DAY, flush_interval=0.02)
    try:
        store.record(event(EventKind.REGISTERED, "w1", utc_now() - timedelta(days=3)))
        store.record(event(EventKind.ACTIVATED, "w1", utc_now()))
        store.start()
        wait_for(
            lambda: [e.kind for e in store.events()] == [EventKind.ACTIVATED],
            5,
            "the old event pruned by the writer thread",
        )
    finally:
        store.close()


def test_the_write_ahead_log_shrinks_back_after_a_big_transaction(db_path: str) -> None:
    store = HistoryStore(db_path, retention=3650 * DAY, sample_every=0.0, flush_interval=IDLE)
    wal = Path(f"{db_path}-wal")
    try:
        start = utc_now() - timedelta(days=1)
        for i in range(60_000):  # one flush, one transaction: as a big prune is
            store.sample(f"w{i % 500}", start + timedelta(seconds=i), active=True, activity=i)
        store._flush()
        assert wal.stat().st_size > store_module.WAL_SIZE_LIMIT  # it did grow past the limit
        # The next transactions find the log checkpointed and start it over, cut back.
        for _ in range(2):
            store.sample("w1", utc_now(), active=True, activity=1)
            store._flush()
        assert wal.stat().st_size <= store_module.WAL_SIZE_LIMIT
        assert len(store.samples("w1", limit=100_000)) == 60_000 // 500 + 2  # nothing lost
    finally:
        store.close()


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        pytest.param("a-file/fw.db", "File exists", id="under-a-file"),
        pytest.param(".", "unable to open database file", id="a-folder"),
        pytest.param("a-file", "file is not a database", id="not-a-database"),
    ],
)
def test_an_unusable_database_is_one_line_naming_the_setting(
    tmp_path: Path, where: str, problem: str
) -> None:
    (tmp_path / "a-file").write_text("not sqlite, and long enough to have a header " * 4)
    path = str(tmp_path / where)
    with pytest.raises(SettingsError) as caught:
        HistoryStore(path, retention=DAY)
    assert str(caught.value).startswith(f"FIREWORKS_DB {path!r} cannot be used: ")
    assert problem in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.__suppress_context__
