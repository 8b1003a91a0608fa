"""Capped exponential backoff with jitter, for the reconnect loop."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 15.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.cap, self.factor, self._rand = initial, cap, factor, rand
        self.attempt = 0

    def next_delay(self) -> float:
        """Delay before the next attempt: in [d/2, d] with d doubling up to the cap."""
        ceiling = self.initial * self.factor**self.attempt
        if ceiling >= self.cap:
            ceiling = self.cap
        else:
            self.attempt += 1  # stops growing at the cap: no overflow in a long outage
        # Half-jitter keeps a floor (no hammering) while spreading a fleet's retries.
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0
