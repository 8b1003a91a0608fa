"""The monitor service: hears the fleet, steers it, logs every action, and tells its
listeners (history, live stream, metrics) about every change.

The registry is guarded by a lock, held only briefly and never while talking to the
broker: the API reads and steers from its own thread without waiting on the bus, even
while the bus waits for a broker that stopped answering. Publishing happens on the bus
thread only."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from bus.backoff import Backoff
from bus.codec import decode
from bus.connection import Bus, Delivery
from bus.errors import BusError, InvalidMessage
from bus.logs import fields
from bus.settings import Settings
from bus.signing import sign
from bus.topology import ECHO_KEY
from models.messages import COMMAND, ECHO, LIFECYCLE, STATUS, Command, Echo, Registration
from models.monitor_model import Detail, EventKind, FleetEvent, Liveness, Wish
from models.worker_model import WorkerChanges, utc_now
from monitor.registry import Heard, Registry, Transition
from monitor.store import HistoryStore

Listener = Callable[[FleetEvent], None]
# After the monitor reconnects or hears again, workers get this long on top of their
# usual allowance: they may have lost the broker too, and be waiting out their backoff.
RECONNECT_GRACE = Backoff().cap
# Seconds between counts of the dead-letter queue (the monitor's and the workers' invalid
# messages): a broker round trip each, so not on every sweep.
DEAD_LETTER_COUNT_EVERY = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class Issued:
    command: Command
    awaiting: list[str]  # whose acknowledgement it waits for


log = logging.getLogger("fireworks.monitor")


class MonitorService:
    def __init__(self, settings: Settings, bus: Bus, store: HistoryStore | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.topology = bus.topology
        self.store = store
        self.lock = threading.RLock()
        # Called on the bus thread for every event; each must return at once.
        self.listeners: list[Listener] = [] if store is None else [store.record]
        # Messages waiting in the dead-letter queue as last counted (None: not yet).
        self.dead_letters: int | None = None
        # Liveness is judged a few times per status interval, and each time the monitor
        # checks that it can hear at all by sending itself an echo.
        sweep_interval = min(1.0, settings.status_interval / 2)
        self.registry = Registry(
            time.monotonic,
            command_ttl=settings.command_ttl,
            retention=settings.worker_retention,
            deaf_after=3 * sweep_interval + 1.0,
            reconnect_grace=RECONNECT_GRACE,
        )
        if store is not None:
            self.registry.restore(*store.desired())
            since = utc_now() - timedelta(seconds=settings.worker_retention)
            self.registry.remember(store.remembered(since), settings.status_interval)
        bus.every(sweep_interval, self.sweep)
        bus.every(DEAD_LETTER_COUNT_EVERY, self.count_dead_letters)
        if settings.toggle_interval > 0:
            bus.every(settings.toggle_interval, self.toggle)

    # -- bus hooks --------------------------------------------------------------

    def on_connected(self, bus: Bus) -> None:
        bus.declare(self.topology.declare_shared)
        bus.consume("register", self.topology.register_queue, self.on_lifecycle)
        bus.consume("status", self.topology.status_queue, self.on_status)
        bus.on_returned("command", self.on_returned)
        with self.lock:
            self.registry.grace()
            pending = self.registry.pending_commands()
            workers = len(self.registry.view().workers)
        log.info("listening", extra=fields(workers=workers, resending=len(pending)))
        for command in pending:
            self._send(command)
        self.bus.call_later(0.0, self.count_dead_letters)  # a job: a failed count ends nothing

    def on_disconnected(self) -> None:
        self.dead_letters = None  # not known again until counted on the next session
        log.warning("disconnected from the broker; workers keep their state")

    def on_stopping(self, bus: Bus) -> None:
        pass  # nothing to say on the way out: workers keep their state

    # -- steering ---------------------------------------------------------------

    def command(self, target: str, active: bool) -> Issued:
        """Activate or deactivate one worker, or the fleet with target 'all'. Safe from any
        thread: the command is pending at once and published by the bus thread."""
        with self.lock:
            command = self.registry.command(target, WorkerChanges(active=active))
            self._desire(command)
            issued = Issued(command, self.registry.awaiting(command.command_id))
        self.bus.call_threadsafe(functools.partial(self._send, command))
        return issued

    def read(self, query: Callable[[Registry], T]) -> T:
        """Look at the registry from any thread."""
        with self.lock:
            return query(self.registry)

    def toggle(self) -> None:
        if not self.bus.connected:
            return  # flipping a fleet nobody can reach would only queue up flips
        with self.lock:
            command = self.registry.toggle()
            self._desire(command)
        log.info("toggling fleet", extra=fields(active=command.changes.active))
        self._send(command)

    def _desire(self, command: Command) -> None:
        if self.store is not None and command.changes.active is not None:
            self.store.desire(command.target, Wish(command.changes.active, command.generation))

    def sweep(self) -> None:
        if self.bus.connected:
            self.bus.publish(
                "status", self.topology.status_exchange, ECHO_KEY, Echo(), persistent=False
            )
        with self.lock:
            transitions, expired = self.registry.sweep()
        for transition in transitions:
            self._log_transition(transition)
        for item in expired:
            log.warning(
                "command expired unanswered",
                extra=fields(command=item.command_id, workers=sorted(item.worker_ids)),
            )
            for worker_id in sorted(item.worker_ids):
                self._emit(EventKind.EXPIRED, worker_id, item.command_id)

    def count_dead_letters(self) -> None:
        if self.bus.connected:
            self.dead_letters = self.bus.queue_depth(self.topology.dead_queue)

    def _send(self, command: Command) -> None:
        """Publish a pending command (bus thread, never under the lock); what is logged and
        told of it is worked out after it went out."""
        key = self.settings.command_signing_key
        if key is not None:  # signed afresh on every (re)send: a new expiry each time
            command = sign(
                command,
                key.get_secret_value().encode(),
                self.settings.command_signing_key_id,
                utc_now(),
                self.settings.command_ttl,
            )
        failure = None
        try:
            self.bus.publish(
                "command",
                self.topology.command_exchange,
                self.topology.command_key(command.target),
                command,
                mandatory=True,  # no queue takes it: back to on_returned
                # Transient and unconfirmed: nothing is lost with a broker restart or a
                # message in flight, as a command stays pending here until acknowledged
                # or expired, and is re-sent on reconnect.
                persistent=False,
                expiration=self.settings.command_ttl,
            )
        except BusError as error:
            failure = str(error)
        with self.lock:
            awaiting = self.registry.awaiting(command.command_id)
        about = _about(command, awaiting)
        if failure is not None:
            log.warning(
                "command not sent yet, will re-send after reconnect",
                extra=fields(**about, reason=failure),
            )
        else:
            log.info("command sent", extra=fields(**about))
            self._emit(
                EventKind.COMMAND_SENT,
                command.target,
                command.command_id,
                active=command.changes.active,
                awaiting=len(awaiting),
            )

    # -- hearing ----------------------------------------------------------------

    def on_returned(self, delivery: Delivery) -> None:
        """A command no worker queue took: nobody will answer it."""
        command = decode(delivery.body, COMMAND, delivery.content_type)
        with self.lock:
            awaited = self.registry.unroutable(command.command_id)
        about = _about(command, sorted(awaited))
        log.warning("command unroutable: no worker queue", extra=fields(**about))
        self._emit(EventKind.UNROUTABLE, command.target, command.command_id)

    def on_lifecycle(self, delivery: Delivery) -> None:
        message = decode(delivery.body, LIFECYCLE, delivery.content_type)
        _check_key(delivery, self.topology.lifecycle_key(message.kind, message.worker_id))
        if isinstance(message, Registration):
            with self.lock:
                heard = self.registry.register(message)
            # As the monitor holds it: a status may have overtaken the registration.
            state = heard.observed
            assert state is not None  # a registration is taken or overtaken, never set aside
            self._emit(
                EventKind.REGISTERED,
                message.worker_id,
                active=state.active,
                activity=state.activity,
                restarted=heard.restarted,
            )
            log.info(
                "restarted" if heard.restarted else "registered",
                extra=fields(
                    worker=message.worker_id,
                    active=state.active,
                    activity=state.activity,
                    interval=message.status_interval,
                ),
            )
            self._after(heard)
        else:
            log.info("said goodbye", extra=fields(worker=message.worker_id))
            with self.lock:
                transition = self.registry.goodbye(message)
            if transition is not None:
                self._log_transition(transition)

    def on_status(self, delivery: Delivery) -> None:
        if delivery.routing_key == ECHO_KEY:
            decode(delivery.body, ECHO, delivery.content_type)
            with self.lock:
                was_deaf = self.registry.echo()
            if was_deaf:
                log.info("hearing the fleet again; online workers get a fresh grace period")
            return
        message = decode(delivery.body, STATUS, delivery.content_type)
        _check_key(delivery, self.topology.status_key(message.worker_id))
        if log.isEnabledFor(logging.DEBUG):  # every status: not even its fields otherwise
            log.debug(
                "status",
                extra=fields(
                    worker=message.worker_id,
                    seq=message.seq,
                    active=message.state.active,
                    activity=message.state.activity,
                ),
            )
        with self.lock:
            heard = self.registry.status(message)
        if heard.transition is not None and heard.transition.old is None:
            # First heard through a status (the monitor restarted): new to its listeners.
            self._emit(
                EventKind.REGISTERED,
                message.worker_id,
                active=message.state.active,
                activity=message.state.activity,
                via="status",
            )
        if self.store is not None and heard.observed is not None:  # not a report it set aside
            self.store.sample(
                message.worker_id, utc_now(), heard.observed.active, heard.observed.activity
            )
        self._after(heard)

    def _after(self, heard: Heard) -> None:
        if heard.transition is not None:
            self._log_transition(heard.transition)
        if heard.ack is not None:
            ack = heard.ack
            latency = None if ack.latency is None else round(ack.latency * 1000, 2)
            self._emit(
                EventKind.ACKNOWLEDGED,
                ack.worker_id,
                ack.command_id,
                latency,
                outcome=ack.outcome.value,
                diff=", ".join(f"{k}: {v}" for k, v in ack.diff.items()),
            )
            log.info(
                "acknowledged",
                extra=fields(
                    worker=ack.worker_id,
                    command=ack.command_id,
                    outcome=ack.outcome,
                    diff={name: str(change) for name, change in ack.diff.items()},
                    latency_ms=latency,
                ),
            )
        told = {} if heard.ack is None else heard.ack.diff
        for name, change in heard.changed.items():
            if told.get(name) != change:  # not already in the acknowledgement's line
                log.info(f"observed {name}: {change}", extra=fields(worker=heard.worker_id))
            if name == "active":
                kind = EventKind.ACTIVATED if change.new else EventKind.DEACTIVATED
                self._emit(kind, heard.worker_id)
        if heard.reconcile is not None:
            log.info("reconciling to desired state", extra=fields(worker=heard.reconcile.target))
            self._send(heard.reconcile)

    def _log_transition(self, transition: Transition) -> None:
        old = transition.old or "new"
        new = transition.new or "forgotten"
        level = logging.WARNING if new == "lost" else logging.INFO
        log.log(level, f"liveness {old} -> {new}", extra=fields(worker=transition.worker_id))
        if transition.new is None:
            kind: EventKind | None = EventKind.FORGOTTEN
            if self.store is not None:
                self.store.forget(transition.worker_id)
        else:
            kind = _TRANSITION_EVENTS.get((transition.old, transition.new))
        if kind is not None:
            self._emit(kind, transition.worker_id, old=transition.old)

    def _emit(
        self,
        kind: EventKind,
        worker_id: str | None,
        command_id: UUID | None = None,
        latency_ms: float | None = None,
        **detail: Detail,
    ) -> None:
        event = FleetEvent(
            at=utc_now(),
            kind=kind,
            worker_id=worker_id,
            command_id=command_id,
            latency_ms=latency_ms,
            detail=detail,
        )
        for listener in self.listeners:
            listener(event)


# Which liveness transitions are events of their own (a new worker's is REGISTERED).
_TRANSITION_EVENTS: dict[tuple[Liveness | None, Liveness], EventKind] = {
    (Liveness.ONLINE, Liveness.LOST): EventKind.LOST,
    (Liveness.ONLINE, Liveness.OFFLINE): EventKind.OFFLINE,
    (Liveness.LOST, Liveness.OFFLINE): EventKind.OFFLINE,
    (Liveness.LOST, Liveness.ONLINE): EventKind.RECONNECTED,
    (Liveness.OFFLINE, Liveness.ONLINE): EventKind.RECONNECTED,
}


def _about(command: Command, awaiting: list[str]) -> dict[str, object]:
    """A command's log fields: whom it is for, what it changes, whom it still awaits."""
    return {
        "worker": command.target,
        "command": command.command_id,
        "generation": command.generation,
        **command.changes.fields(),
        "awaiting": awaiting,
    }


def _check_key(delivery: Delivery, expected: str) -> None:
    """A message's routing key names its sender; a body claiming another is spoofed."""
    if delivery.routing_key != expected:
        raise InvalidMessage(f"routing key {delivery.routing_key!r} does not match {expected!r}")
