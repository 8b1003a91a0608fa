"""The fleet as the monitor knows it: desired vs observed state, liveness, pending
commands. Pure: takes a clock and messages, returns what to do and what happened."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from models.messages import Command, Goodbye, Outcome, Registration, Status
from models.monitor_model import FleetView, Liveness, Remembered, Wish, WorkerView
from models.worker_model import FLEET, FieldChange, Worker, WorkerChanges, utc_now

# A worker is lost after this many status intervals without a word.
LOST_AFTER_INTERVALS = 3
# Earlier processes of a worker whose late reports are known for what they are.
FORMER_PROCESSES = 8


class UnknownWorker(KeyError):
    pass


@dataclass(frozen=True)
class Transition:
    worker_id: str
    old: Liveness | None  # None: first heard of
    new: Liveness | None  # None: forgotten after the retention time


@dataclass(frozen=True)
class AckResult:
    worker_id: str
    command_id: UUID
    outcome: Outcome
    diff: dict[str, FieldChange]
    latency: float | None  # None: not awaited from this worker (late or unknown)


@dataclass(frozen=True)
class Heard:
    """What hearing from a worker changed, and the command it calls for, if any."""

    worker_id: str
    transition: Transition | None = None
    changed: dict[str, FieldChange] = field(default_factory=dict)
    restarted: bool = False
    ack: AckResult | None = None
    observed: Worker | None = None  # its state as now held; None: the report was set aside
    reconcile: Command | None = None


@dataclass(frozen=True)
class Expired:
    command_id: UUID
    worker_ids: frozenset[str]


@dataclass
class _Pending:
    command: Command
    issued: float
    awaiting: set[str]


@dataclass
class _Record:
    worker_id: str
    status_interval: float
    # Monotonic moment from which silence counts: when last heard, or the end of a grace.
    silent_since: float
    last_seen_at: datetime
    liveness: Liveness = Liveness.ONLINE
    desired: bool | None = None
    observed: Worker | None = None
    started_at: datetime | None = None
    # The process whose report `observed` is, and the processes later ones replaced.
    observed_from: datetime | None = None
    former: deque[datetime] = field(default_factory=lambda: deque(maxlen=FORMER_PROCESSES))
    pending: UUID | None = None
    latency: float | None = None
    rate: float | None = None
    # The report the rate is measured from: one a status interval or more before the last.
    rate_from: Worker | None = None

    def registered(self, process: datetime) -> bool:
        """The process a registration names is the worker's now; returns whether it
        replaced another (a restart), which is remembered as replaced. A replaced process
        registering again (a redelivery of registrations not acked) is current again."""
        previous, self.started_at = self.started_at, process
        if process in self.former:
            self.former.remove(process)
        if previous is None or previous == process:
            return False
        self.former.append(previous)
        return True

    def view(self) -> WorkerView:
        return WorkerView(
            worker_id=self.worker_id,
            liveness=self.liveness,
            desired_active=self.desired,
            observed=self.observed,
            pending_command=self.pending,
            status_interval=self.status_interval,
            last_seen_at=self.last_seen_at,
            last_command_latency_ms=None if self.latency is None else self.latency * 1000,
            started_at=self.started_at,
            # A worker that is not reporting has no current rate.
            activity_rate=self.rate if self.liveness is Liveness.ONLINE else None,
        )


@dataclass
class Registry:
    clock: Callable[[], float]
    wall: Callable[[], datetime] = utc_now
    command_ttl: float = 30.0
    retention: float = 3600.0
    # A gap this long between the monitor's own echoes means it was deaf meanwhile.
    deaf_after: float = 3.0
    # Extra silence forgiven after a deaf spell or a reconnect.
    reconnect_grace: float = 0.0
    fleet_desired: bool | None = None
    _records: dict[str, _Record] = field(default_factory=dict)
    _pending: dict[UUID, _Pending] = field(default_factory=dict)
    _generation: int = 0
    _last_echo: float | None = None
    # Desired states restored from history, for workers not heard from yet, and the
    # fleet's until this monitor gives its own.
    _remembered: dict[str, Wish] = field(default_factory=dict)
    _remembered_fleet: Wish | None = None

    def restore(self, fleet: Wish | None, desired: dict[str, Wish]) -> None:
        """Desired state kept from before a monitor restart; workers are steered back
        to it when they are heard from (see _reconcile), unless they applied a newer
        command since (see _wanted)."""
        self.fleet_desired = None if fleet is None else fleet.active
        self._remembered, self._remembered_fleet = dict(desired), fleet

    def remember(self, workers: list[Remembered], status_interval: float) -> None:
        """Workers known from before a monitor restart, so that none is lost track of:
        those online then are online until they stay silent too long (then lost, as
        ever); the lost and the offline stay so until heard from, or forgotten once the
        retention time has passed since they were last seen. What they do is unknown
        until they report; what is wanted of them is the wish remembered for them."""
        now, wall = self.clock(), self.wall()
        for worker in workers:
            wish = self._remembered.get(worker.worker_id, self._remembered_fleet)
            gone_for = max(0.0, (wall - worker.last_seen).total_seconds())
            self._records[worker.worker_id] = _Record(
                worker.worker_id,
                status_interval,
                now if worker.liveness is Liveness.ONLINE else now - gone_for,
                worker.last_seen,
                liveness=worker.liveness,
                desired=None if wish is None else wish.active,
            )
        # A wish for a worker the history no longer knows is not kept: if it comes back,
        # it is a new worker, given the fleet's wish.
        self._remembered = {w: wish for w, wish in self._remembered.items() if w in self._records}

    # -- hearing from workers ------------------------------------------------------

    def register(self, message: Registration) -> Heard:
        record, transition = self._heard(message.state, message.status_interval)
        process = message.started_at
        restarted = record.registered(process)
        # Registrations and statuses travel on two queues: a status this process sent
        # after this (an acknowledgement right after a reconnect, say) may have come first.
        # Its older state is not taken: that would flip the view back and forth. Only the
        # same process's clock orders its reports; another's may be another host's.
        observed = record.observed
        overtaken = (
            observed is not None
            and record.observed_from == process
            and message.state.timestamp < observed.timestamp
        )
        changed = {} if overtaken else self._observe(record, message.state, process)
        if restarted:
            record.rate, record.rate_from = None, message.state  # a new process: counts anew
        return Heard(
            record.worker_id,
            transition,
            changed,
            restarted,
            observed=record.observed,
            reconcile=self._reconcile(record),
        )

    def status(self, message: Status) -> Heard:
        known = self._records.get(message.worker_id)
        if known is not None and (
            known.liveness is Liveness.OFFLINE or message.started_at in known.former
        ):
            # Overtaken on the way (statuses travel on another queue than registrations
            # and goodbyes): the worker said goodbye, and only a registration brings it
            # back; or its process has been replaced, as the successor's registration
            # said. Its state is gone with it, but its acknowledgement still answers the
            # command it applied (a successor is steered without waiting for an expiry).
            ack = None if message.ack is None else self._acknowledged(known, message)
            return Heard(known.worker_id, ack=ack, reconcile=self._reconcile(known))
        record, transition = self._heard(message.state, message.status_interval)
        if record.started_at is None:  # first heard through a status (the monitor restarted)
            record.started_at = message.started_at
        changed = self._observe(record, message.state, message.started_at)
        ack = None if message.ack is None else self._acknowledged(record, message)
        return Heard(
            record.worker_id,
            transition,
            changed,
            ack=ack,
            observed=record.observed,
            reconcile=self._reconcile(record),
        )

    def goodbye(self, message: Goodbye) -> Transition | None:
        record = self._records.get(message.worker_id)
        if record is None:
            return None
        # A goodbye ends its process: whatever is heard of the worker next is newer.
        self._observe(record, message.state, None)
        record.silent_since, record.last_seen_at = self.clock(), self.wall()
        return self._move(record, Liveness.OFFLINE)

    def echo(self) -> bool:
        """The monitor heard its own echo: it could hear everything sent before it. After
        a deaf spell every online worker gets a fresh grace period (returns True then)."""
        now = self.clock()
        was_deaf = self._last_echo is not None and now - self._last_echo > self.deaf_after
        self._last_echo = now
        if was_deaf:
            self.grace()
        return was_deaf

    # -- steering ------------------------------------------------------------------

    def command(self, target: str, changes: WorkerChanges) -> Command:
        """A command for one worker, or for the fleet with target 'all', now pending."""
        if target == FLEET:
            if changes.active is not None:
                self.fleet_desired = changes.active
                # The fleet's new wish replaces older ones, and wins: its generation may
                # be lower than workers' if this monitor's clock is behind (see _wanted).
                self._remembered.clear()
                self._remembered_fleet = None
            # Workers not online get the new desired state too, and converge when back.
            targets = list(self._records.values())
            awaited = [r for r in targets if r.liveness is Liveness.ONLINE]
        elif target in self._records:
            targets = awaited = [self._records[target]]
        else:
            raise UnknownWorker(target)
        command = Command(target=target, changes=changes, generation=self._next_generation())
        for record in targets:
            if changes.active is not None:
                record.desired = changes.active
                if record.observed is None:  # not heard since a restart: the wish it meets
                    self._remembered[record.worker_id] = Wish(changes.active, command.generation)
        for record in awaited:
            record.pending = command.command_id
        if awaited:
            awaiting = {r.worker_id for r in awaited}
            self._pending[command.command_id] = _Pending(command, self.clock(), awaiting)
        return command

    def toggle(self) -> Command:
        """Flip the fleet's desired state (the demo's periodic toggling)."""
        return self.command(FLEET, WorkerChanges(active=not self.fleet_desired))

    def unroutable(self, command_id: UUID) -> frozenset[str]:
        """No queue took the command: nobody will answer it. Returns who was awaited."""
        return self._forget(command_id)

    def awaiting(self, command_id: UUID) -> list[str]:
        """The workers whose acknowledgement of this command is still outstanding."""
        pending = self._pending.get(command_id)
        return [] if pending is None else sorted(pending.awaiting)

    def pending_commands(self) -> list[Command]:
        """Commands still awaiting an answer, oldest first (re-sent after a reconnect)."""
        return [pending.command for pending in self._pending.values()]

    # -- time ----------------------------------------------------------------------

    def sweep(self) -> tuple[list[Transition], list[Expired]]:
        """Mark quiet workers lost, forget long-gone ones, expire unanswered commands.
        Silence is measured up to the monitor's last echo, the latest moment it provably
        could hear: while it is deaf, nobody's silence grows."""
        now = self.clock()
        transitions: list[Transition] = []
        for record in list(self._records.values()):
            if record.liveness is Liveness.ONLINE:
                heard_until = (
                    self._last_echo if self._last_echo is not None else record.silent_since
                )
                quiet = heard_until - record.silent_since
                if quiet > LOST_AFTER_INTERVALS * record.status_interval:
                    record.liveness = Liveness.LOST
                    transitions.append(Transition(record.worker_id, Liveness.ONLINE, Liveness.LOST))
            elif now - record.silent_since > self.retention:
                del self._records[record.worker_id]
                self._remembered.pop(record.worker_id, None)
                transitions.append(Transition(record.worker_id, record.liveness, None))
                for command_id, pending in list(self._pending.items()):  # awaited no more
                    pending.awaiting.discard(record.worker_id)
                    if not pending.awaiting:
                        del self._pending[command_id]
        expired = [
            Expired(command_id, frozenset(pending.awaiting))
            for command_id, pending in list(self._pending.items())
            if now - pending.issued > self.command_ttl
        ]
        for item in expired:
            self._forget(item.command_id)
        return transitions, expired

    def grace(self) -> None:
        """The monitor was deaf or disconnected for a while: that is not the workers'
        fault. Silence counts again only after `reconnect_grace` (workers that lost the
        broker too may still be in their reconnect backoff)."""
        start = self.clock() + self.reconnect_grace
        for record in self._records.values():
            if record.liveness is Liveness.ONLINE:
                record.silent_since = max(record.silent_since, start)

    # -- views -----------------------------------------------------------------------

    def view(self) -> FleetView:
        workers = [self._records[key].view() for key in sorted(self._records)]
        return FleetView(fleet_desired_active=self.fleet_desired, workers=workers)

    def worker(self, worker_id: str) -> WorkerView:
        if worker_id not in self._records:
            raise UnknownWorker(worker_id)
        return self._records[worker_id].view()

    # -- internals -------------------------------------------------------------------

    def _heard(self, state: Worker, status_interval: float) -> tuple[_Record, Transition | None]:
        now, wall, worker_id = self.clock(), self.wall(), state.worker_id
        record = self._records.get(worker_id)
        if record is None:
            desired = self._wanted(state)
            record = _Record(worker_id, status_interval, now, wall, desired=desired)
            self._records[worker_id] = record
            transition: Transition | None = Transition(worker_id, None, Liveness.ONLINE)
        else:
            if record.observed is None:  # remembered from before a restart, heard at last
                record.desired = self._wanted(state)
            transition = self._move(record, Liveness.ONLINE)
        record.status_interval = status_interval
        record.silent_since, record.last_seen_at = now, wall
        return record, transition

    def _wanted(self, state: Worker) -> bool | None:
        """What a worker heard for the first time is wanted to do: the fleet's wish, or
        (None) what it does. Or, after a restart, the wish remembered for it (its own,
        else the fleet's): unless it applied a newer command than that wish, which is
        then the newer wish itself (the old monitor stopped before its history took it)."""
        wish = self._remembered.pop(state.worker_id, self._remembered_fleet)
        if wish is None:
            return self.fleet_desired
        return None if state.generation > wish.generation else wish.active

    def _observe(
        self, record: _Record, state: Worker, process: datetime | None
    ) -> dict[str, FieldChange]:
        """Take the state a worker's process reported; returns how its active flag changed."""
        before = record.observed
        record.observed, record.observed_from = state, process
        self._measure_rate(record, state)
        if record.desired is None:
            record.desired = state.active  # nothing asked yet: what it does is what we want
        # Generations must keep rising across monitor restarts.
        self._generation = max(self._generation, state.generation)
        if before is None or before.active == state.active:
            return {}
        return {"active": FieldChange(old=before.active, new=state.active)}

    @staticmethod
    def _measure_rate(record: _Record, state: Worker) -> None:
        """Units of work per second, by the worker's clock, over a status interval or more:
        an acknowledgement comes between two periodic reports, and work is counted in
        whole units, so a shorter span would show rates no worker can do."""
        start = record.rate_from
        if start is None or state.activity < start.activity or state.timestamp < start.timestamp:
            record.rate_from = state  # the first report, or the count or clock started over
            return
        elapsed = (state.timestamp - start.timestamp).total_seconds()
        if elapsed >= record.status_interval:
            record.rate = (state.activity - start.activity) / elapsed
            record.rate_from = state

    def _acknowledged(self, record: _Record, message: Status) -> AckResult:
        assert message.ack is not None
        ack = message.ack
        pending = self._pending.get(ack.command_id)
        latency = None
        if pending is not None and record.worker_id in pending.awaiting:
            latency = self.clock() - pending.issued
            record.latency = latency
            pending.awaiting.discard(record.worker_id)
            if not pending.awaiting:
                del self._pending[ack.command_id]
        if record.pending == ack.command_id:
            record.pending = None
        return AckResult(record.worker_id, ack.command_id, ack.outcome, ack.diff, latency)

    def _reconcile(self, record: _Record) -> Command | None:
        if (
            record.liveness is not Liveness.ONLINE
            or record.pending is not None
            or record.desired is None
            or record.observed is None
            or record.observed.active == record.desired
        ):
            return None
        return self.command(record.worker_id, WorkerChanges(active=record.desired))

    def _forget(self, command_id: UUID) -> frozenset[str]:
        pending = self._pending.pop(command_id, None)
        if pending is None:
            return frozenset()
        for worker_id in pending.awaiting:
            record = self._records.get(worker_id)
            if record is not None and record.pending == command_id:
                record.pending = None
        return frozenset(pending.awaiting)

    def _move(self, record: _Record, liveness: Liveness) -> Transition | None:
        if record.liveness is liveness:
            return None
        old, record.liveness = record.liveness, liveness
        return Transition(record.worker_id, old, liveness)

    def _next_generation(self) -> int:
        # Wall-clock milliseconds keep generations rising even across a monitor restart
        # that has not yet heard the workers' current generations.
        wall_ms = int(self.wall().timestamp() * 1000)
        self._generation = max(self._generation + 1, wall_ms)
        return self._generation
