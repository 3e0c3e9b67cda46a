"""Capped exponential backoff with full jitter (pure: the caller sleeps)."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, first: float, cap: float, *, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self._rng = rng or random.Random()
        self._current = first
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt: in [current/2, current], then current grows."""
        delay = self._current * self._rng.uniform(0.5, 1.0)
        self._current = min(self.cap, self._current * self.factor)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self._current = self.first
        self.failures = 0
