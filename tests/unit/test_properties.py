"""Property tests (Hypothesis) for hostile input: every message model and the codec, the
services' message handlers (no broker), the worker's apply-and-diff and the monitor's
registry under random sequences with a fake clock.

Deterministic (`derandomize=True`, no example database): CI sees the same examples on
every run. Each property's budget is set below; the whole file runs in well under 20 s.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from pydantic import BaseModel, TypeAdapter

from bus.codec import CONTENT_TYPE, MAX_BODY_BYTES, decode, encode
from bus.connection import Delivery
from bus.errors import MAX_REASON, InvalidMessage
from bus.topology import ECHO_KEY
from models.messages import (
    COMMAND,
    ECHO,
    LIFECYCLE,
    STATUS,
    Ack,
    Command,
    Echo,
    Goodbye,
    Kind,
    Outcome,
    Registration,
    Status,
)
from models.monitor_model import Liveness
from models.worker_model import FLEET, MAX_COUNT, MIN_INTERVAL, FieldChange, Worker, WorkerChanges
from monitor.monitor import MonitorService
from monitor.registry import FORMER_PROCESSES, Heard, Registry, UnknownWorker
from unit.fake_clock import WALL0, FakeClock
from unit.offline import OfflineBus, offline_settings
from workers.state import WorkerState
from workers.worker import WorkerService

T = TypeVar("T")

# One budget for the single-shot properties, a smaller one for the expensive ones.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHEAP = settings(PROPERTY, max_examples=60)
STATEFUL = settings(PROPERTY, max_examples=60, stateful_step_count=40)

# -- strategies: valid models -----------------------------------------------------------

WORKER_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True).filter(
    lambda worker_id: worker_id != FLEET
)
# Any fixed UTC offset of whole minutes, as pydantic writes and reads them.
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)
INTERVALS = st.floats(min_value=MIN_INTERVAL, max_value=3600)
# Printable text: a value with control characters is refused (see test_models).
PRINTABLE = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=20)
FIELD_VALUES = st.none() | st.booleans() | st.integers() | PRINTABLE


def envelope() -> dict[str, st.SearchStrategy[Any]]:
    return {"message_id": st.uuids(), "sent_at": AWARE}


WORKERS = st.builds(
    Worker,
    worker_id=WORKER_IDS,
    active=st.booleans(),
    activity=st.integers(min_value=0, max_value=MAX_COUNT),
    timestamp=AWARE,
    generation=st.integers(min_value=0),
)
CHANGES = st.builds(WorkerChanges, active=st.none() | st.booleans())
FIELD_CHANGES = st.builds(FieldChange, old=FIELD_VALUES, new=FIELD_VALUES)
ACKS = st.builds(
    Ack,
    command_id=st.uuids(),
    generation=st.integers(min_value=1),
    outcome=st.sampled_from(Outcome),
    diff=st.dictionaries(st.sampled_from(list(WorkerChanges.model_fields)), FIELD_CHANGES),
)
REGISTRATIONS = st.builds(
    Registration, state=WORKERS, status_interval=INTERVALS, started_at=AWARE, **envelope()
)
GOODBYES = st.builds(Goodbye, state=WORKERS, **envelope())
COMMANDS = st.builds(
    Command,
    command_id=st.uuids(),
    target=WORKER_IDS | st.just(FLEET),
    changes=CHANGES,
    generation=st.integers(min_value=1),
    **envelope(),
)
STATUSES = st.builds(
    Status,
    seq=st.integers(min_value=0),
    state=WORKERS,
    status_interval=INTERVALS,
    started_at=AWARE,
    ack=st.none() | ACKS,
    **envelope(),
)
ECHOES = st.builds(Echo, **envelope())

# Each model, how it is built, and the adapter that decodes it.
MODELS: dict[str, tuple[st.SearchStrategy[Any], TypeAdapter[Any]]] = {
    "registration": (REGISTRATIONS, LIFECYCLE),
    "goodbye": (GOODBYES, LIFECYCLE),
    "command": (COMMANDS, COMMAND),
    "status": (STATUSES, STATUS),
    "echo": (ECHOES, ECHO),
    "worker": (WORKERS, TypeAdapter(Worker)),
    "changes": (CHANGES, TypeAdapter(WorkerChanges)),
    "field-change": (FIELD_CHANGES, TypeAdapter(FieldChange)),
    "ack": (ACKS, TypeAdapter(Ack)),
}
# The adapters the services decode their queues with.
QUEUE_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "lifecycle": LIFECYCLE,
    "command": COMMAND,
    "status": STATUS,
    "echo": ECHO,
}
# Every message that crosses the bus, each with the one adapter meant to accept it.
BUS_MESSAGES = st.one_of(
    REGISTRATIONS.map(lambda m: (m, "lifecycle")),
    GOODBYES.map(lambda m: (m, "lifecycle")),
    COMMANDS.map(lambda m: (m, "command")),
    STATUSES.map(lambda m: (m, "status")),
    ECHOES.map(lambda m: (m, "echo")),
)

# -- strategies: hostile bytes ------------------------------------------------------------

# Field names of every message, so random objects often look like real ones.
FIELD_NAMES = sorted(
    {
        name
        for model in (Registration, Goodbye, Command, Status, Echo, Worker, Ack, FieldChange)
        for name in model.model_fields
    }
)
JSON_KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: json.dumps writes them, JSON forbids them
    | st.text(max_size=30)
    | st.sampled_from([k.value for k in Kind])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(JSON_KEYS, children, max_size=6)
    ),
    max_leaves=25,
)
CONTENT_TYPES = st.sampled_from([None, CONTENT_TYPE, "text/plain", "application/xml", ""])


def assert_reason(error: InvalidMessage) -> None:
    """What a dead letter carries and the log shows: one printable line, short."""
    reason = error.reason
    assert str(error) == reason
    assert reason, "empty reason"
    assert reason.isprintable(), repr(reason)  # no line breaks, no control characters
    assert len(reason) <= MAX_REASON, (len(reason), reason)


def judged(
    body: bytes, adapter: TypeAdapter[T], content_type: str | None = CONTENT_TYPE
) -> T | None:
    """The decoded message, or None when it was refused with a good reason. Any other
    exception fails the test: in the bus it would become a 'handler error'."""
    try:
        return decode(body, adapter, content_type)
    except InvalidMessage as error:
        assert_reason(error)
        return None


def as_json(message: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(message))
    return data


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@PROPERTY
@given(data=st.data())
def test_any_valid_model_round_trips_exactly(name: str, data: st.DataObject) -> None:
    strategy, adapter = MODELS[name]
    message = data.draw(strategy)
    body = encode(message)
    assert len(body) <= MAX_BODY_BYTES  # hypothesis' values stay far below the limit
    for content_type in (CONTENT_TYPE, None):
        decoded = decode(body, adapter, content_type)
        assert type(decoded) is type(message)
        assert decoded == message
        assert encode(decoded) == body


@CHEAP
@given(pair=BUS_MESSAGES, other=st.sampled_from(list(QUEUE_ADAPTERS)))
def test_a_message_is_accepted_only_by_its_own_queue(
    pair: tuple[BaseModel, str], other: str
) -> None:
    message, own = pair
    decoded = judged(encode(message), QUEUE_ADAPTERS[other])
    assert (decoded is not None) == (other == own)


# -- hostile input: refused in one line, never another exception ------------------------------


@pytest.mark.parametrize("queue", list(QUEUE_ADAPTERS))
@PROPERTY
@given(body=st.binary(max_size=2048), content_type=CONTENT_TYPES)
def test_arbitrary_bytes_are_decoded_or_refused_in_one_line(
    queue: str, body: bytes, content_type: str | None
) -> None:
    judged(body, QUEUE_ADAPTERS[queue], content_type)


@pytest.mark.parametrize("queue", list(QUEUE_ADAPTERS))
@PROPERTY
@given(value=JSON_VALUES)
def test_arbitrary_json_is_decoded_or_refused_in_one_line(queue: str, value: object) -> None:
    body = json.dumps(value).encode()
    note(repr(body))
    if judged(body, QUEUE_ADAPTERS[queue]) is not None:
        # Only an object can be a message; JSON's other values never are.
        assert isinstance(value, dict)


@PROPERTY
@given(pair=BUS_MESSAGES, data=st.data())
def test_valid_message_with_fields_replaced_by_arbitrary_json(
    pair: tuple[BaseModel, str], data: st.DataObject
) -> None:
    message, queue = pair
    fields = as_json(message)
    replaced = data.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, unique=True))
    for name in replaced:
        fields[name] = data.draw(JSON_VALUES, label=name)
    judged(json.dumps(fields).encode(), QUEUE_ADAPTERS[queue])


ModelObjects = list[tuple[dict[str, Any], type[BaseModel]]]


def _objects(message: BaseModel, data: dict[str, Any]) -> ModelObjects:
    """Every JSON object of an encoded message that is a model, with that model."""
    found: ModelObjects = [(data, type(message))]
    if isinstance(data.get("state"), dict):
        found.append((data["state"], Worker))
    if isinstance(data.get("changes"), dict):
        found.append((data["changes"], WorkerChanges))
    if isinstance(data.get("ack"), dict):
        found.append((data["ack"], Ack))
        found += [(change, FieldChange) for change in data["ack"]["diff"].values()]
    return found


@PROPERTY
@given(pair=BUS_MESSAGES, data=st.data())
def test_valid_message_with_a_field_dropped(
    pair: tuple[BaseModel, str], data: st.DataObject
) -> None:
    message, queue = pair
    encoded = as_json(message)
    obj, model = data.draw(st.sampled_from(_objects(message, encoded)))
    name = data.draw(st.sampled_from(sorted(obj)))
    del obj[name]
    decoded = judged(json.dumps(encoded).encode(), QUEUE_ADAPTERS[queue])
    # A field with a default may be left out; a required one may not. A lifecycle message
    # also needs its `kind`: it tells a registration from a goodbye.
    required = model.model_fields[name].is_required() or (
        queue == "lifecycle" and obj is encoded and name == "kind"
    )
    assert (decoded is None) == required, (model.__name__, name)


@PROPERTY
@given(pair=BUS_MESSAGES, data=st.data())
def test_valid_message_with_an_unknown_field_added_is_refused(
    pair: tuple[BaseModel, str], data: st.DataObject
) -> None:
    message, queue = pair
    encoded = as_json(message)
    obj, model = data.draw(st.sampled_from(_objects(message, encoded)))
    name = data.draw(JSON_KEYS.filter(lambda key: key not in model.model_fields))
    obj[name] = data.draw(JSON_VALUES)
    assert judged(json.dumps(encoded).encode(), QUEUE_ADAPTERS[queue]) is None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@PROPERTY
@given(pair=BUS_MESSAGES, data=st.data())
def test_valid_message_with_a_field_of_another_type(
    pair: tuple[BaseModel, str], data: st.DataObject
) -> None:
    message, queue = pair
    encoded = as_json(message)
    obj, _ = data.draw(st.sampled_from(_objects(message, encoded)))
    name = data.draw(st.sampled_from(sorted(obj)))
    old = _json_type(obj[name])
    obj[name] = data.draw(JSON_VALUES.filter(lambda value: _json_type(value) != old))
    # Lax mode may coerce ("5" -> 5); what matters is a model or a one-line refusal.
    judged(json.dumps(encoded).encode(), QUEUE_ADAPTERS[queue])


# Values the schema version must not be. (JSON `true` and `1.0` count as 1 in lax mode.)
WRONG_VERSIONS = (
    st.integers().filter(lambda v: v != 1)
    | st.floats().filter(lambda v: v != 1)
    | st.text(max_size=10)
    | st.none()
    | st.just(False)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)


@PROPERTY
@given(pair=BUS_MESSAGES, version=WRONG_VERSIONS)
def test_wrong_schema_version_is_refused(pair: tuple[BaseModel, str], version: object) -> None:
    message, queue = pair
    encoded = as_json(message)
    encoded["schema_version"] = version
    assert judged(json.dumps(encoded).encode(), QUEUE_ADAPTERS[queue]) is None


@PROPERTY
@given(pair=BUS_MESSAGES, kind=JSON_VALUES)
def test_wrong_kind_is_refused(pair: tuple[BaseModel, str], kind: object) -> None:
    message, queue = pair
    encoded = as_json(message)
    if kind == encoded["kind"]:
        kind = None
    encoded["kind"] = kind
    assert judged(json.dumps(encoded).encode(), QUEUE_ADAPTERS[queue]) is None


@CHEAP
@given(
    pair=BUS_MESSAGES,
    extra=st.integers(min_value=1, max_value=20_000),
    filler=st.sampled_from([b" ", b"\n", b"x", b"\xff", b"["]),
    content_type=CONTENT_TYPES,
)
def test_oversize_bodies_are_always_refused(
    pair: tuple[BaseModel, str], extra: int, filler: bytes, content_type: str | None
) -> None:
    message, queue = pair
    valid = encode(message)
    # Whitespace before the closing brace keeps even the padded message well-formed.
    body = valid[:-1] + filler * (MAX_BODY_BYTES - len(valid) + extra) + b"}"
    assert len(body) > MAX_BODY_BYTES
    with pytest.raises(InvalidMessage) as caught:
        decode(body, QUEUE_ADAPTERS[queue], content_type)
    assert_reason(caught.value)
    assert "exceeds" in caught.value.reason


@CHEAP
@given(
    depth=st.integers(min_value=1, max_value=30_000),
    shape=st.sampled_from(["list", "object", "in-field"]),
    queue=st.sampled_from(list(QUEUE_ADAPTERS)),
)
def test_deep_nesting_is_refused_never_a_recursion_error(
    depth: int, shape: str, queue: str
) -> None:
    if shape == "list":
        body = b"[" * depth + b"]" * depth
    elif shape == "object":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        body = b'{"state":' + b"[" * depth + b"]" * depth + b"}"
    if len(body) > MAX_BODY_BYTES:
        body = body[:MAX_BODY_BYTES]  # the depth is what is tested here, not the size
    assert judged(body, QUEUE_ADAPTERS[queue]) is None


@CHEAP
@given(pair=BUS_MESSAGES, data=st.data())
def test_invalid_utf8_anywhere_is_refused(pair: tuple[BaseModel, str], data: st.DataObject) -> None:
    message, queue = pair
    body = encode(message)
    at = data.draw(st.integers(min_value=0, max_value=len(body)))
    bad = data.draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
    assert judged(body[:at] + bad + body[at:], QUEUE_ADAPTERS[queue]) is None


# A content type is the sender's to choose (an AMQP short string: up to 255 bytes).
@CHEAP
@given(content_type=st.text(min_size=180, max_size=255))
def test_reason_for_any_content_type_is_one_short_line(content_type: str) -> None:
    if content_type == CONTENT_TYPE:
        return
    with pytest.raises(InvalidMessage) as caught:
        decode(b"{}", STATUS, content_type)
    assert_reason(caught.value)


# -- the services' handlers, fed hostile deliveries (no broker) --------------------------------


ME = "w1"
# Routing keys a hostile publisher may use, built from real and random worker ids.
SOME_IDS = st.sampled_from([ME, "w2", "ghost"]) | WORKER_IDS
LIFECYCLE_KEYS = st.builds("{}.{}".format, st.sampled_from(["register", "goodbye"]), SOME_IDS)
STATUS_KEYS = st.just(ECHO_KEY) | SOME_IDS.map("status.{}".format)
BODIES = st.one_of(
    st.binary(max_size=512),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    BUS_MESSAGES.map(lambda pair: encode(pair[0])),
    # Messages from (or about) the ids the routing keys use: matches and mismatches.
    st.builds(
        lambda worker, message: message.model_copy(
            update={"state": worker.model_copy(update={"worker_id": "w2"})}
        ),
        WORKERS,
        st.one_of(REGISTRATIONS, GOODBYES, STATUSES),
    ).map(encode),
    COMMANDS.map(
        lambda command: encode(command.model_copy(update={"target": ME, "generation": 1}))
    ),
)


def _handled(handle: Callable[[Delivery], None], delivery: Delivery) -> bool:
    """True when the handler took the message, False when it refused it properly."""
    try:
        handle(delivery)
    except InvalidMessage as error:
        assert_reason(error)
        return False
    return True


@CHEAP
@given(body=BODIES, key=LIFECYCLE_KEYS, content_type=CONTENT_TYPES)
def test_monitor_lifecycle_handler_takes_or_refuses(
    body: bytes, key: str, content_type: str | None
) -> None:
    monitor = MonitorService(offline_settings(), OfflineBus())
    delivery = Delivery(body, "prop.register", key, content_type)
    if _handled(monitor.on_lifecycle, delivery):
        message = LIFECYCLE.validate_json(body)
        assert key == f"{message.kind}.{message.worker_id}"  # the sender is who it claims


@CHEAP
@given(body=BODIES, key=STATUS_KEYS, content_type=CONTENT_TYPES)
def test_monitor_status_handler_takes_or_refuses(
    body: bytes, key: str, content_type: str | None
) -> None:
    monitor = MonitorService(offline_settings(), OfflineBus())
    delivery = Delivery(body, "prop.status", key, content_type)
    if _handled(monitor.on_status, delivery) and key != ECHO_KEY:
        assert key == f"status.{STATUS.validate_json(body).worker_id}"
        assert len(monitor.read(Registry.view).workers) == 1


@CHEAP
@given(
    body=BODIES,
    key=st.sampled_from([f"cmd.{ME}", "cmd.all"]),
    content_type=CONTENT_TYPES,
)
def test_worker_command_handler_takes_or_refuses(
    body: bytes, key: str, content_type: str | None
) -> None:
    bus = OfflineBus()
    worker = WorkerService(offline_settings(), ME, bus)
    before = worker.core.state
    if _handled(worker.on_command, Delivery(body, "prop.command", key, content_type)):
        command = COMMAND.validate_json(body)
        assert command.target in (ME, FLEET)
        [(status_key, status)] = bus.published  # acknowledged, once
        assert status_key == f"status.{ME}"
        assert isinstance(status, Status) and status.ack is not None
        assert status.ack.command_id == command.command_id
    else:
        assert worker.core.state == before
        assert not bus.published


# A routing key is the publisher's choice too (up to 255 bytes).
def test_reason_for_a_long_spoofed_routing_key_is_one_short_line() -> None:
    monitor = MonitorService(offline_settings(), OfflineBus())
    status = Status(seq=1, state=Worker(worker_id="w1"), status_interval=1.0, started_at=WALL0)
    delivery = Delivery(encode(status), "prop.status", "status." + "x" * 240, CONTENT_TYPE)
    with pytest.raises(InvalidMessage) as caught:
        monitor.on_status(delivery)
    assert_reason(caught.value)


# -- WorkerState: activity never falls, generations only rise, a command applies once -------

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WORK_INTERVAL = timedelta(seconds=0.5)


class WorkerStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.core = WorkerState(ME, T0, WORK_INTERVAL.total_seconds())
        # The expected activity: `banked` units, plus one per WORK_INTERVAL since `since`
        # while active (work is counted from each activation, as a whole).
        self.banked, self.since = 0, T0
        self.sent: list[Command] = []
        self.seen: set[UUID] = set()
        self.took: set[UUID] = set()  # commands that were applied (or found nothing to do)
        self.activity = 0
        self.generation = 0

    @rule(
        generation=st.integers(min_value=1, max_value=30),
        active=st.none() | st.booleans(),
        to=st.sampled_from([ME, FLEET]),
    )
    def new_command(self, generation: int, active: bool | None, to: str) -> None:
        self.apply(Command(target=to, changes=WorkerChanges(active=active), generation=generation))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A redelivery of a command seen before (same id)."""
        self.apply(data.draw(st.sampled_from(self.sent)))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def crafted_old(self, data: st.DataObject) -> None:
        """A new command id with a generation no newer than the one applied."""
        generation = data.draw(st.integers(min_value=1, max_value=max(1, self.generation)))
        self.apply(Command(target=FLEET, changes=WorkerChanges(active=True), generation=generation))

    @rule(seconds=st.floats(min_value=0, max_value=5))
    def elapse(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def stamp(self) -> None:
        before = self.core.state
        expected = {"timestamp": self.now, "activity": self.expected_activity()}
        assert self.core.stamp(self.now) == before.model_copy(update=expected)

    def expected_activity(self) -> int:
        if not self.core.state.active:
            return self.banked
        return self.banked + (self.now - self.since) // WORK_INTERVAL

    def apply(self, command: Command) -> None:
        before = self.core.state
        activity = self.expected_activity()
        ack = self.core.apply(command, self.now)
        after = self.core.state
        assert (ack.command_id, ack.generation) == (command.command_id, command.generation)
        if command.command_id in self.seen:
            assert ack.outcome is Outcome.DUPLICATE
        elif command.generation <= before.generation:
            assert ack.outcome is Outcome.STALE
        else:
            assert command.command_id not in self.took  # at most once
            self.took.add(command.command_id)
            wanted = command.changes.fields()
            expected = {
                name: FieldChange(old=getattr(before, name), new=value)
                for name, value in wanted.items()
                if getattr(before, name) != value
            }
            assert ack.diff == expected
            assert ack.outcome is (Outcome.APPLIED if expected else Outcome.UNCHANGED)
            assert after == before.model_copy(
                update={
                    **{n: c.new for n, c in expected.items()},
                    "generation": command.generation,
                    "timestamp": self.now,
                    "activity": activity,
                }
            )
            if "active" in expected:  # a stretch of work ends or begins
                self.banked, self.since = activity, self.now
        if ack.outcome in (Outcome.DUPLICATE, Outcome.STALE):
            assert after == before and ack.diff == {}
        self.seen.add(command.command_id)
        self.sent.append(command)

    @invariant()
    def activity_never_falls_and_generation_never_goes_back(self) -> None:
        state = self.core.state
        assert state.activity >= self.activity
        assert state.generation >= self.generation
        self.activity, self.generation = state.activity, state.generation


TestWorkerState = WorkerStateMachine.TestCase
TestWorkerState.settings = STATEFUL


# -- Registry: random fleets on a fake clock ---------------------------------------------------

POOL = ("a", "b", "c", "d")
TTL = 10.0
RETENTION = 20.0  # longer than TTL, as with the defaults (3600 s vs 30 s)
SWEEP = 0.5  # time between two of the monitor's sweeps (it sweeps at most 1 s apart)


class RegistryMachine(RuleBasedStateMachine):
    """Registrations, statuses (with and without acks), goodbyes, commands, toggles,
    unroutable commands, sweeps (heard or deaf) and suspensions, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.registry = Registry(
            clock=self.clock,
            wall=self.clock.wall,
            command_ttl=TTL,
            retention=RETENTION,
            deaf_after=3 * SWEEP + 1.0,
            reconnect_grace=15.0,
        )
        self.issued: dict[UUID, Command] = {}
        self.awaited: dict[UUID, set[str]] = {}  # when issued
        self.counted: list[tuple[UUID, str]] = []  # acks that got a latency, in order
        self.highest = 0  # highest generation issued or reported by a worker
        self.started = {worker_id: WALL0 for worker_id in POOL}  # each one's process now
        # The processes of each worker that a later one's registration replaced, as far
        # as the registry has heard (it keeps as many as FORMER_PROCESSES).
        self.former: dict[str, deque[datetime]] = {}

    @initialize()
    def first_echo(self) -> None:
        self.registry.echo()

    # -- helpers --

    def known(self) -> dict[str, Liveness]:
        return {w.worker_id: w.liveness for w in self.registry.view().workers}

    def issue(self, command: Command) -> None:
        assert command.command_id not in self.issued
        assert command.generation > self.highest, "generations must keep rising"
        self.highest = command.generation
        self.issued[command.command_id] = command
        awaiting = set(self.registry.awaiting(command.command_id))
        if command.target == FLEET:  # the fleet's command awaits the workers online
            online = {w for w, liveness in self.known().items() if liveness is Liveness.ONLINE}
            assert awaiting == online
        else:  # one worker's command awaits it, whatever its liveness (its queue keeps it)
            assert awaiting == {command.target}
        self.awaited[command.command_id] = awaiting

    def hearing(self, worker_id: str) -> datetime | None:
        """Before the registry hears from `worker_id`: the process it holds for it. A worker
        it does not know (yet, or any more) starts with no former processes."""
        if worker_id not in self.known():
            self.former[worker_id] = deque(maxlen=FORMER_PROCESSES)
            return None
        return self.registry.worker(worker_id).started_at

    def registered(self, worker_id: str, before: datetime | None, process: datetime) -> None:
        former = self.former[worker_id]
        if process in former:
            former.remove(process)
        if before is not None and before != process:
            former.append(before)

    def replaced(self) -> list[str]:
        """Known workers with processes replaced."""
        return [w for w in POOL if w in self.known() and self.former.get(w)]

    def heard(self, heard: Heard, worker_id: str) -> None:
        assert heard.worker_id == worker_id
        if heard.reconcile is not None:
            assert heard.reconcile.target == worker_id
            self.issue(heard.reconcile)

    def state(self, worker_id: str, active: bool, generation: int, activity: int) -> Worker:
        return Worker(
            worker_id=worker_id,
            active=active,
            generation=generation,
            activity=activity,
            timestamp=self.clock.wall(),
        )

    # -- what workers say --

    @rule(
        worker_id=st.sampled_from(POOL),
        active=st.booleans(),
        generation=st.integers(min_value=0, max_value=2 * 10**12),
        restarted=st.booleans(),
        interval=st.sampled_from([0.5, 2.0]),
    )
    def register(
        self, worker_id: str, active: bool, generation: int, restarted: bool, interval: float
    ) -> None:
        if restarted:
            self.started[worker_id] = self.clock.wall()
        message = Registration(
            state=self.state(worker_id, active, generation, 0),
            status_interval=interval,
            started_at=self.started[worker_id],
        )
        self.highest = max(self.highest, generation)  # the registry takes it into account
        before = self.hearing(worker_id)
        self.heard(self.registry.register(message), worker_id)
        self.registered(worker_id, before, message.started_at)
        assert self.known()[worker_id] is Liveness.ONLINE

    @rule(
        worker_id=st.sampled_from(POOL),
        active=st.booleans(),
        generation=st.integers(min_value=0, max_value=2 * 10**12),
        activity=st.integers(min_value=0, max_value=1000),
        ack=st.none() | st.tuples(st.integers(min_value=0), st.sampled_from(Outcome)),
    )
    def status(
        self,
        worker_id: str,
        active: bool,
        generation: int,
        activity: int,
        ack: tuple[int, Outcome] | None,
    ) -> None:
        acked = None
        if ack is not None:
            # One of the commands issued so far (any target: a hostile or confused worker
            # may acknowledge anything), or one nobody issued.
            index, outcome = ack
            ids = [*self.issued, UUID(int=index % 2**128)]
            command_id = ids[index % len(ids)]
            acked = Ack(command_id=command_id, generation=1, outcome=outcome)
        was = self.known().get(worker_id)
        awaited_before = set(self.registry.awaiting(acked.command_id)) if acked else set()
        message = Status(
            seq=1,
            state=self.state(worker_id, active, generation, activity),
            status_interval=SWEEP,
            started_at=self.started[worker_id],
            ack=acked,
        )
        self.hearing(worker_id)
        heard = self.registry.status(message)
        if was is Liveness.OFFLINE:  # set aside: only a registration brings it back
            assert (heard.transition, heard.changed, heard.observed) == (None, {}, None)
            assert heard.reconcile is None
            assert self.known()[worker_id] is Liveness.OFFLINE
        else:  # the current process is heard as it is
            self.highest = max(self.highest, generation)
            self.heard(heard, worker_id)
            assert self.known()[worker_id] is Liveness.ONLINE
            assert heard.observed == self.registry.worker(worker_id).observed == message.state
        if acked is not None:
            assert heard.ack is not None and heard.ack.command_id == acked.command_id
            if heard.ack.latency is not None:
                pair = (acked.command_id, worker_id)
                assert pair not in self.counted, "an ack counted twice"
                assert worker_id in awaited_before
                self.counted.append(pair)
            else:
                assert worker_id not in awaited_before
            assert worker_id not in self.registry.awaiting(acked.command_id)

    @precondition(lambda self: bool(self.registry.pending_commands()))
    @rule(data=st.data())
    def obey(self, data: st.DataObject) -> None:
        """A worker awaited by a pending command applies it and says so."""
        command = data.draw(st.sampled_from(self.registry.pending_commands()))
        worker_id = data.draw(st.sampled_from(self.registry.awaiting(command.command_id)))
        self.acknowledge(command, worker_id)

    @precondition(lambda self: bool(self.counted))
    @rule(data=st.data())
    def ack_again(self, data: st.DataObject) -> None:
        """The same acknowledgement once more (a redelivered command, a replay)."""
        command_id, worker_id = data.draw(st.sampled_from(self.counted))
        self.acknowledge(self.issued[command_id], worker_id)

    def acknowledge(self, command: Command, worker_id: str) -> None:
        was = self.known().get(worker_id)
        awaited = worker_id in self.registry.awaiting(command.command_id)
        active = bool(command.changes.active)
        ack = Ack(
            command_id=command.command_id, generation=command.generation, outcome=Outcome.APPLIED
        )
        message = Status(
            seq=1,
            state=self.state(worker_id, active, command.generation, 0),
            status_interval=SWEEP,
            started_at=self.started[worker_id],
            ack=ack,
        )
        self.hearing(worker_id)
        heard = self.registry.status(message)
        if was is Liveness.OFFLINE:  # set aside, but the command is answered
            assert heard.observed is None and self.known()[worker_id] is Liveness.OFFLINE
        else:
            self.highest = max(self.highest, command.generation)
            self.heard(heard, worker_id)
        assert heard.ack is not None
        pair = (command.command_id, worker_id)
        assert (heard.ack.latency is not None) == awaited
        if awaited:
            assert pair not in self.counted, "an ack counted twice"
            self.counted.append(pair)
        assert worker_id not in self.registry.awaiting(command.command_id)

    @precondition(lambda self: bool(self.replaced()))
    @rule(data=st.data(), active=st.booleans())
    def late_status(self, data: st.DataObject, active: bool) -> None:
        """The last report of a process since replaced, heard after its successor's
        registration (statuses travel on another queue): it changes nothing."""
        worker_id = data.draw(st.sampled_from(self.replaced()))
        process = data.draw(st.sampled_from(list(self.former[worker_id])))
        before = self.registry.worker(worker_id)
        message = Status(
            seq=1,
            state=self.state(worker_id, active, 0, 0),
            status_interval=SWEEP,
            started_at=process,
        )
        heard = self.registry.status(message)
        assert (heard.transition, heard.changed, heard.observed, heard.ack) == (
            None,
            {},
            None,
            None,
        )
        self.heard(heard, worker_id)
        after = self.registry.worker(worker_id)
        assert (after.liveness, after.observed, after.last_seen_at, after.started_at) == (
            before.liveness,
            before.observed,
            before.last_seen_at,
            before.started_at,
        )

    @precondition(lambda self: bool(self.replaced()))
    @rule(data=st.data())
    def registrations_redelivered(self, data: st.DataObject) -> None:
        """The last replaced process's registration and the current one's, again (not yet
        acked when the monitor's connection dropped): the current process is still heard."""
        worker_id = data.draw(st.sampled_from(self.replaced()))
        for process in (self.former[worker_id][-1], self.started[worker_id]):
            message = Registration(
                state=self.state(worker_id, False, 0, 0),
                status_interval=SWEEP,
                started_at=process,
            )
            before = self.hearing(worker_id)
            self.heard(self.registry.register(message), worker_id)
            self.registered(worker_id, before, process)
        assert self.registry.worker(worker_id).started_at == self.started[worker_id]

    @rule(worker_id=st.sampled_from(POOL))
    def goodbye(self, worker_id: str) -> None:
        known = worker_id in self.known()
        transition = self.registry.goodbye(Goodbye(state=self.state(worker_id, False, 0, 0)))
        if known:
            assert self.known()[worker_id] is Liveness.OFFLINE
        else:
            assert transition is None and worker_id not in self.known()

    # -- what the monitor does --

    @rule(to=st.sampled_from([*POOL, FLEET]), active=st.none() | st.booleans())
    def command(self, to: str, active: bool | None) -> None:
        known = to == FLEET or to in self.known()
        try:
            command = self.registry.command(to, WorkerChanges(active=active))
        except UnknownWorker:
            assert not known
            return
        assert known
        self.issue(command)

    @rule()
    def toggle(self) -> None:
        self.issue(self.registry.toggle())

    @precondition(lambda self: bool(self.issued))
    @rule(data=st.data())
    def unroutable(self, data: st.DataObject) -> None:
        command_id = data.draw(st.sampled_from(list(self.issued)))  # in issue order
        self.registry.unroutable(command_id)
        assert self.registry.awaiting(command_id) == []

    @rule(heard=st.booleans(), sweeps=st.integers(min_value=1, max_value=60))
    def sweep(self, heard: bool, sweeps: int) -> None:
        """The monitor's periodic sweeps while nobody speaks; `heard`: its echoes come back."""
        for _ in range(sweeps):
            self.clock.advance(SWEEP)
            if heard:
                self.registry.echo()
            before = self.known()
            pending = {c: set(self.registry.awaiting(c)) for c in self.issued}
            transitions, expired = self.registry.sweep()
            forgotten = set()
            for transition in transitions:
                assert transition.old == before[transition.worker_id]
                assert transition.new in (Liveness.LOST, None)
                if transition.new is None:
                    forgotten.add(transition.worker_id)
            for item in expired:  # a forgotten worker is awaited no more
                assert item.worker_ids == pending[item.command_id] - forgotten
                assert self.registry.awaiting(item.command_id) == []

    @rule(seconds=st.floats(min_value=1, max_value=3 * RETENTION))
    def suspended(self, seconds: float) -> None:
        """Time passes with no sweep at all (a stopped process, a long GC pause)."""
        self.clock.advance(seconds)

    @rule()
    def grace(self) -> None:
        self.registry.grace()

    # -- what must always hold --

    @invariant()
    def pending_commands_await_only_known_workers(self) -> None:
        known = self.known()
        for command in self.registry.pending_commands():
            awaiting = set(self.registry.awaiting(command.command_id))
            assert awaiting, "a command awaiting nobody is not pending"
            assert awaiting <= set(known), (awaiting, known)
            assert awaiting <= self.awaited[command.command_id]

    @invariant()
    def a_workers_pending_command_awaits_it(self) -> None:
        for view in self.registry.view().workers:
            if view.pending_command is not None:
                assert view.worker_id in self.registry.awaiting(view.pending_command)


TestRegistry = RegistryMachine.TestCase
TestRegistry.settings = STATEFUL


# Forgetting a worker (after the retention time) takes it out of every command's awaiting
# set: no command later "expires" for a worker the monitor no longer knows.
def test_a_forgotten_worker_is_awaited_by_no_command() -> None:
    clock = FakeClock()
    registry = Registry(clock=clock, wall=clock.wall, command_ttl=TTL, retention=RETENTION)
    registry.echo()
    registry.register(
        Registration(state=Worker(worker_id="a"), status_interval=SWEEP, started_at=WALL0)
    )
    registry.goodbye(Goodbye(state=Worker(worker_id="a")))
    clock.advance(RETENTION - 1)
    registry.sweep()
    command = registry.command("a", WorkerChanges(active=True))  # it is still known
    clock.advance(2)
    transitions, _ = registry.sweep()
    assert [t.new for t in transitions] == [None]  # forgotten, TTL not over yet
    assert registry.awaiting(command.command_id) == []
