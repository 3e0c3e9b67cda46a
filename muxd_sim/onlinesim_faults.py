"""Network-level faults of the Onlinesim stand-in: a rate limiter, random 503s, dropped
connections. Deterministic: the limiter runs on the stub's injectable clock and the random
errors on a seeded :class:`random.Random`, so a test can predict every answer.

The HTTP layer (:mod:`muxd_sim.onlinesim`) applies them; the knobs live on
:class:`muxd_sim.onlinesim_state.Onlinesim`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


def check_rate(value: float, what: str, *, upper: float = math.inf) -> float:
    """Return ``value`` if it is a finite number in ``[0, upper]``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not (math.isfinite(value) and 0 <= value <= upper):
        wanted = "a finite number >= 0" if math.isinf(upper) else f"between 0 and {upper:g}"
        raise ValueError(f"{what} must be {wanted}, got {value!r}")
    return float(value)


class TokenBucket:
    """``rate`` requests per second on average, bursts up to ``max(rate, 1)``; starts full."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        if check_rate(rate, "max_per_second") == 0:
            raise ValueError("max_per_second must be > 0 (None switches the limit off)")
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def take(self) -> bool:
        """Spend one token if there is one; False means "answer 429"."""
        now = self._clock()
        elapsed = max(0.0, now - self._last)  # a clock stepping back refills nothing
        self._last = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RandomErrors:
    """Answer a fraction of requests 503: one draw from a seeded generator per request asked."""

    def __init__(self, seed: int, rate: float = 0.0) -> None:
        self.rate = check_rate(rate, "error_rate", upper=1.0)
        self._random = random.Random(seed)

    def hit(self) -> bool:
        # No draw while off, so switching the knob on later starts from the seed's first value.
        return self.rate > 0 and self._random.random() < self.rate


@dataclass
class Reset:
    """Abort the TCP connection of the next ``remaining`` matching requests, without answer."""

    endpoint: str | None  # None matches every request
    remaining: int
    processed: bool  # True: run the request first, then drop the connection (a lost reply)
