"""Message models: round trips through JSON and the queue adapters, and what they refuse."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from models.messages import (
    COMMAND,
    LIFECYCLE,
    STATUS,
    Ack,
    Command,
    Goodbye,
    Kind,
    Outcome,
    Registration,
    Status,
)
from models.monitor_model import FleetView, Liveness, WorkerView
from models.worker_model import FLEET, MAX_COUNT, FieldChange, Worker, WorkerChanges

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
STARTED = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)


def worker(worker_id: str = "w1", **values: Any) -> Worker:
    return Worker(worker_id=worker_id, timestamp=T0, **values)


def registration() -> Registration:
    return Registration(
        state=worker(active=True, activity=7, generation=3),
        status_interval=2.0,
        started_at=STARTED,
        sent_at=T0,
    )


def goodbye() -> Goodbye:
    return Goodbye(state=worker(activity=9), sent_at=T0)


def command(target: str = "w1") -> Command:
    return Command(target=target, changes=WorkerChanges(active=True), generation=5, sent_at=T0)


def status(with_ack: bool = False) -> Status:
    ack = None
    if with_ack:
        ack = Ack(
            command_id=uuid4(),
            generation=5,
            outcome=Outcome.APPLIED,
            diff={"active": FieldChange(old=False, new=True)},
        )
    return Status(
        seq=42,
        state=worker(active=True, activity=11, generation=5),
        status_interval=0.5,
        started_at=T0,
        ack=ack,
        sent_at=T0,
    )


# (build the message, the adapter of the queue it travels on, its kind on the wire)
CASES: list[tuple[str, Callable[[], BaseModel], TypeAdapter[Any], str]] = [
    ("registration", registration, LIFECYCLE, "register"),
    ("goodbye", goodbye, LIFECYCLE, "goodbye"),
    ("command-worker", command, COMMAND, "command"),
    ("command-fleet", lambda: command(FLEET), COMMAND, "command"),
    ("status", status, STATUS, "status"),
    ("status-ack", lambda: status(with_ack=True), STATUS, "status"),
]
CASE_PARAMS = [pytest.param(build, adapter, kind, id=name) for name, build, adapter, kind in CASES]


def wire(message: BaseModel) -> dict[str, Any]:
    """The message as a JSON object, ready to be tampered with."""
    data: dict[str, Any] = json.loads(message.model_dump_json())
    return data


def rejected(adapter: TypeAdapter[Any], data: dict[str, Any]) -> list[str]:
    """Validate `data` as JSON bytes; it must fail. Returns the error locations, dotted."""
    with pytest.raises(ValidationError) as caught:
        adapter.validate_json(json.dumps(data).encode())
    return [".".join(str(part) for part in error["loc"]) for error in caught.value.errors()]


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "adapter", "kind"), CASE_PARAMS)
def test_round_trip_through_json_and_adapter(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any], kind: str
) -> None:
    message = build()
    body = message.model_dump_json().encode()

    decoded = adapter.validate_json(body)

    assert type(decoded) is type(message)
    assert decoded == message
    assert type(message).model_validate_json(body) == message
    on_wire = json.loads(body)
    assert on_wire["kind"] == kind
    assert on_wire["schema_version"] == 1
    assert UUID(on_wire["message_id"]) == message.message_id  # type: ignore[attr-defined]


def test_status_ack_survives_the_round_trip_in_detail() -> None:
    message = status(with_ack=True)
    decoded = STATUS.validate_json(message.model_dump_json())
    assert decoded.ack is not None
    assert message.ack is not None
    assert decoded.ack.command_id == message.ack.command_id
    assert decoded.ack.outcome is Outcome.APPLIED
    assert decoded.ack.diff == {"active": FieldChange(old=False, new=True)}
    assert str(decoded.ack.diff["active"]) == "False -> True"


def test_status_without_ack_has_none() -> None:
    decoded = STATUS.validate_json(status().model_dump_json())
    assert decoded.ack is None
    assert decoded.seq == 42
    assert decoded.state.activity == 11


def test_lifecycle_adapter_picks_the_model_by_kind() -> None:
    assert isinstance(LIFECYCLE.validate_json(registration().model_dump_json()), Registration)
    assert isinstance(LIFECYCLE.validate_json(goodbye().model_dump_json()), Goodbye)


def test_envelope_defaults_are_fresh_ids_and_aware_utc_time() -> None:
    first, second = goodbye(), Goodbye(state=worker())
    assert first.message_id != second.message_id
    assert second.sent_at.utcoffset() == timedelta(0)
    assert second.schema_version == 1
    assert second.kind is Kind.GOODBYE


def test_worker_id_property() -> None:
    assert registration().worker_id == "w1"
    assert goodbye().worker_id == "w1"
    assert status().worker_id == "w1"


def test_worker_defaults() -> None:
    state = Worker(worker_id="w1")
    assert (state.active, state.activity, state.generation) == (False, 0, 0)
    assert state.timestamp.tzinfo is not None


def test_non_utc_offset_is_kept_as_an_aware_datetime() -> None:
    # Aware is what is enforced; an explicit offset is a valid aware time.
    paris = timezone(timedelta(hours=1))
    message = Goodbye(state=worker(), sent_at=datetime(2026, 1, 1, 12, tzinfo=paris))
    assert LIFECYCLE.validate_json(message.model_dump_json()).sent_at == message.sent_at


# -- what is refused ---------------------------------------------------------------------


@pytest.mark.parametrize(("build", "adapter", "kind"), CASE_PARAMS)
def test_extra_top_level_field_is_rejected(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any], kind: str
) -> None:
    data = wire(build())
    data["admin"] = True
    assert any(loc.endswith("admin") for loc in rejected(adapter, data))


@pytest.mark.parametrize(
    ("build", "adapter", "path"),
    [
        pytest.param(registration, LIFECYCLE, ("state",), id="registration.state"),
        pytest.param(goodbye, LIFECYCLE, ("state",), id="goodbye.state"),
        pytest.param(status, STATUS, ("state",), id="status.state"),
        pytest.param(command, COMMAND, ("changes",), id="command.changes"),
        pytest.param(lambda: status(with_ack=True), STATUS, ("ack",), id="status.ack"),
        pytest.param(
            lambda: status(with_ack=True), STATUS, ("ack", "diff", "active"), id="ack.diff"
        ),
    ],
)
def test_extra_nested_field_is_rejected(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any], path: tuple[str, ...]
) -> None:
    data = wire(build())
    target = data
    for key in path:
        target = target[key]
    target["sneaky"] = 1
    assert any(loc.endswith("sneaky") for loc in rejected(adapter, data))


@pytest.mark.parametrize("version", [0, 2, None, "1"])
@pytest.mark.parametrize(("build", "adapter", "kind"), CASE_PARAMS)
def test_wrong_schema_version_is_rejected(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any], kind: str, version: object
) -> None:
    data = wire(build())
    data["schema_version"] = version
    assert any(loc.endswith("schema_version") for loc in rejected(adapter, data))


@pytest.mark.parametrize(
    ("build", "adapter", "path"),
    [
        pytest.param(goodbye, LIFECYCLE, ("sent_at",), id="sent_at"),
        pytest.param(registration, LIFECYCLE, ("started_at",), id="started_at"),
        pytest.param(status, STATUS, ("state", "timestamp"), id="state.timestamp"),
        pytest.param(status, STATUS, ("started_at",), id="status.started_at"),
        pytest.param(command, COMMAND, ("sent_at",), id="command.sent_at"),
    ],
)
def test_naive_datetime_on_the_wire_is_rejected(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any], path: tuple[str, ...]
) -> None:
    data = wire(build())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "2026-01-02T03:04:05"
    assert any(loc.endswith(path[-1]) for loc in rejected(adapter, data))


def test_naive_datetime_is_rejected_in_python_too() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    with pytest.raises(ValidationError):
        Worker(worker_id="w1", timestamp=naive)
    with pytest.raises(ValidationError):
        Goodbye(state=worker(), sent_at=naive)
    with pytest.raises(ValidationError):
        Registration(state=worker(), status_interval=1.0, started_at=naive)


BAD_WORKER_IDS = [
    pytest.param("", id="empty"),
    pytest.param(" ", id="space"),
    pytest.param("w 1", id="inner-space"),
    pytest.param(" w1", id="leading-space"),
    pytest.param("w1 ", id="trailing-space"),
    pytest.param("w1\n", id="trailing-newline"),
    pytest.param("*", id="star"),
    pytest.param("#", id="hash"),
    pytest.param("w.*", id="star-word"),
    pytest.param("w.#", id="hash-word"),
    pytest.param("all", id="fleet-reserved"),
    pytest.param("x" * 65, id="too-long-65"),
    pytest.param("-w1", id="leading-dash"),
    pytest.param(".w1", id="leading-dot"),
    pytest.param("w/1", id="slash"),
    pytest.param("wé", id="non-ascii"),
]


@pytest.mark.parametrize("worker_id", BAD_WORKER_IDS)
def test_bad_worker_id_is_rejected(worker_id: str) -> None:
    with pytest.raises(ValidationError):
        Worker(worker_id=worker_id)
    data = wire(status())
    data["state"]["worker_id"] = worker_id
    assert "state.worker_id" in rejected(STATUS, data)


@pytest.mark.parametrize("worker_id", ["w", "x" * 64, "W-1_a.b", "ALL", "9", "all2"])
def test_good_worker_ids_are_accepted(worker_id: str) -> None:
    assert Worker(worker_id=worker_id).worker_id == worker_id


@pytest.mark.parametrize("target", [p for p in BAD_WORKER_IDS if p.values[0] != "all"])
def test_bad_command_target_is_rejected(target: str) -> None:
    data = wire(command())
    data["target"] = target
    assert any(loc.startswith("target") for loc in rejected(COMMAND, data))


def test_command_target_all_is_the_fleet() -> None:
    data = wire(command())
    data["target"] = "all"
    assert COMMAND.validate_json(json.dumps(data)).target == FLEET


@pytest.mark.parametrize(
    ("build", "adapter", "path", "value"),
    [
        pytest.param(status, STATUS, ("state", "activity"), -1, id="activity"),
        pytest.param(
            status, STATUS, ("state", "activity"), MAX_COUNT + 1, id="activity-past-int64"
        ),
        pytest.param(status, STATUS, ("seq",), -1, id="seq"),
        pytest.param(status, STATUS, ("state", "generation"), -1, id="worker-generation"),
        pytest.param(command, COMMAND, ("generation",), 0, id="command-generation-0"),
        pytest.param(command, COMMAND, ("generation",), -5, id="command-generation-neg"),
        pytest.param(
            lambda: status(with_ack=True), STATUS, ("ack", "generation"), 0, id="ack-generation"
        ),
        pytest.param(status, STATUS, ("status_interval",), 0, id="status-interval-0"),
        pytest.param(status, STATUS, ("status_interval",), -1.5, id="status-interval-neg"),
        pytest.param(status, STATUS, ("status_interval",), 3601, id="status-interval-huge"),
        pytest.param(registration, LIFECYCLE, ("status_interval",), 0, id="reg-interval-0"),
        pytest.param(registration, LIFECYCLE, ("status_interval",), -2, id="reg-interval-neg"),
        # A worker claiming it would flap between lost and online between its reports.
        pytest.param(registration, LIFECYCLE, ("status_interval",), 1e-6, id="reg-interval-tiny"),
        pytest.param(status, STATUS, ("status_interval",), 0.09, id="status-interval-tiny"),
        pytest.param(status, STATUS, ("state", "active"), "maybe", id="active-not-bool"),
        pytest.param(
            lambda: status(with_ack=True), STATUS, ("ack", "outcome"), "exploded", id="bad-outcome"
        ),
    ],
)
def test_out_of_range_values_are_rejected(
    build: Callable[[], BaseModel],
    adapter: TypeAdapter[Any],
    path: tuple[str, ...],
    value: object,
) -> None:
    data = wire(build())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(loc.endswith(path[-1]) for loc in rejected(adapter, data))


def test_zero_is_a_valid_seq_activity_and_worker_generation() -> None:
    data = wire(status())
    data["seq"] = 0
    data["state"]["activity"] = 0
    data["state"]["generation"] = 0
    decoded = STATUS.validate_json(json.dumps(data))
    assert (decoded.seq, decoded.state.activity, decoded.state.generation) == (0, 0, 0)


def test_the_largest_count_is_accepted() -> None:
    # Up to what SQLite's INTEGER holds (history) and a float carries (metrics).
    data = wire(status())
    data["state"]["activity"] = MAX_COUNT
    assert STATUS.validate_json(json.dumps(data)).state.activity == MAX_COUNT


@pytest.mark.parametrize(
    "diff",
    [
        pytest.param({"colour": {"old": 1, "new": 2}}, id="not-a-changeable-field"),
        pytest.param({"active\n": {"old": False, "new": True}}, id="control-char-in-name"),
        pytest.param({"active": {"old": "a\x1b[2J", "new": "b"}}, id="escape-sequence"),
        pytest.param({"active": {"old": "x\ny", "new": "b"}}, id="newline-in-value"),
        pytest.param({"active": {"old": "x" * 201, "new": "b"}}, id="long-value"),
    ],
)
def test_ack_diff_names_only_changeable_fields_and_printable_values(
    diff: dict[str, Any],
) -> None:
    # A worker's acknowledgement reaches logs, events and terminals (fireworks watch).
    data = wire(status(with_ack=True))
    data["ack"]["diff"] = diff
    assert all(loc.startswith("ack.diff") for loc in rejected(STATUS, data))


def test_nan_status_interval_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Status(seq=1, state=worker(), status_interval=float("nan"), started_at=T0)


@pytest.mark.parametrize(
    ("build", "adapter"),
    [
        pytest.param(status, COMMAND, id="status-to-command"),
        pytest.param(lambda: status(with_ack=True), COMMAND, id="status-ack-to-command"),
        pytest.param(registration, COMMAND, id="registration-to-command"),
        pytest.param(command, STATUS, id="command-to-status"),
        pytest.param(registration, STATUS, id="registration-to-status"),
        pytest.param(status, LIFECYCLE, id="status-to-lifecycle"),
        pytest.param(command, LIFECYCLE, id="command-to-lifecycle"),
    ],
)
def test_message_on_the_wrong_queue_is_rejected(
    build: Callable[[], BaseModel], adapter: TypeAdapter[Any]
) -> None:
    rejected(adapter, wire(build()))


def test_status_relabelled_as_command_is_still_rejected() -> None:
    data = wire(status())
    data["kind"] = "command"  # spoofed kind; the rest is still a status
    locations = rejected(COMMAND, data)
    assert "seq" in locations
    assert "target" in locations


def test_registration_relabelled_as_goodbye_is_rejected() -> None:
    data = wire(registration())
    data["kind"] = "goodbye"
    locations = rejected(LIFECYCLE, data)
    assert any(loc.endswith("status_interval") for loc in locations)


def test_unknown_kind_is_rejected() -> None:
    data = wire(goodbye())
    data["kind"] = "shutdown"
    rejected(LIFECYCLE, data)


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        pytest.param(registration, "status_interval", 9.0, id="registration"),
        pytest.param(goodbye, "state", None, id="goodbye"),
        pytest.param(command, "generation", 99, id="command"),
        pytest.param(status, "seq", 43, id="status"),
        pytest.param(lambda: worker(), "active", True, id="worker"),
        pytest.param(lambda: WorkerChanges(active=True), "active", False, id="changes"),
        pytest.param(
            lambda: Ack(command_id=uuid4(), generation=1, outcome=Outcome.APPLIED),
            "outcome",
            Outcome.STALE,
            id="ack",
        ),
        pytest.param(lambda: FieldChange(old=1, new=2), "new", 3, id="field-change"),
    ],
)
def test_models_are_frozen(model: Callable[[], BaseModel], field: str, value: object) -> None:
    instance = model()
    before = instance.model_dump()
    with pytest.raises(ValidationError):
        setattr(instance, field, value)
    assert instance.model_dump() == before


def test_construction_rejects_extra_fields_in_python_too() -> None:
    with pytest.raises(ValidationError):
        Worker(worker_id="w1", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        WorkerChanges(active=True, activity=5)  # type: ignore[call-arg]


# -- partial updates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (WorkerChanges(), {}),
        (WorkerChanges(active=None), {}),
        (WorkerChanges(active=True), {"active": True}),
        (WorkerChanges(active=False), {"active": False}),  # False is set, not left out
    ],
)
def test_worker_changes_fields_returns_only_set_fields(
    changes: WorkerChanges, expected: dict[str, object]
) -> None:
    assert changes.fields() == expected


def test_field_change_renders_old_to_new() -> None:
    assert str(FieldChange(old=False, new=True)) == "False -> True"
    assert str(FieldChange(old=3, new=4)) == "3 -> 4"


# -- the monitor's view ------------------------------------------------------------------


def test_fleet_view_counts_by_liveness() -> None:
    def view(worker_id: str, liveness: Liveness) -> WorkerView:
        return WorkerView(
            worker_id=worker_id,
            liveness=liveness,
            desired_active=None,
            observed=None,
            pending_command=None,
            status_interval=2.0,
            last_seen_at=T0,
            last_command_latency_ms=None,
            started_at=None,
        )

    fleet = FleetView(
        fleet_desired_active=True,
        workers=[
            view("a", Liveness.ONLINE),
            view("b", Liveness.ONLINE),
            view("c", Liveness.LOST),
        ],
    )
    assert fleet.count(Liveness.ONLINE) == 2
    assert fleet.count(Liveness.LOST) == 1
    assert fleet.count(Liveness.OFFLINE) == 0
