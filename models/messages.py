"""Every message that crosses the bus. Decode with the adapters at the bottom."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, Field, TypeAdapter

from models.worker_model import (
    ChangedField,
    FieldChange,
    Frozen,
    StatusInterval,
    Worker,
    WorkerChanges,
    WorkerId,
    utc_now,
)


class Kind(StrEnum):
    REGISTER = "register"
    GOODBYE = "goodbye"
    COMMAND = "command"
    STATUS = "status"
    ECHO = "echo"


class Envelope(Frozen):
    schema_version: Literal[1] = 1
    message_id: UUID = Field(default_factory=uuid4)
    sent_at: AwareDatetime = Field(default_factory=utc_now)


class Registration(Envelope):
    """A worker announcing itself, on start and after every reconnect."""

    kind: Literal[Kind.REGISTER] = Kind.REGISTER
    state: Worker
    status_interval: StatusInterval
    # One per process start: tells a restarted worker from a reconnected one.
    started_at: AwareDatetime

    @property
    def worker_id(self) -> str:
        return self.state.worker_id


class Goodbye(Envelope):
    kind: Literal[Kind.GOODBYE] = Kind.GOODBYE
    state: Worker

    @property
    def worker_id(self) -> str:
        return self.state.worker_id


class Signature(Frozen):
    """An HMAC-SHA256 of the command by a key both sides hold (see bus/signing.py)."""

    key_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    expires_at: AwareDatetime
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")


class Command(Envelope):
    kind: Literal[Kind.COMMAND] = Kind.COMMAND
    command_id: UUID = Field(default_factory=uuid4)
    target: WorkerId | Literal["all"]
    changes: WorkerChanges
    # Increases with every command the monitor issues; a worker ignores older ones.
    generation: int = Field(ge=1)
    # Present when the monitor signs commands (COMMAND_SIGNING_KEY).
    signature: Signature | None = None


class Outcome(StrEnum):
    APPLIED = "applied"  # some field changed
    UNCHANGED = "unchanged"  # nothing to change
    STALE = "stale"  # older than a command already applied
    DUPLICATE = "duplicate"  # this command id was handled before


class Ack(Frozen):
    command_id: UUID
    generation: int = Field(ge=1)
    outcome: Outcome
    diff: dict[ChangedField, FieldChange] = Field(default_factory=dict)


class Status(Envelope):
    kind: Literal[Kind.STATUS] = Kind.STATUS
    seq: int = Field(ge=0)
    state: Worker
    status_interval: StatusInterval
    # The sending process, as its Registration gave it: a late report of a process that
    # has been replaced tells nothing of the worker now.
    started_at: AwareDatetime
    ack: Ack | None = None

    @property
    def worker_id(self) -> str:
        return self.state.worker_id


class Echo(Envelope):
    """The monitor's note to itself through its status queue: proof that it can hear.
    While its echoes do not come back, silence is the monitor's fault, not the workers'."""

    kind: Literal[Kind.ECHO] = Kind.ECHO


Lifecycle = Annotated[Registration | Goodbye, Field(discriminator="kind")]

# What each queue may carry; anything else is dead-lettered.
LIFECYCLE: TypeAdapter[Registration | Goodbye] = TypeAdapter(Lifecycle)
COMMAND: TypeAdapter[Command] = TypeAdapter(Command)
STATUS: TypeAdapter[Status] = TypeAdapter(Status)
ECHO: TypeAdapter[Echo] = TypeAdapter(Echo)
