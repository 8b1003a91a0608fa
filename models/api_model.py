"""What the monitor's HTTP API answers, shared with the CLI that reads it."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from models.messages import Outcome
from models.monitor_model import FleetEvent, Sample, WorkerView
from models.worker_model import Frozen


class CommandReceipt(Frozen):
    command_id: UUID
    target: str
    active: bool
    # Workers whose acknowledgement is awaited: the target, or the fleet's online workers.
    awaiting: list[str]
    # The monitor is off the broker: the command waits in it and goes out once it is
    # back (unless COMMAND_TTL passes first, when it is reported expired).
    held: bool


class AckReport(Frozen):
    worker_id: str
    outcome: Outcome | Literal["expired", "unroutable"]
    latency_ms: float | None


class CommandResult(CommandReceipt):
    acks: list[AckReport]
    complete: bool  # every awaited worker answered (or the command failed for it)


class Commands(Frozen):
    commands: list[CommandResult]


class WorkerHistory(Frozen):
    worker: WorkerView | None  # None: no longer in the monitor's view
    samples: list[Sample]
    events: list[FleetEvent]


class Health(Frozen):
    healthy: bool
    broker_connected: bool
    database_writable: bool | None  # None: history is off
