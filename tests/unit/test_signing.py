"""Command signatures: sign on the monitor's side, verify on the worker's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.codec import decode, encode
from bus.errors import InvalidMessage
from bus.signing import sign, verify
from models.messages import COMMAND, Command
from models.worker_model import WorkerChanges

KEY, KEY_ID = b"shared-secret", "k1"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def command(**changes: object) -> Command:
    base = Command(target="w1", changes=WorkerChanges(active=True), generation=5)
    return base.model_copy(update=changes)


def test_a_signed_command_verifies_after_crossing_the_wire() -> None:
    signed = sign(command(), KEY, KEY_ID, NOW, ttl=30)
    received = decode(encode(signed), COMMAND)
    verify(received, KEY, KEY_ID, NOW + timedelta(seconds=29))
    assert received.signature is not None
    assert received.signature.expires_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda c: c.model_copy(update={"signature": None}), "command is not signed"),
        (lambda c: c.model_copy(update={"generation": 6}), "command signature does not match"),
        (lambda c: c.model_copy(update={"target": "w2"}), "command signature does not match"),
        (
            lambda c: c.model_copy(update={"changes": WorkerChanges(active=False)}),
            "command signature does not match",
        ),
        (
            lambda c: c.model_copy(
                update={
                    "signature": c.signature.model_copy(
                        update={"expires_at": NOW + timedelta(days=1)}
                    )
                }
            ),
            "command signature does not match",
        ),
        (
            lambda c: c.model_copy(
                update={"signature": c.signature.model_copy(update={"key_id": "k0"})}
            ),
            "command signed with unknown key 'k0'",
        ),
    ],
    ids=["unsigned", "generation", "target", "changes", "expiry", "key-id"],
)
def test_a_tampered_or_unsigned_command_is_refused(tamper: object, reason: str) -> None:
    signed = sign(command(), KEY, KEY_ID, NOW, ttl=30)
    with pytest.raises(InvalidMessage) as refused:
        verify(tamper(signed), KEY, KEY_ID, NOW)  # type: ignore[operator]
    assert refused.value.reason == reason


def test_a_command_signed_with_another_key_is_refused() -> None:
    forged = sign(command(), b"guessed", KEY_ID, NOW, ttl=30)
    with pytest.raises(InvalidMessage, match="does not match"):
        verify(forged, KEY, KEY_ID, NOW)


def test_an_expired_signature_is_refused() -> None:
    signed = sign(command(), KEY, KEY_ID, NOW, ttl=30)
    with pytest.raises(InvalidMessage, match="expired"):
        verify(signed, KEY, KEY_ID, NOW + timedelta(seconds=30))
