"""Backoff: capped exponential delays with half-jitter."""

from __future__ import annotations

import random

import pytest

from bus.backoff import Backoff


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


def test_delays_double_up_to_the_cap_at_full_jitter() -> None:
    backoff = Backoff(initial=0.5, cap=15.0, factor=2.0, rand=lambda: 1.0)
    assert delays(backoff, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_delays_never_go_below_half_the_ceiling() -> None:
    backoff = Backoff(initial=0.5, cap=15.0, factor=2.0, rand=lambda: 0.0)
    assert delays(backoff, 8) == [0.25, 0.5, 1.0, 2.0, 4.0, 7.5, 7.5, 7.5]


def test_other_factor_and_initial() -> None:
    backoff = Backoff(initial=1.0, cap=100.0, factor=3.0, rand=lambda: 1.0)
    assert delays(backoff, 6) == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]


@pytest.mark.parametrize("seed", range(5))
def test_every_delay_stays_within_half_and_full_ceiling(seed: int) -> None:
    backoff = Backoff(initial=0.5, cap=15.0, rand=random.Random(seed).random)
    for attempt in range(40):
        ceiling = min(15.0, 0.5 * 2.0**attempt)
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_delays() -> None:
    values = iter([0.0, 0.5, 1.0])
    backoff = Backoff(initial=4.0, cap=4.0, rand=lambda: next(values))
    assert delays(backoff, 3) == [2.0, 3.0, 4.0]


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=0.5, cap=15.0, rand=lambda: 1.0)
    assert delays(backoff, 6)[-1] == 15.0

    backoff.reset()

    assert backoff.attempt == 0
    assert delays(backoff, 3) == [0.5, 1.0, 2.0]


def test_default_jitter_is_random_but_bounded() -> None:
    backoff = Backoff()
    first = backoff.next_delay()
    assert 0.25 <= first <= 0.5


def test_a_very_long_outage_keeps_returning_the_cap() -> None:
    backoff = Backoff(initial=0.5, cap=15.0, rand=lambda: 1.0)
    assert delays(backoff, 2000)[-1] == 15.0
