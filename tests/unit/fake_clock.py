"""A monotonic clock and a wall clock that only move when told to (for the registry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WALL0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: float = 1000.0, wall: datetime = WALL0) -> None:
        self.now = start
        self.wall_now = wall

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.wall_now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall_now += timedelta(seconds=seconds)
