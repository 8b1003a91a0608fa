"""The worker service: registers, obeys commands, works, and reports its status."""

from __future__ import annotations

import logging

from bus.codec import decode
from bus.connection import Bus, Delivery
from bus.errors import InvalidMessage
from bus.logs import fields
from bus.settings import Settings
from bus.signing import verify
from bus.topology import Topology
from models.messages import COMMAND, Ack, Goodbye, Registration, Status
from models.worker_model import FLEET, utc_now
from workers.state import WorkerState

log = logging.getLogger("fireworks.worker")


class WorkerService:
    def __init__(self, settings: Settings, worker_id: str, bus: Bus) -> None:
        self.worker_id = worker_id
        self.settings = settings
        self.bus = bus
        self.topology: Topology = bus.topology
        self.core = WorkerState(worker_id, utc_now(), settings.work_interval)
        self.started_at = utc_now()
        self.seq = 0
        bus.every(settings.status_interval, self.report)

    # -- bus hooks --------------------------------------------------------------

    def on_connected(self, bus: Bus) -> None:
        # The worker's broker user may only use the shared topology (deploy/rabbitmq),
        # so it declares that only where it is missing (and its user may: guest).
        bus.declare(
            lambda channel: self.topology.declare_worker(channel, self.worker_id),
            missing=self.topology.declare_shared,
        )
        bus.consume("command", self.topology.worker_queue(self.worker_id), self.on_command)
        registration = Registration(
            state=self.core.stamp(utc_now()),
            status_interval=self.settings.status_interval,
            started_at=self.started_at,
        )
        self._lifecycle(registration)
        log.info("registered", extra=fields(worker=self.worker_id, **self._summary()))

    def on_disconnected(self) -> None:
        log.warning("disconnected from the broker", extra=fields(worker=self.worker_id))

    def on_stopping(self, bus: Bus) -> None:
        self._lifecycle(Goodbye(state=self.core.stamp(utc_now())))
        log.info("said goodbye", extra=fields(worker=self.worker_id, **self._summary()))

    # -- messages ---------------------------------------------------------------

    def on_command(self, delivery: Delivery) -> None:
        command = decode(delivery.body, COMMAND, delivery.content_type)
        if command.target not in (self.worker_id, FLEET):
            raise InvalidMessage(f"command for {command.target!r} reached {self.worker_id!r}")
        key = self.settings.command_signing_key
        if key is not None:
            verify(
                command,
                key.get_secret_value().encode(),
                self.settings.command_signing_key_id,
                utc_now(),
            )
        ack = self.core.apply(command, utc_now())
        try:
            self.report(ack)  # first: the monitor is waiting, the log is not
        finally:
            # One line per command: each change it made, or else what became of it.
            about = fields(
                worker=self.worker_id,
                command=command.command_id,
                target=command.target,
                outcome=ack.outcome,
            )
            for name, change in ack.diff.items():
                log.info(f"{name}: {change}", extra=about)
            if not ack.diff:
                log.info("command", extra=about)

    def report(self, ack: Ack | None = None) -> None:
        self.seq += 1
        status = Status(
            seq=self.seq,
            state=self.core.stamp(utc_now()),
            status_interval=self.settings.status_interval,
            started_at=self.started_at,
            ack=ack,
        )
        key = self.topology.status_key(self.worker_id)
        self.bus.publish("status", self.topology.status_exchange, key, status, persistent=False)

    def _lifecycle(self, message: Registration | Goodbye) -> None:
        key = self.topology.lifecycle_key(message.kind, self.worker_id)
        self.bus.publish("register", self.topology.register_exchange, key, message)

    def _summary(self) -> dict[str, object]:
        return {"active": self.core.state.active, "activity": self.core.state.activity}
