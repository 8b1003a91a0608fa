"""The monitor's view of each worker and of the fleet."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, NamedTuple
from uuid import UUID

from pydantic import AwareDatetime, Field

from models.worker_model import Frozen, Worker, WorkerId


class Wish(NamedTuple):
    """A desired state as the monitor keeps it, with the generation of the command that
    asked for it: a worker that applied a newer command knows better (see Registry)."""

    active: bool
    generation: int


class Liveness(StrEnum):
    ONLINE = "online"  # heard from within the last few status intervals
    LOST = "lost"  # went quiet without saying goodbye
    OFFLINE = "offline"  # said goodbye


class Remembered(NamedTuple):
    """A worker the history knows: when it was last seen and how it was then."""

    worker_id: str
    last_seen: datetime
    liveness: Liveness


class WorkerView(Frozen):
    worker_id: WorkerId
    liveness: Liveness
    desired_active: bool | None
    observed: Worker | None
    pending_command: UUID | None
    status_interval: float
    # By the monitor's clock, never the worker's.
    last_seen_at: AwareDatetime
    last_command_latency_ms: float | None
    started_at: AwareDatetime | None
    # Units of work per second over the last status interval or so, by the worker's
    # clock; None until measured, and while the worker is not online.
    activity_rate: float | None = None


class EventKind(StrEnum):
    REGISTERED = "registered"
    COMMAND_SENT = "command_sent"
    ACKNOWLEDGED = "acknowledged"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    LOST = "lost"
    OFFLINE = "offline"
    RECONNECTED = "reconnected"  # back online after being lost or offline
    FORGOTTEN = "forgotten"  # removed after the retention time
    EXPIRED = "expired"
    UNROUTABLE = "unroutable"


Detail = str | int | float | bool | None


class FleetEvent(Frozen):
    """Something that happened to the fleet, as the monitor saw it (history, live stream)."""

    at: AwareDatetime
    kind: EventKind
    worker_id: WorkerId | Literal["all"] | None = None
    command_id: UUID | None = None
    latency_ms: float | None = None
    detail: dict[str, Detail] = Field(default_factory=dict)


class Sample(Frozen):
    """A worker's activity at one moment (downsampled history)."""

    at: AwareDatetime
    active: bool
    activity: int


class WorkerSample(Sample):
    """A sample of the fleet's history: whose it is, too."""

    worker_id: WorkerId


class FleetView(Frozen):
    fleet_desired_active: bool | None
    workers: list[WorkerView]

    def count(self, liveness: Liveness) -> int:
        return sum(1 for worker in self.workers if worker.liveness is liveness)
