"""Codec: bytes <-> validated messages, and one-line reasons for what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel, TypeAdapter

from bus.codec import CONTENT_TYPE, MAX_BODY_BYTES, decode, encode
from bus.errors import InvalidMessage
from models.messages import (
    COMMAND,
    LIFECYCLE,
    STATUS,
    Ack,
    Command,
    Goodbye,
    Outcome,
    Registration,
    Status,
)
from models.worker_model import FieldChange, Worker, WorkerChanges

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def good_status() -> Status:
    return Status(
        seq=3, state=Worker(worker_id="w1", timestamp=T0), status_interval=2.0, started_at=T0
    )


def good_status_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(good_status()))
    return data


def reason_for(body: bytes, adapter: TypeAdapter[Any], content_type: str | None = None) -> str:
    with pytest.raises(InvalidMessage) as caught:
        if content_type is None:
            decode(body, adapter)
        else:
            decode(body, adapter, content_type)
    reason = caught.value.reason
    assert str(caught.value) == reason
    return reason


def assert_one_short_line(reason: str) -> None:
    assert reason
    assert "\n" not in reason
    assert "\r" not in reason
    assert len(reason) <= 200, reason


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "adapter"),
    [
        pytest.param(
            Registration(
                state=Worker(worker_id="w1", active=True, timestamp=T0),
                status_interval=2.0,
                started_at=T0,
            ),
            LIFECYCLE,
            id="registration",
        ),
        pytest.param(Goodbye(state=Worker(worker_id="w1", timestamp=T0)), LIFECYCLE, id="goodbye"),
        pytest.param(
            Command(target="all", changes=WorkerChanges(active=False), generation=9),
            COMMAND,
            id="command",
        ),
        pytest.param(good_status(), STATUS, id="status"),
        pytest.param(
            Status(
                seq=4,
                state=Worker(worker_id="w1", active=True, timestamp=T0, generation=9),
                status_interval=2.0,
                started_at=T0,
                ack=Ack(
                    command_id=UUID("6b1f4a2e-8c1d-4f5e-9a7b-0c2d3e4f5a6b"),
                    generation=9,
                    outcome=Outcome.APPLIED,
                    diff={"active": FieldChange(old=False, new=True)},
                ),
            ),
            STATUS,
            id="status-ack",
        ),
    ],
)
def test_encode_decode_round_trip(message: BaseModel, adapter: TypeAdapter[Any]) -> None:
    body = encode(message)
    assert isinstance(body, bytes)
    json.loads(body)  # plain JSON on the wire
    assert decode(body, adapter) == message
    assert decode(body, adapter, CONTENT_TYPE) == message
    assert decode(body, adapter, None) == message  # no content type: judged by the body


def test_body_just_under_the_limit_is_judged_by_content() -> None:
    data = good_status_json()
    encoded = json.dumps(data).encode()
    padded = encoded[:-1] + b" " * (MAX_BODY_BYTES - len(encoded)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    assert decode(padded, STATUS) == STATUS.validate_json(encoded)


# -- what is refused, and why --------------------------------------------------------------


def test_oversize_body_is_rejected_before_parsing() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    reason = reason_for(body, STATUS)
    assert_one_short_line(reason)
    assert str(MAX_BODY_BYTES) in reason
    assert str(MAX_BODY_BYTES + 1) in reason


def test_oversize_valid_message_is_still_rejected() -> None:
    encoded = encode(good_status())
    body = encoded[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(encoded)) + b"}"
    assert len(body) == MAX_BODY_BYTES + 1
    assert "exceeds" in reason_for(body, STATUS)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "", "application/octet-stream"]
)
def test_wrong_content_type_is_rejected(content_type: str) -> None:
    reason = reason_for(encode(good_status()), STATUS, content_type)
    assert_one_short_line(reason)
    assert "content type" in reason
    assert repr(content_type) in reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"seq": 1,', id="truncated"),
        pytest.param(b"{'seq': 1}", id="single-quotes"),
        pytest.param(b"\x00\x01\x02", id="binary"),
    ],
)
@pytest.mark.parametrize("adapter", [LIFECYCLE, COMMAND, STATUS], ids=["lifecycle", "cmd", "st"])
def test_invalid_json_is_rejected(body: bytes, adapter: TypeAdapter[Any]) -> None:
    reason = reason_for(body, adapter)
    assert_one_short_line(reason)
    assert reason.startswith("body: ")
    assert "JSON" in reason


@pytest.mark.parametrize("depth", [500, 20_000])
def test_deeply_nested_json_is_rejected(depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    assert len(body) <= MAX_BODY_BYTES
    reason = reason_for(body, STATUS)
    assert_one_short_line(reason)
    assert reason.startswith("body: ")


def test_deeply_nested_value_inside_a_message_is_rejected() -> None:
    encoded = encode(good_status()).decode()
    nested = "[" * 1000 + "]" * 1000
    body = encoded.replace('"seq":3', f'"seq":{nested}').encode()
    assert nested in body.decode()
    reason = reason_for(body, STATUS)
    assert_one_short_line(reason)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe{}", id="bad-start"),
        pytest.param(b'{"seq": "\xff"}', id="in-string"),
        pytest.param(b'{"seq": "\xc3"}', id="truncated-sequence"),
    ],
)
def test_invalid_utf8_is_rejected(body: bytes) -> None:
    reason = reason_for(body, STATUS)
    assert_one_short_line(reason)
    assert reason.startswith("body: ")


def test_invalid_utf8_inside_an_otherwise_valid_message_is_rejected() -> None:
    body = encode(good_status()).replace(b'"w1"', b'"w\xff1"')
    assert b"\xff" in body
    assert_one_short_line(reason_for(body, STATUS))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda d: d.update(seq=-1), "seq", id="seq"),
        pytest.param(lambda d: d["state"].update(worker_id="all"), "state.worker_id", id="id"),
        pytest.param(lambda d: d["state"].update(activity=-3), "state.activity", id="activity"),
        pytest.param(lambda d: d.update(schema_version=2), "schema_version", id="version"),
        pytest.param(lambda d: d.update(sent_at="2026-01-01T00:00:00"), "sent_at", id="naive"),
        pytest.param(lambda d: d.update(admin=True), "admin", id="extra"),
        pytest.param(lambda d: d.pop("state"), "state", id="missing"),
    ],
)
def test_reason_is_one_line_naming_the_field(mutate: Any, field: str) -> None:
    data = good_status_json()
    mutate(data)
    reason = reason_for(json.dumps(data).encode(), STATUS)
    assert_one_short_line(reason)
    assert reason.startswith(f"{field}: ")


def test_reason_counts_further_problems() -> None:
    data = good_status_json()
    data["seq"] = -1
    data["state"]["activity"] = -1
    reason = reason_for(json.dumps(data).encode(), STATUS)
    assert reason.startswith("seq: ") or reason.startswith("state.activity: ")
    assert reason.endswith("(+1 more)")


def test_status_spoofed_as_a_command_is_rejected_by_the_command_adapter() -> None:
    data = good_status_json()
    data["kind"] = "command"
    reason = reason_for(json.dumps(data).encode(), COMMAND)
    assert_one_short_line(reason)
    assert "more)" in reason


def test_status_sent_to_the_lifecycle_queue_is_rejected() -> None:
    reason = reason_for(encode(good_status()), LIFECYCLE)
    assert_one_short_line(reason)
    assert "kind" in reason


def test_invalid_message_reason_attribute() -> None:
    error = InvalidMessage("seq: too small")
    assert error.reason == "seq: too small"
    assert str(error) == "seq: too small"


# Hostile input must not be able to smuggle line breaks or kilobytes into the reason,
# which is logged and attached to the dead-lettered message.
@pytest.mark.parametrize(
    ("build", "adapter"),
    [
        pytest.param(
            lambda: {**good_status_json(), "evil\nINFO forged log line": 1},
            STATUS,
            id="newline-in-extra-field-name",
        ),
        pytest.param(
            lambda: {**good_status_json(), "x" * 20_000: 1},
            STATUS,
            id="huge-extra-field-name",
        ),
        pytest.param(
            lambda: {**good_status_json(), "kind": "register\nINFO forged"},
            LIFECYCLE,
            id="newline-in-kind",
        ),
        pytest.param(
            lambda: {**good_status_json(), "kind": "k" * 20_000},
            LIFECYCLE,
            id="huge-kind",
        ),
    ],
)
def test_reason_stays_one_short_line_for_hostile_input(
    build: Any, adapter: TypeAdapter[Any]
) -> None:
    body = json.dumps(build()).encode()
    assert len(body) <= MAX_BODY_BYTES
    assert_one_short_line(reason_for(body, adapter))
