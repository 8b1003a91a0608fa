"""A worker's state, how commands change it and how its work adds up. Pure: no broker,
no clock of its own."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from uuid import UUID

from models.messages import Ack, Command, Outcome
from models.worker_model import FieldChange, Worker, WorkerChanges

# Command ids remembered to drop redeliveries; far more than can be in flight.
REMEMBERED_COMMANDS = 1024


def diff(state: Worker, changes: WorkerChanges) -> dict[str, FieldChange]:
    """The fields `changes` sets to something other than what `state` has."""
    current = state.model_dump()
    return {
        name: FieldChange(old=current[name], new=value)
        for name, value in changes.fields().items()
        if current[name] != value
    }


class WorkerState:
    def __init__(self, worker_id: str, now: datetime, work_interval: float) -> None:
        self.state = Worker(worker_id=worker_id, timestamp=now)
        self._seen: OrderedDict[UUID, None] = OrderedDict()
        # Work is counted when the state is read or changed, not ticked: a timer per unit
        # woke every worker's bus thread for nothing, most of an idle fleet's CPU.
        self._unit = timedelta(seconds=work_interval)
        self._counted_to = now

    def apply(self, command: Command, now: datetime) -> Ack:
        """Apply only what differs; a redelivered or out-of-date command changes nothing."""
        if command.command_id in self._seen:
            return self._ack(command, Outcome.DUPLICATE)
        self._remember(command.command_id)
        if command.generation <= self.state.generation:
            return self._ack(command, Outcome.STALE)
        changed = diff(self.state, command.changes)
        self.state = self.state.model_copy(
            update={
                **{name: change.new for name, change in changed.items()},
                "activity": self._activity(now),  # counted up to the change
                "generation": command.generation,
                "timestamp": now,
            }
        )
        return self._ack(command, Outcome.APPLIED if changed else Outcome.UNCHANGED, changed)

    def stamp(self, now: datetime) -> Worker:
        """The state as of `now`, work counted, for a status report."""
        self.state = self.state.model_copy(
            update={"activity": self._activity(now), "timestamp": now}
        )
        return self.state

    def _activity(self, now: datetime) -> int:
        """The activity as of `now`: one more unit per whole `work_interval` spent active
        since last counted; a part interval carries over while the worker stays active."""
        if not self.state.active or now < self._counted_to:
            self._counted_to = now  # nothing to count (or the clock went back: start over)
            return self.state.activity
        units = (now - self._counted_to) // self._unit
        self._counted_to += units * self._unit
        return self.state.activity + units

    def _remember(self, command_id: UUID) -> None:
        self._seen[command_id] = None
        if len(self._seen) > REMEMBERED_COMMANDS:
            self._seen.popitem(last=False)

    @staticmethod
    def _ack(
        command: Command, outcome: Outcome, changed: dict[str, FieldChange] | None = None
    ) -> Ack:
        return Ack(
            command_id=command.command_id,
            generation=command.generation,
            outcome=outcome,
            diff=changed or {},
        )
