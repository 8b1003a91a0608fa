"""The bus's pure helpers (the connection itself is tested against real brokers)."""

from __future__ import annotations

from bus.connection import expiration_ms


def test_a_ttl_becomes_whole_milliseconds_and_never_zero() -> None:
    assert expiration_ms(30) == "30000"
    assert expiration_ms(1.2345) == "1234"
    assert expiration_ms(0.0001) == "1"  # "0" would expire the message at once
