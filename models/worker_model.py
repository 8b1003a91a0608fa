"""A worker's own state and the partial update a command carries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Worker ids become AMQP routing-key words and queue-name suffixes, so they are kept
# to a conservative alphabet; "all" is reserved for fleet-wide commands.
FLEET = "all"


def _not_fleet(value: str) -> str:
    if value == FLEET:
        raise ValueError(f"{FLEET!r} is reserved for fleet-wide commands")
    return value


# Also what the broker's topic permissions allow in routing keys (bus.definitions).
WORKER_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
WorkerId = Annotated[
    str,
    StringConstraints(pattern=f"^{WORKER_ID_PATTERN}$"),
    AfterValidator(_not_fleet),
]


# The shortest status or toggle interval: ten a second. A shorter status interval would
# only flood the broker and the monitor (which sweeps twice per interval of its own), and
# a worker claiming one would be judged lost between any two of its reports.
MIN_INTERVAL = 0.1
StatusInterval = Annotated[float, Field(ge=MIN_INTERVAL, le=3600)]


# SQLite's INTEGER and a metric's float both hold a count up to here; a worker claiming
# more is dead-lettered rather than breaking the history or /metrics.
MAX_COUNT = 2**63 - 1


def utc_now() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Worker(Frozen):
    """What a worker is right now, as it reports it."""

    worker_id: WorkerId
    active: bool = False
    activity: int = Field(default=0, ge=0, le=MAX_COUNT)
    timestamp: AwareDatetime = Field(default_factory=utc_now)
    # Generation of the last command applied; orders commands across monitor restarts.
    generation: int = Field(default=0, ge=0)


class WorkerChanges(Frozen):
    """The fields a command sets; a field left out is left alone."""

    active: bool | None = None

    def fields(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


# A changed field's value as a worker reports it: shown in logs, events and terminals,
# so a string may hold no control characters (no forged lines, no escape sequences).
Value = (
    bool
    | int
    | Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
    | None
)


def _changeable(name: str) -> str:
    if name not in WorkerChanges.model_fields:
        raise ValueError(f"{name!r} is not a field a command changes")
    return name


# What an acknowledgement's diff may name: the fields of WorkerChanges.
ChangedField = Annotated[str, AfterValidator(_changeable)]


class FieldChange(Frozen):
    old: Value
    new: Value

    def __str__(self) -> str:
        return f"{self.old} -> {self.new}"
