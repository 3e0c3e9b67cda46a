"""The one retry policy of every loop that talks to Onlinesim, and the state it keeps.

:class:`Policy` is pure arithmetic: capped exponential backoff with jitter. :class:`RetryLoop`
is one loop's state (ok, or failing since when, after how many attempts, with which last
error): it turns "this attempt, started at ``t``, failed" into the time of the next attempt,
and logs state changes (ok -> failing with the reason, failing -> ok with how long and how
many attempts) plus a summary every :data:`SUMMARY_EVERY` while failing; never one line per
attempt. The caller sleeps; the clock is injected (a monotonic one in production).

The next attempt is due at ``start of the failed attempt + backoff``, and never sooner than
:attr:`Policy.floor` after the failed attempt ended (an attempt that fails instantly still
waits), nor sooner than the server's ``Retry-After`` (capped at :attr:`Policy.retry_after_cap`).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# While a loop fails, one summary line this often (attempts, last error).
SUMMARY_EVERY = 300.0
# A Retry-After longer than this is not believed (a misconfigured proxy must not silence a
# loop for a day); the policy's cap applies below it.
RETRY_AFTER_CAP = 900.0
# Error texts kept on the state (and logged) are cut to this many characters.
ERROR_TEXT_MAX = 300


@dataclass(frozen=True)
class Policy:
    """Delay before attempt ``n + 1`` after ``n`` consecutive failures.

    The first ``steady`` failures wait exactly ``first`` (no jitter: a rhythm the peer asked
    for, such as PUSH_SMS's 10 s); after that the base delay doubles (``factor``) up to ``cap``
    and the delay is drawn from ``[max(first, base * (1 - jitter)), base]``.
    """

    first: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.5
    # The least time between the end of a failed attempt and the next one.
    floor: float = 1.0
    steady: int = 0
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, failures: int, rng: random.Random) -> float:
        if failures <= self.steady:
            return self.first
        exponent = min(failures - self.steady, 64)
        base = min(self.cap, self.first * self.factor**exponent)
        low = max(self.first, base * (1.0 - self.jitter))
        return rng.uniform(low, base) if base > low else base


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None
    when absent or unreadable. ``now`` is the wall-clock time (UNIX seconds) for dates."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    wall = time.time() if now is None else now
    return max(0.0, when.timestamp() - wall)


class RetryLoop:
    """One upstream loop's retry state. ``name`` labels the metrics and the log lines."""

    def __init__(
        self,
        name: str,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        what: str = "",
    ) -> None:
        self.name = name
        self.policy = policy
        self.what = what or name
        self._clock = clock
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng or random.Random()
        self.failing_since: float | None = None
        self.attempts = 0  # consecutive failed attempts
        self.last_error: str | None = None
        self.next_at: float = -math.inf  # no attempt may start before this (clock time)
        self.failures_total = 0
        self._summary_at = 0.0

    @property
    def ok(self) -> bool:
        return self.failing_since is None

    def now(self) -> float:
        return self._clock()

    def wait(self) -> float:
        """Seconds until an attempt may start (0 when one may start now)."""
        return max(0.0, self.next_at - self._clock())

    def succeeded(self) -> None:
        if self.failing_since is not None:
            self._log.warning(
                "%s: upstream reachable again after %.0f s and %d failed attempts",
                self.what,
                self._clock() - self.failing_since,
                self.attempts,
            )
        self.failing_since = None
        self.attempts = 0
        self.last_error = None
        self.next_at = -math.inf

    def failed(self, started: float, error: object, retry_after: float | None = None) -> float:
        """The attempt begun at ``started`` failed; return the seconds until the next one."""
        now = self._clock()
        text = str(error)[:ERROR_TEXT_MAX]
        self.attempts += 1
        self.failures_total += 1
        self.last_error = text
        policy = self.policy
        due = max(started + policy.delay(self.attempts, self._rng), now + policy.floor)
        if retry_after is not None:
            due = max(due, now + min(max(0.0, retry_after), policy.retry_after_cap))
        self.next_at = due
        if self.failing_since is None:
            self.failing_since = started
            self._summary_at = now + SUMMARY_EVERY
            self._log.warning(
                "%s: upstream failing (%s); retrying with backoff, next in %.0f s",
                self.what,
                text,
                due - now,
            )
        elif now >= self._summary_at:
            self._summary_at = now + SUMMARY_EVERY
            self._log.warning(
                "%s: upstream still failing for %.0f s, %d attempts, last: %s; next in %.0f s",
                self.what,
                now - self.failing_since,
                self.attempts,
                text,
                due - now,
            )
        return due - now

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    def snapshot(self) -> dict[str, Any]:
        """The state as plain data (status page, /api/upstream)."""
        return {
            "loop": self.name,
            "state": "ok" if self.ok else "failing",
            "failing_for_s": round(self.failing_for(), 1),
            "attempts": self.attempts,
            "failures_total": self.failures_total,
            "last_error": self.last_error,
            "next_attempt_in_s": round(self.wait(), 1),
        }
