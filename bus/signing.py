"""Optional command signatures: with COMMAND_SIGNING_KEY set on both sides, the monitor
signs every command it sends and workers refuse any command without a valid, unexpired
signature by that key, so a client that can publish to the command exchange cannot
steer the fleet. Pure: no broker, the clock is passed in."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from bus.errors import InvalidMessage
from models.messages import Command, Signature


def _mac(command: Command, key: bytes, key_id: str, expires_at: datetime) -> str:
    unsigned = command.model_copy(update={"signature": None}).model_dump_json()
    message = f"{key_id}|{expires_at.isoformat()}|{unsigned}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(command: Command, key: bytes, key_id: str, now: datetime, ttl: float) -> Command:
    """The command with a signature valid for `ttl` seconds."""
    expires_at = now + timedelta(seconds=ttl)
    mac = _mac(command, key, key_id, expires_at)
    signature = Signature(key_id=key_id, expires_at=expires_at, mac=mac)
    return command.model_copy(update={"signature": signature})


def verify(command: Command, key: bytes, key_id: str, now: datetime) -> None:
    """Raise InvalidMessage unless `command` carries a valid, unexpired signature."""
    signature = command.signature
    if signature is None:
        raise InvalidMessage("command is not signed")
    if signature.key_id != key_id:
        raise InvalidMessage(f"command signed with unknown key {signature.key_id!r}")
    expected = _mac(command, key, key_id, signature.expires_at)
    if not hmac.compare_digest(expected, signature.mac):
        raise InvalidMessage("command signature does not match")
    if signature.expires_at <= now:
        raise InvalidMessage("command signature expired")
