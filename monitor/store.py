"""The fleet's history in SQLite: workers, events, downsampled activity, desired state.

Writes never happen on the bus thread: it only appends to an in-memory batch, and a
writer thread of the store's own commits the batch once per flush interval, or soon after
a desired state is asked for. A slow or failing database delays history, never the
control loop; failures are logged and the batch is kept (bounded) for the next attempt.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bus.errors import SettingsError
from bus.logs import fields
from models.monitor_model import (
    Detail,
    EventKind,
    FleetEvent,
    Liveness,
    Remembered,
    Wish,
    WorkerSample,
)
from models.worker_model import FLEET, utc_now

log = logging.getLogger("fireworks.store")

# The write-ahead log is cut back to this after a checkpoint. Without it, it keeps the size
# of the largest transaction it ever held (a big prune left 51 MB behind), for good.
# About one automatic checkpoint's worth (1,000 pages of 4 KiB).
WAL_SIZE_LIMIT = 4 * 1024 * 1024

# Work items waiting for the writer beyond this are dropped, oldest first (and counted).
MAX_BACKLOG = 100_000

# A desired state is committed this soon after it is asked for, not with the next
# once-a-second batch: a monitor killed right after a command restarts with it. The
# delay lets the command go out first, and wishes close together share a commit.
WISH_DELAY = 0.05
# Seconds between drops of what is past retention (the first comes with the first flush).
PRUNE_EVERY = 600.0

# Each migration takes the schema from version N to N+1; never edit a released one.
MIGRATIONS = [
    """
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        worker_id TEXT,
        command_id TEXT,
        latency_ms REAL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_at ON events (at);
    CREATE INDEX events_worker_at ON events (worker_id, at);
    CREATE TABLE samples (
        worker_id TEXT NOT NULL,
        at TEXT NOT NULL,
        active INTEGER NOT NULL,
        activity INTEGER NOT NULL
    );
    CREATE INDEX samples_worker_at ON samples (worker_id, at);
    CREATE TABLE desired (
        target TEXT PRIMARY KEY,  -- a worker id, or 'all' for the fleet
        active INTEGER NOT NULL
    );
    """,
    # The generation of the command behind each wish. Rows from before it count as newer
    # than any command, so that a wish kept then still wins, as it did.
    """
    ALTER TABLE desired ADD COLUMN generation INTEGER NOT NULL DEFAULT 9223372036854775807;
    """,
    # A restarted monitor reads each worker's last liveness event (see remembered): found
    # at once through this index of those few events, however long the history.
    """
    CREATE INDEX events_liveness ON events (worker_id, id)
        WHERE kind IN ('registered', 'reconnected', 'lost', 'offline', 'forgotten');
    """,
]

Write = Callable[[sqlite3.Connection], None]

# The liveness each liveness event leaves a worker in, as a restarted monitor reads it
# back (forgotten: none, it is gone).
_LIVENESS_AFTER: dict[str, Liveness | None] = {
    EventKind.REGISTERED: Liveness.ONLINE,
    EventKind.RECONNECTED: Liveness.ONLINE,
    EventKind.LOST: Liveness.LOST,
    EventKind.OFFLINE: Liveness.OFFLINE,
    EventKind.FORGOTTEN: None,
}
# Those events as SQL, named as the third migration's index names them (same kinds, same
# order): only a query that names them so can use that index.
LIVENESS_EVENTS = "kind IN ({})".format(", ".join(f"'{kind}'" for kind in _LIVENESS_AFTER))


def _iso(moment: datetime) -> str:
    # One zone and one format, so that text order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=5, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return connection


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns its version."""
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise SettingsError(
            f"FIREWORKS_DB has schema version {version}, newer than this monitor knows "
            f"({len(MIGRATIONS)}): use a newer monitor or another database"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with connection:
            connection.executescript(script)
            connection.execute(f"PRAGMA user_version = {number}")
        log.info("database migrated", extra=fields(version=number))
    return len(MIGRATIONS)


class HistoryStore:
    def __init__(
        self,
        path: str,
        retention: float,
        sample_every: float = 5.0,
        flush_interval: float = 1.0,
    ) -> None:
        self.retention = timedelta(seconds=retention)
        self.sample_every = timedelta(seconds=sample_every)
        self.flush_interval = flush_interval
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._writer = connect(path)
            migrate(self._writer)
            self._reader = connect(path)
        except (OSError, sqlite3.Error) as error:  # a bad FIREWORKS_DB: one line, not a traceback
            raise SettingsError(f"FIREWORKS_DB {path!r} cannot be used: {error}") from None
        self._reader_lock = threading.Lock()
        self._batch: deque[Write] = deque()
        self._batch_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: the writer's, or close()'s
        self._wished = threading.Event()
        self._last_sample: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self.dropped = 0
        self.failing = False

    # -- called on the bus thread: cheap, never blocks on the database -------------

    def record(self, event: FleetEvent) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO events (at, kind, worker_id, command_id, latency_ms, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _iso(event.at),
                    event.kind.value,
                    event.worker_id,
                    None if event.command_id is None else str(event.command_id),
                    event.latency_ms,
                    json.dumps(event.detail),
                ),
            )
            if event.worker_id not in (None, FLEET):
                self._seen(db, event.worker_id, event.at)

        self._enqueue(write)

    def forget(self, worker_id: str) -> None:
        """Keep nothing of a worker the monitor forgot: not its last sample time, not its
        wish (back one day, it is a new worker). Its history stays, until retention."""
        self._last_sample.pop(worker_id, None)

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM desired WHERE target = ?", (worker_id,))

        self._enqueue(write)

    def sample(self, worker_id: str, at: datetime, active: bool, activity: int) -> None:
        """Keep a worker's activity, at most once per `sample_every`."""
        last = self._last_sample.get(worker_id)
        if last is not None and at - last < self.sample_every:
            return
        self._last_sample[worker_id] = at

        def write(db: sqlite3.Connection) -> None:
            self._seen(db, worker_id, at)  # first: no sample without its worker (samples)
            db.execute(
                "INSERT INTO samples (worker_id, at, active, activity) VALUES (?, ?, ?, ?)",
                (worker_id, _iso(at), int(active), activity),
            )

        self._enqueue(write)

    def desire(self, target: str, wish: Wish) -> None:
        """Persist a desired state; for the fleet it replaces every worker's own."""

        def write(db: sqlite3.Connection) -> None:
            if target == FLEET:
                db.execute("DELETE FROM desired")
            db.execute(
                "INSERT INTO desired (target, active, generation) VALUES (?, ?, ?) "
                "ON CONFLICT (target) DO UPDATE "
                "SET active = excluded.active, generation = excluded.generation",
                (target, int(wish.active), wish.generation),
            )

        self._enqueue(write)
        self._wished.set()

    # -- reads (any thread) ------------------------------------------------------

    def desired(self) -> tuple[Wish | None, dict[str, Wish]]:
        """(the fleet's desired state, each worker's own) as last persisted."""
        rows = self._read("SELECT target, active, generation FROM desired", ())
        wanted = {str(target): Wish(bool(active), gen) for target, active, gen in rows}
        return wanted.pop(FLEET, None), wanted

    def remembered(self, since: datetime) -> list[Remembered]:
        """The workers seen since `since` and not forgotten, each with its liveness as the
        last liveness event has it (online if none is left)."""
        rows = self._read(
            "SELECT worker_id, last_seen, (SELECT kind FROM events "
            f"  WHERE events.worker_id = workers.worker_id AND {LIVENESS_EVENTS} "
            "  ORDER BY id DESC LIMIT 1) "
            "FROM workers WHERE last_seen >= ? ORDER BY worker_id",
            (_iso(since),),
        )
        found = []
        for worker_id, seen, kind in rows:
            # No such event left (pruned with old history): it was reporting, so online.
            liveness = Liveness.ONLINE if kind is None else _LIVENESS_AFTER[kind]
            if liveness is not None:
                found.append(Remembered(worker_id, datetime.fromisoformat(seen), liveness))
        return found

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        worker_id: str | None = None,
        limit: int = 1000,
    ) -> list[FleetEvent]:
        query = "SELECT at, kind, worker_id, command_id, latency_ms, detail FROM events WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            query, args = query + " AND at >= ?", [*args, _iso(since)]
        if until is not None:
            query, args = query + " AND at <= ?", [*args, _iso(until)]
        if worker_id is not None:
            query, args = query + " AND worker_id IN (?, ?)", [*args, worker_id, FLEET]
        rows = self._read(query + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [
            FleetEvent(
                at=at,
                kind=EventKind(kind),
                worker_id=worker,
                command_id=command,
                latency_ms=latency,
                detail=_detail(detail),
            )
            for at, kind, worker, command, latency, detail in reversed(rows)
        ]

    def samples(
        self,
        worker_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 5000,
    ) -> list[WorkerSample]:
        """The newest `limit` samples in the range, oldest first: one worker's, or the
        fleet's. Found worker by worker, through the samples' index: every sample's worker
        is in `workers` (written with it, pruned after its last), and the join goes that
        way round (CROSS JOIN), else SQLite would read every sample ever kept."""
        query = (
            "SELECT samples.worker_id, at, active, activity FROM workers CROSS JOIN samples "
            "ON samples.worker_id = workers.worker_id WHERE at >= ? AND at <= ?"
        )
        args: list[Any] = [_iso(since) if since else "", _iso(until) if until else "~"]
        if worker_id is not None:
            query, args = query + " AND workers.worker_id = ?", [*args, worker_id]
        rows = self._read(query + " ORDER BY at DESC LIMIT ?", (*args, limit))
        return [
            WorkerSample(worker_id=worker, at=at, active=bool(active), activity=activity)
            for worker, at, active, activity in reversed(rows)
        ]

    def known(self, worker_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM workers WHERE worker_id = ?", (worker_id,)))

    def writable(self) -> bool:
        return not self.failing and self._thread.is_alive()

    # -- the writer ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wished.set()  # wakes the writer now
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._flush()
        self._writer.close()
        self._reader.close()

    def _run(self) -> None:
        next_prune = 0.0
        while True:
            if self.failing:  # retried at its own pace: a wish does not hurry a failing database
                self._stop.wait(self.flush_interval)
            elif self._wished.wait(self.flush_interval):
                self._stop.wait(WISH_DELAY)
            if self._stop.is_set():
                return  # close() flushes what is left
            self._wished.clear()  # before the flush: a wish queued from now on wakes it again
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY
                self._enqueue(self._prune)
            self._flush()

    def _flush(self) -> None:
        with self._flush_lock:
            with self._batch_lock:
                batch, self._batch = self._batch, deque()
            if not batch:
                return
            try:
                with self._writer:  # one transaction for the whole batch
                    for write in batch:
                        self._apply(write)
            except sqlite3.Error as error:
                if not self.failing:
                    log.error("history not written; will retry", extra=fields(reason=str(error)))
                self.failing = True
                with self._batch_lock:  # back in front of what came meanwhile, still bounded
                    batch.extend(self._batch)
                    excess = max(0, len(batch) - MAX_BACKLOG)
                    for _ in range(excess):
                        batch.popleft()
                    self.dropped += excess
                    self._batch = batch
                return
            if self.failing:
                log.info("history written again", extra=fields(items=len(batch)))
            self.failing = False

    def _apply(self, write: Write) -> None:
        try:
            write(self._writer)
        except sqlite3.Error:
            raise  # the database's fault: the whole batch is kept for the next attempt
        except Exception:  # this item's own (a value SQLite cannot hold, a bug): it alone goes
            log.exception("history item dropped")
            self.dropped += 1

    def _prune(self, db: sqlite3.Connection) -> None:
        cutoff = _iso(utc_now() - self.retention)
        db.execute("DELETE FROM events WHERE at < ?", (cutoff,))
        db.execute("DELETE FROM samples WHERE at < ?", (cutoff,))
        db.execute("DELETE FROM workers WHERE last_seen < ?", (cutoff,))
        # Wishes for workers the history no longer knows (forgotten while no monitor ran).
        db.execute(
            "DELETE FROM desired WHERE target <> ? "
            "AND target NOT IN (SELECT worker_id FROM workers)",
            (FLEET,),
        )

    def _enqueue(self, write: Write) -> None:
        with self._batch_lock:
            if len(self._batch) >= MAX_BACKLOG:
                self._batch.popleft()
                self.dropped += 1
            self._batch.append(write)

    @staticmethod
    def _seen(db: sqlite3.Connection, worker_id: str, at: datetime) -> None:
        db.execute(
            "INSERT INTO workers (worker_id, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            (worker_id, _iso(at), _iso(at)),
        )

    def _read(self, query: str, args: tuple[Any, ...] | list[Any]) -> list[Any]:
        with self._reader_lock:
            return self._reader.execute(query, args).fetchall()


def _detail(text: str) -> dict[str, Detail]:
    loaded: dict[str, Detail] = json.loads(text)
    return loaded
