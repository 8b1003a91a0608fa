"""The real stack heals when its broker goes away: `restart rabbitmq`, and SIGKILL then `up`.

One stack for both faults (module scope): the broker, the monitor and 3 workers, with
LOG_FORMAT=json, STATUS_INTERVAL=1 and TOGGLE_INTERVAL=2. Before each fault the fleet
is steady: every worker has applied a fleet toggle the monitor sent in its current
session. After the fault, within HEAL_DEADLINE:

- the monitor logs `connected` with a new session, and so does every worker container;
- every worker applies (its own `active: … outcome=applied`) a fleet toggle that the
  monitor first sent after its reconnect (not a re-send of a command queued while it
  was cut off), and the monitor logs that worker's `acknowledged ... outcome=applied`;
- no worker is left `lost` by the monitor;
- the broker's healthcheck reported it not healthy after the fault, and healthy again;
- the monitor and worker containers are the very same ones, running and never
  restarted (same StartedAt, same RestartCount); only the broker restarted;
- no ERROR record, exception or stray output (a traceback) from the monitor or workers.

Lines are tied to the fault by structure, not by when this test happened to read them:
session numbers only grow, each container's own log is in order, and the JSON "time"
of a new session's `connected` must be at or after the fault moment (the containers
log in UTC on this host's kernel clock; the fixture checks that the clocks agree).

Each test prints what it saw (timings, health transitions, workers marked lost):
`pytest tests/e2e -m compose -rP` shows it. The stack always goes down with its volumes;
a failure carries the services' logs.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from compose_helpers import (
    ComposeError,
    ContainerState,
    Project,
    container_output,
    free_local_port,
    inspect_containers,
    record_time,
    require_compose,
    require_docker_cli,
)

pytestmark = pytest.mark.compose

WORKERS = 3
STACK_ENV = {
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "STATUS_INTERVAL": "1",
    "TOGGLE_INTERVAL": "2",
}
# From `up` returning (images built, broker healthy) to every worker toggled.
SETTLE_DEADLINE = 120.0
# From the fault to the fleet healed: the broker boots again (10-20 s for the official
# image), the clients' reconnect backoff (capped at 15 s) runs out, a toggle goes round;
# plus `restart` waiting out the broker's stop (up to its 10 s stop timeout).
HEAL_DEADLINE = 150.0
# After `kill -s SIGKILL`, until the engine reports the broker's container stopped.
STOP_DEADLINE = 30.0
FAULT_TIMEOUT = 120.0  # one compose command of a fault (`restart`, `kill`)
POLL_INTERVAL = 1.0
# The broker's state is sampled this often while a fault's compose command runs.
HEALTH_SAMPLE_INTERVAL = 0.25
DOCKER_SAMPLE_JOIN = 70.0  # one `docker inspect` at most (its own timeout is 60 s)
# Largest believable gap between this host's UTC clock and a log record just written.
CLOCK_SLACK = timedelta(seconds=30)

Record = dict[str, Any]


# -- what the containers show -----------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Every container's state, and the monitor's and workers' own logs, read once."""

    states: dict[str, ContainerState]  # container id -> state
    records: dict[str, list[Record]]  # monitor/worker container id -> its JSON records
    stray: dict[str, list[str]]  # container id -> non-JSON stdout lines and stderr lines


@dataclass
class Stack:
    """The compose project and its containers, by full id."""

    project: Project
    broker: str
    monitor: str
    workers: list[str]

    def snapshot(self) -> Snapshot:
        states = inspect_containers([self.broker, self.monitor, *self.workers])
        records: dict[str, list[Record]] = {}
        stray: dict[str, list[str]] = {}
        for container in [self.monitor, *self.workers]:
            stdout, stderr = container_output(container)
            records[container], stray[container] = parse_output(stdout, stderr)
        return Snapshot(states, records, stray)

    def logs_for_failure(self) -> str:
        return (
            f"---- compose logs (project {self.project.name}) ----\n"
            f"{self.project.safe_logs('monitor', 'workers', tail=150)}\n"
            f"{self.project.safe_logs('rabbitmq', tail=40)}"
        )


def parse_output(stdout: str, stderr: str) -> tuple[list[Record], list[str]]:
    """A container's JSON log records, and every other line it wrote (stderr too)."""
    records: list[Record] = []
    stray: list[str] = []
    for line in stdout.splitlines():
        text = line.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            stray.append(text)
    stray.extend(line for line in stderr.splitlines() if line.strip())
    return records, stray


def is_connected(record: Record) -> bool:
    return record.get("logger") == "fireworks.bus" and record.get("message") == "connected"


def session_of(record: Record) -> int:
    session = record.get("session")
    return session if isinstance(session, int) else 0


def latest_session(records: list[Record]) -> int:
    return max((session_of(r) for r in records if is_connected(r)), default=0)


def worker_id_of(records: list[Record]) -> str | None:
    for record in records:
        if record.get("logger") == "fireworks.worker" and record.get("message") == "registered":
            return str(record.get("worker"))
    return None


def first_new_session(
    records: list[Record], after_session: int, not_before: datetime | None
) -> int | None:
    """Index of the first `connected` of a session above `after_session` logged at or
    after `not_before`."""
    for index, record in enumerate(records):
        if not is_connected(record) or session_of(record) <= after_session:
            continue
        when = record_time(record)
        if not_before is None or (when is not None and when >= not_before):
            return index
    return None


# -- healing, as the logs show it ------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """Where a heal counts from: sessions above these, logged at or after `not_before`."""

    monitor_session: int
    worker_sessions: dict[str, int]  # worker container id -> session
    not_before: datetime | None


@dataclass
class Progress:
    """How far the fleet got since a Floor."""

    monitor_connected: Record | None = None
    fresh: list[str] = field(default_factory=list)  # fleet toggles first sent after it
    acked: dict[str, Record] = field(default_factory=dict)  # worker id -> monitor's ack
    workers_connected: dict[str, Record] = field(default_factory=dict)  # container id ->
    applied: dict[str, Record] = field(default_factory=dict)  # container id -> its `command`
    marked_lost: list[str] = field(default_factory=list)  # "time worker" since not_before
    still_lost: set[str] = field(default_factory=set)  # last liveness word is "lost"
    problems: list[str] = field(default_factory=list)  # errors, exceptions, stray output

    def healed(self, stack: Stack, worker_ids: dict[str, str]) -> bool:
        return (
            self.monitor_connected is not None
            and set(worker_ids.values()) <= set(self.acked)
            and set(stack.workers) <= set(self.workers_connected)
            and set(stack.workers) <= set(self.applied)
            and not self.still_lost
        )

    def summary(self, worker_ids: dict[str, str]) -> str:
        connected = self.monitor_connected
        return (
            f"monitor session={None if connected is None else connected.get('session')} "
            f"fresh toggles={len(self.fresh)} "
            f"acknowledged by={sorted(self.acked)} of {sorted(worker_ids.values())} "
            f"workers reconnected={sorted(worker_ids[c] for c in self.workers_connected)} "
            f"applied by={sorted(worker_ids[c] for c in self.applied)} "
            f"still lost={sorted(self.still_lost)} problems={excerpt(self.problems)}"
        )


def excerpt(lines: list[str], head: int = 3, tail: int = 6) -> list[str]:
    """The first and last lines (a traceback's start and its error)."""
    if len(lines) <= head + tail:
        return lines
    return [*lines[:head], f"... {len(lines) - head - tail} more ...", *lines[-tail:]]


def progress(stack: Stack, snap: Snapshot, floor: Floor, worker_ids: dict[str, str]) -> Progress:
    seen = Progress()
    monitor = snap.records.get(stack.monitor, [])
    for container in [stack.monitor, *stack.workers]:
        for record in snap.records.get(container, []):
            if record.get("level") in ("ERROR", "CRITICAL") or "exception" in record:
                seen.problems.append(f"{container[:12]}: {record}")
        seen.problems.extend(f"{container[:12]}: {line}" for line in snap.stray.get(container, []))

    # Liveness, whatever the moment: the monitor's last word on each worker.
    last_liveness: dict[str, str] = {}
    for record in monitor:
        message = str(record.get("message", ""))
        if record.get("logger") == "fireworks.monitor" and message.startswith("liveness "):
            worker = str(record.get("worker"))
            last_liveness[worker] = message.rpartition(" -> ")[2]
            when = record_time(record)
            after = floor.not_before is None or (when is not None and when >= floor.not_before)
            if message.endswith("-> lost") and after:
                seen.marked_lost.append(f"{record.get('time')} {worker}")
    seen.still_lost = {worker for worker, state in last_liveness.items() if state == "lost"}

    start = first_new_session(monitor, floor.monitor_session, floor.not_before)
    if start is None:
        return seen
    seen.monitor_connected = monitor[start]
    before = {str(r.get("command")) for r in monitor[:start] if r.get("command") is not None}
    fresh: set[str] = set()
    for record in monitor[start + 1 :]:
        if record.get("logger") != "fireworks.monitor":
            continue
        command = str(record.get("command"))
        if (
            record.get("message") == "command sent"
            and record.get("worker") == "all"
            and command not in before
            and command not in fresh
        ):
            fresh.add(command)
            seen.fresh.append(command)
        elif (
            record.get("message") == "acknowledged"
            and record.get("outcome") == "applied"
            and command in fresh
        ):
            seen.acked.setdefault(str(record.get("worker")), record)

    for container in stack.workers:
        records = snap.records.get(container, [])
        at = first_new_session(records, floor.worker_sessions.get(container, 0), floor.not_before)
        if at is None:
            continue
        seen.workers_connected[container] = records[at]
        for record in records[at + 1 :]:
            if (
                record.get("logger") == "fireworks.worker"
                and record.get("outcome") == "applied"
                and record.get("command") in fresh
            ):
                seen.applied[container] = record
                break
    return seen


# -- the stack --------------------------------------------------------------------------


class StackFailure(Exception):
    """The stack did not do what a test waited for; the message says what it saw."""


@dataclass
class Fleet:
    """The stack, and its workers' ids (each container's hostname)."""

    stack: Stack
    worker_ids: dict[str, str]  # container id -> worker id (its hostname)


def wait_steady(fleet: Fleet, deadline: float) -> tuple[Snapshot, Floor]:
    """Wait until every worker applied a toggle of the monitor's current session."""
    stack = fleet.stack
    while True:
        snap = stack.snapshot()
        monitor = snap.records.get(stack.monitor, [])
        session = latest_session(monitor)
        floor = Floor(
            monitor_session=session - 1,
            worker_sessions={c: latest_session(snap.records.get(c, [])) - 1 for c in stack.workers},
            not_before=None,
        )
        seen = progress(stack, snap, floor, fleet.worker_ids)
        broker = snap.states.get(stack.broker)
        steady = (
            session >= 1
            and seen.healed(stack, fleet.worker_ids)
            and broker is not None
            and broker.health == "healthy"
        )
        if steady:
            return snap, Floor(
                monitor_session=session,
                worker_sessions={c: latest_session(snap.records.get(c, [])) for c in stack.workers},
                not_before=None,
            )
        if seen.problems or time.monotonic() > deadline:
            raise StackFailure(
                "the fleet is not steady: "
                f"{seen.summary(fleet.worker_ids)}; broker "
                f"{'gone' if broker is None else broker.brief()}"
            )
        time.sleep(POLL_INTERVAL)  # poll interval; the deadline bounds the wait


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """One stack for the module: up, 3 workers registered and toggled; always `down -v`."""
    compose = require_compose()
    require_docker_cli()
    env = {
        **STACK_ENV,
        "RABBITMQ_MANAGEMENT_PORT": str(free_local_port()),
        "MONITOR_HTTP_PORT": str(free_local_port()),
    }
    project = compose.project(prefix="fwheal", env=env)
    stack: Stack | None = None
    failure: str | None = None
    try:
        try:
            project.up("--build", "-d", "--scale", f"workers={WORKERS}")
            broker_ids = project.container_ids("rabbitmq")
            monitor_ids = project.container_ids("monitor")
            worker_containers = project.container_ids("workers")
            assert len(broker_ids) == 1 and len(monitor_ids) == 1, (broker_ids, monitor_ids)
            assert len(worker_containers) == WORKERS, worker_containers
            stack = Stack(project, broker_ids[0], monitor_ids[0], sorted(worker_containers))

            deadline = time.monotonic() + SETTLE_DEADLINE
            worker_ids: dict[str, str] = {}
            while len(worker_ids) < WORKERS:
                snap = stack.snapshot()
                worker_ids = {
                    c: wid
                    for c in stack.workers
                    if (wid := worker_id_of(snap.records.get(c, []))) is not None
                }
                if time.monotonic() > deadline:
                    raise StackFailure(f"only {sorted(worker_ids.values())} registered")
                if len(worker_ids) < WORKERS:
                    time.sleep(POLL_INTERVAL)  # poll interval; the deadline bounds the wait
            assert len(set(worker_ids.values())) == WORKERS, worker_ids
            steady = Fleet(stack, worker_ids)
            snap, _ = wait_steady(steady, deadline)

            # The "time" of the logs is compared with this host's UTC clock: check they agree.
            last = record_time(snap.records[stack.monitor][-1])
            now = datetime.now(UTC)
            assert last is not None and abs(now - last) < CLOCK_SLACK, (
                f"the monitor's last record says {last}, this host says {now} (UTC): "
                "the containers' clock or time zone differs, log times cannot be compared"
            )
        except (AssertionError, ComposeError, StackFailure) as error:
            failure = f"stack did not come up: {type(error).__name__}: {error}"
        if failure is not None:
            logs = stack.logs_for_failure() if stack is not None else project.safe_logs()
            pytest.fail(f"{failure}\n{logs}", pytrace=False)
        yield steady
    finally:
        project.down()


# -- faults ---------------------------------------------------------------------------


@dataclass
class HealthWatch:
    """The broker's container status and health as sampled, with seconds since the fault."""

    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, state: ContainerState | None) -> None:
        label = "gone" if state is None else f"{state.status}/{state.health}"
        with self._lock:
            if not self.seen or self.seen[-1][1] != label:
                self.seen.append((time.monotonic() - self.started, label))

    def sample_now(self, stack: Stack) -> ContainerState | None:
        state = inspect_containers([stack.broker]).get(stack.broker)
        self.sample(state)
        return state

    @contextlib.contextmanager
    def meanwhile(self, stack: Stack) -> Iterator[None]:
        """Keep sampling in the background while a blocking compose command runs
        (`restart` stops and starts the broker before it returns)."""
        done = threading.Event()

        def sample_until_done() -> None:
            while not done.is_set():
                with contextlib.suppress(ComposeError):
                    self.sample_now(stack)
                done.wait(HEALTH_SAMPLE_INTERVAL)

        sampler = threading.Thread(target=sample_until_done, name="health-watch", daemon=True)
        sampler.start()
        try:
            yield
        finally:
            done.set()
            sampler.join(timeout=DOCKER_SAMPLE_JOIN)

    def story(self) -> str:
        return " -> ".join(f"{label}@{at:.1f}s" for at, label in self.seen)


def restart_broker(stack: Stack, watch: HealthWatch) -> None:
    with watch.meanwhile(stack):
        stack.project.run("restart", "rabbitmq", timeout=FAULT_TIMEOUT)
    watch.sample_now(stack)


def kill_broker_then_up(stack: Stack, watch: HealthWatch) -> None:
    """SIGKILL the broker; once the engine reports it stopped, `up` it again.

    `docker kill` cancels the restart policy, so `unless-stopped` leaves the container
    exited; `up -d --no-deps rabbitmq` starts that same container again and touches
    nothing else (the monitor and workers only depend on it).
    """
    before = inspect_containers([stack.broker]).get(stack.broker)
    stack.project.run("kill", "-s", "SIGKILL", "rabbitmq", timeout=FAULT_TIMEOUT)
    deadline = time.monotonic() + STOP_DEADLINE
    while True:
        state = watch.sample_now(stack)
        if state is None or not state.running:
            break
        if before is not None and state.started_at != before.started_at:
            break  # an engine whose restart policy did restart it: fine as well
        if time.monotonic() > deadline:
            raise StackFailure(f"the broker still runs {STOP_DEADLINE:.0f} s after SIGKILL")
        time.sleep(HEALTH_SAMPLE_INTERVAL)  # poll interval; the deadline bounds the wait
    with watch.meanwhile(stack):
        stack.project.up("-d", "--no-deps", "rabbitmq")
    watch.sample_now(stack)


Fault = Callable[[Stack, HealthWatch], None]


def seconds_after(record: Record | None, moment: datetime) -> str:
    when = None if record is None else record_time(record)
    return "?" if when is None else f"{(when - moment).total_seconds():.1f}s"


def check_heals(fleet: Fleet, name: str, fault: Fault) -> None:
    stack = fleet.stack
    seen = Progress()
    watch = HealthWatch()
    failure: str | None = None
    try:
        before, floor = wait_steady(fleet, time.monotonic() + SETTLE_DEADLINE)
        # Log times are cut to the millisecond: so is the fault moment.
        now = datetime.now(UTC)
        fault_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        floor = Floor(floor.monitor_session, floor.worker_sessions, not_before=fault_at)
        watch = HealthWatch()
        watch.sample(before.states.get(stack.broker))
        fault(stack, watch)
        fault_done = time.monotonic() - watch.started

        deadline = time.monotonic() + HEAL_DEADLINE
        while True:
            snap = stack.snapshot()
            broker = snap.states.get(stack.broker)
            watch.sample(broker)
            seen = progress(stack, snap, floor, fleet.worker_ids)
            healthy = broker is not None and broker.health == "healthy"
            # A monitor or worker that went down, restarted or wrote an error fails at once.
            changed = any(
                (state := snap.states.get(c)) is None
                or not state.running
                or state.started_at != before.states[c].started_at
                for c in [stack.monitor, *stack.workers]
            )
            healed = seen.healed(stack, fleet.worker_ids) and healthy
            if healed or changed or seen.problems or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)  # poll interval; the deadline bounds the wait
        healed_in = time.monotonic() - watch.started

        assert seen.monitor_connected is not None, "the monitor did not connect again"
        assert session_of(seen.monitor_connected) >= 2, seen.monitor_connected
        missing = set(stack.workers) - set(seen.workers_connected)
        assert not missing, f"workers did not connect again: {sorted(missing)}"
        unacked = set(fleet.worker_ids.values()) - set(seen.acked)
        assert not unacked, f"no acknowledged fresh toggle from {sorted(unacked)}"
        unapplied = set(stack.workers) - set(seen.applied)
        assert not unapplied, f"workers applied no fresh toggle: {sorted(unapplied)}"
        assert not seen.still_lost, f"the monitor still holds as lost: {seen.still_lost}"
        assert not seen.problems, "errors in the monitor's or workers' output:\n" + "\n".join(
            seen.problems[:20]
        )

        # Only the broker restarted: the monitor and the workers are the same containers,
        # running, started once.
        after = snap.states
        for container in [stack.monitor, *stack.workers]:
            old, new = before.states[container], after.get(container)
            assert new is not None, f"{old.name} is gone"
            assert new.running, f"{new.name} is not running: {new.brief()}"
            assert (new.started_at, new.restart_count) == (old.started_at, old.restart_count), (
                f"{new.name} restarted: before {old.brief()}; after {new.brief()}"
            )
        for service, ids in (("monitor", [stack.monitor]), ("workers", stack.workers)):
            now_ids = stack.project.container_ids(service)
            assert sorted(now_ids) == sorted(ids), f"{service} containers changed: {now_ids}"
        broker_before, broker_after = before.states[stack.broker], after.get(stack.broker)
        assert broker_after is not None, "the broker's container is gone"
        assert broker_after.started_at != broker_before.started_at, "the broker did not restart"
        assert broker_after.health == "healthy", f"broker: {broker_after.brief()}"

        # The healthcheck saw the outage: not healthy after the fault, then healthy.
        labels = [label for _, label in watch.seen[1:]]
        assert any(not label.endswith("/healthy") for label in labels), (
            f"the broker's health never left healthy: {watch.story()}"
        )
    except (AssertionError, ComposeError, StackFailure) as error:
        failure = f"{name}: {type(error).__name__}: {error}"
    if failure is not None:
        pytest.fail(
            f"{failure}\n"
            f"seen: {seen.summary(fleet.worker_ids)}\n"
            f"broker health: {watch.story()}\n"
            f"{stack.logs_for_failure()}",
            pytrace=False,
        )

    acked_last = max(seen.acked.values(), key=lambda r: str(r.get("time")))
    worker_reconnects = ", ".join(
        f"{fleet.worker_ids[c]}@{seconds_after(r, fault_at)}"
        for c, r in sorted(seen.workers_connected.items(), key=lambda i: str(i[1].get("time")))
    )
    print(
        f"\n{name}: fault command(s) took {fault_done:.1f}s; healed (seen) in {healed_in:.1f}s\n"
        f"  broker health: {watch.story()}\n"
        f"  monitor connected (session {(seen.monitor_connected or {}).get('session')}) at "
        f"{seconds_after(seen.monitor_connected, fault_at)}; workers connected: "
        f"{worker_reconnects}\n"
        f"  every worker acknowledged a fresh toggle by {seconds_after(acked_last, fault_at)} "
        f"({len(seen.fresh)} fresh toggles sent)\n"
        f"  workers marked lost meanwhile: {seen.marked_lost or 'none'}"
    )


def test_broker_restart_heals(fleet: Fleet) -> None:
    check_heals(fleet, "restart rabbitmq", restart_broker)


def test_broker_sigkill_then_up_heals(fleet: Fleet) -> None:
    check_heals(fleet, "kill -s SIGKILL rabbitmq; up -d --no-deps rabbitmq", kill_broker_then_up)
