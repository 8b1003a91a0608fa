"""The monitor service: hears the fleet, steers it, and logs every action."""

from __future__ import annotations

import logging
import time

from bus.codec import decode
from bus.connection import Bus, Delivery
from bus.errors import BusError, InvalidMessage, Unroutable
from bus.logs import fields
from bus.settings import Settings
from bus.topology import ECHO_KEY
from models.messages import ECHO, LIFECYCLE, STATUS, Command, Echo, Registration
from models.worker_model import WorkerChanges
from monitor.registry import Heard, Registry, Transition

log = logging.getLogger("fireworks.monitor")


class MonitorService:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.topology = bus.topology
        # Liveness is judged a few times per status interval, and each time the monitor
        # checks that it can hear at all by sending itself an echo.
        sweep_interval = min(1.0, settings.status_interval / 2)
        self.registry = Registry(
            time.monotonic,
            command_ttl=settings.command_ttl,
            retention=settings.worker_retention,
            deaf_after=3 * sweep_interval + 1.0,
        )
        bus.every(sweep_interval, self.sweep)
        if settings.toggle_interval > 0:
            bus.every(settings.toggle_interval, self.toggle)

    # -- bus hooks --------------------------------------------------------------

    def on_connected(self, bus: Bus) -> None:
        bus.consume("register", self.topology.register_queue, self.on_lifecycle)
        bus.consume("status", self.topology.status_queue, self.on_status)
        self.registry.grace()
        pending = self.registry.pending_commands()
        log.info(
            "listening",
            extra=fields(workers=len(self.registry.view().workers), resending=len(pending)),
        )
        for command in pending:
            self._send(command)

    def on_disconnected(self) -> None:
        log.warning("disconnected from the broker; workers keep their state")

    def on_stopping(self, bus: Bus) -> None:
        pass

    # -- steering ---------------------------------------------------------------

    def command(self, target: str, active: bool) -> Command:
        """Activate or deactivate one worker, or the fleet with target 'all'."""
        command = self.registry.command(target, WorkerChanges(active=active))
        self._send(command)
        return command

    def toggle(self) -> None:
        command = self.registry.toggle()
        log.info("toggling fleet", extra=fields(active=command.changes.active))
        self._send(command)

    def sweep(self) -> None:
        if self.bus.connected:
            self.bus.publish(
                "status", self.topology.status_exchange, ECHO_KEY, Echo(), persistent=False
            )
        transitions, expired = self.registry.sweep()
        for transition in transitions:
            self._log_transition(transition)
        for item in expired:
            log.warning(
                "command expired unanswered",
                extra=fields(command=item.command_id, workers=sorted(item.worker_ids)),
            )

    def _send(self, command: Command) -> None:
        about = {
            "worker": command.target,
            "command": command.command_id,
            "generation": command.generation,
            **command.changes.fields(),
            "awaiting": self.registry.awaiting(command.command_id),
        }
        try:
            self.bus.publish(
                "command",
                self.topology.command_exchange,
                self.topology.command_key(command.target),
                command,
                mandatory=True,
                expiration=self.settings.command_ttl,
            )
        except Unroutable:
            self.registry.unroutable(command.command_id)
            log.warning("command unroutable: no worker queue", extra=fields(**about))
        except BusError as error:
            log.warning(
                "command not sent yet, will re-send after reconnect",
                extra=fields(**about, reason=str(error)),
            )
        else:
            log.info("command sent", extra=fields(**about))

    # -- hearing ----------------------------------------------------------------

    def on_lifecycle(self, delivery: Delivery) -> None:
        message = decode(delivery.body, LIFECYCLE, delivery.content_type)
        _check_key(delivery, self.topology.lifecycle_key(message.kind, message.worker_id))
        if isinstance(message, Registration):
            heard = self.registry.register(message)
            state = message.state
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
            transition = self.registry.goodbye(message)
            if transition is not None:
                self._log_transition(transition)

    def on_status(self, delivery: Delivery) -> None:
        if delivery.routing_key == ECHO_KEY:
            decode(delivery.body, ECHO, delivery.content_type)
            if self.registry.echo():
                log.info("hearing the fleet again; online workers get a fresh grace period")
            return
        message = decode(delivery.body, STATUS, delivery.content_type)
        _check_key(delivery, self.topology.status_key(message.worker_id))
        log.debug(
            "status",
            extra=fields(
                worker=message.worker_id,
                seq=message.seq,
                active=message.state.active,
                activity=message.state.activity,
            ),
        )
        self._after(self.registry.status(message))

    def _after(self, heard: Heard) -> None:
        if heard.transition is not None:
            self._log_transition(heard.transition)
        if heard.ack is not None:
            ack = heard.ack
            latency = None if ack.latency is None else round(ack.latency * 1000, 2)
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
        for name, change in heard.changed.items():
            log.info(f"observed {name}: {change}", extra=fields(worker=heard.worker_id))
        if heard.reconcile is not None:
            log.info("reconciling to desired state", extra=fields(worker=heard.reconcile.target))
            self._send(heard.reconcile)

    @staticmethod
    def _log_transition(transition: Transition) -> None:
        old = transition.old or "new"
        new = transition.new or "forgotten"
        level = logging.WARNING if new == "lost" else logging.INFO
        log.log(level, f"liveness {old} -> {new}", extra=fields(worker=transition.worker_id))


def _check_key(delivery: Delivery, expected: str) -> None:
    """A message's routing key names its sender; a body claiming another is spoofed."""
    if delivery.routing_key != expected:
        raise InvalidMessage(f"routing key {delivery.routing_key!r} does not match {expected!r}")
