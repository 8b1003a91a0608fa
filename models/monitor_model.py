"""The monitor's view of each worker and of the fleet."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime

from models.worker_model import Frozen, Worker, WorkerId


class Liveness(StrEnum):
    ONLINE = "online"  # heard from within the last few status intervals
    LOST = "lost"  # went quiet without saying goodbye
    OFFLINE = "offline"  # said goodbye


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


class FleetView(Frozen):
    fleet_desired_active: bool | None
    workers: list[WorkerView]

    def count(self, liveness: Liveness) -> int:
        return sum(1 for worker in self.workers if worker.liveness is liveness)
