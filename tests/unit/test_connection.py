"""The bus's pure helpers (the connection itself is tested against real brokers)."""

from __future__ import annotations

from pika.adapters.utils.connection_workflow import AMQPConnectorSocketConnectError
from pika.exceptions import AMQPConnectionError

from bus.connection import _reason, expiration_ms


def test_a_ttl_becomes_whole_milliseconds_and_never_zero() -> None:
    assert expiration_ms(30) == "30000"
    assert expiration_ms(1.2345) == "1234"
    assert expiration_ms(0.0001) == "1"  # "0" would expire the message at once


def test_a_reason_names_what_pikas_silent_errors_wrap() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    # How a refused connect reaches the bus: an error with no message holding (in its
    # args) the connector's, with none either, holding (as `.exception`) the OSError.
    failed = AMQPConnectionError(AMQPConnectorSocketConnectError(refused))
    assert _reason(failed) == (
        "AMQPConnectionError: AMQPConnectorSocketConnectError: "
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert _reason(AMQPConnectionError()) == "AMQPConnectionError"  # nothing to tell
    assert _reason(ValueError("bad")) == "ValueError: bad"  # one that says something
    assert len(_reason(AMQPConnectionError(ValueError("x" * 1000)))) == 300  # one line's worth
