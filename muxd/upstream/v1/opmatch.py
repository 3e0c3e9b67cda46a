"""Which API v1 operation an SMS belongs to, and the clocks that decision may trust.

An SMS belongs to the operation open on its number when it *reached the SIM*, not when muxd
read it: a code that arrived during the operation but was read a minute later is the client's;
one that arrived before the operation (the previous owner's late SMS) is not. The time used is
``messages.sms_time``: the SMSC stamp, or the read time when the stamp is not plausible.

An operation's window runs from GET_NUMBER (``created_at``) to its FINISH_ACTIVATION
(``finished_at``), or stays open while Onlinesim has not finished it, even after a local
expiry. The SMSC's clock and ours disagree by a little: :data:`SMSC_SKEW` is tolerated at both
ends, but a window that holds the time exactly always wins over one that needs the tolerance
(so the previous operation keeps its late SMS when the number was sold again at once); among
those that need it, the nearest wins.

Clock steps: every stored time is wall time, so a step (NTP on a box without a real-time
clock) puts times taken before and after it on different scales. :class:`ClockWatch` sees a
step as a change of wall minus monotonic time; for :data:`STEP_MEMORY` after it an SMS that
fits no window is tried again with its time moved by the step, both ways (a time taken before
the step compared with one taken after it), and every SMS that found no operation is looked at
again. An SMS
without an operation is kept ``unmatched`` and re-examined whenever operations on its number
change (every one after a clock step or a restart), for
:data:`UNMATCHED_WAIT` of monotonic time; only then is it ``no_operation`` for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

# How far the SMSC's clock may be from ours (both ends of an operation's window).
SMSC_SKEW: Final = 60.0
# How long an SMS without an operation is re-examined (monotonic seconds) before it is marked
# no_operation for good: longer than a clock correction takes after boot.
UNMATCHED_WAIT: Final = 900.0
# A change of (wall - monotonic) larger than this is a step, not drift or jitter.
STEP_MIN: Final = 5.0
# How long a step widens the tolerance (monotonic seconds): longer than a reservation (15 min)
# plus any grace, so every operation opened on the old scale has been finished or expired.
STEP_MEMORY: Final = 7200.0


@dataclass(frozen=True, slots=True)
class Window:
    activation_id: int
    start: float  # created_at (GET_NUMBER)
    end: float | None  # finished_at (FINISH_ACTIVATION), None while open upstream


def pick(windows: Iterable[Window], times: Sequence[float], tolerance: float) -> int | None:
    """The operation an SMS belongs to. ``times``: its time, then the same time moved across
    each recent clock step. The latest window holding its own time exactly; else the latest
    holding one of the moved times exactly; else the nearest within ``tolerance`` of its own
    time, then of the moved ones; else None."""
    found = list(windows)
    own, moved = times[:1], times[1:]
    for group in (own, moved):
        exact = [w for w in found for t in group if w.start <= t and (w.end is None or t <= w.end)]
        if exact:
            return max(exact, key=lambda w: w.start).activation_id
    for group in (own, moved):
        near: list[tuple[float, float, int]] = []
        for w in found:
            for t in group:
                gap = w.start - t if t < w.start else t - (w.end if w.end is not None else t)
                if gap <= tolerance:
                    near.append((gap, -w.start, w.activation_id))
        if near:
            return min(near)[2]
    return None


class ClockWatch:
    """Notices wall-clock steps by comparing the wall clock with the monotonic one."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self._offset = wall() - monotonic()
        self.steps: list[tuple[float, float]] = []  # (monotonic time seen, size)

    def check(self) -> float | None:
        """The size of a step since the last check, or None."""
        now = self.monotonic()
        offset = self.wall() - now
        delta = offset - self._offset
        self._offset = offset
        self.steps = [(at, d) for at, d in self.steps if now - at < STEP_MEMORY]
        if abs(delta) <= STEP_MIN:
            return None
        self.steps.append((now, delta))
        return delta

    def recent(self) -> list[float]:
        """The steps seen in the last :data:`STEP_MEMORY` (signed sizes)."""
        now = self.monotonic()
        return [d for at, d in self.steps if now - at < STEP_MEMORY]


class Matching:
    """The matching rule's state for one journal: clocks, tolerance, SMS waiting for an
    operation (message id -> monotonic time after which it is no_operation for good)."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        skew: float = SMSC_SKEW,
        wait: float = UNMATCHED_WAIT,
    ) -> None:
        self.clocks = ClockWatch(wall, monotonic)
        self.skew = skew
        self.wait = wait
        self.waiting: dict[int, float] = {}
        # What to look at again on the next pass: every unmatched SMS (at start, so those left
        # unmatched by a restart get a fresh wait, and after a clock step), or those on the
        # numbers whose operations changed.
        self.recheck_all = True
        self.recheck: set[str] = set()

    def changed(self, number: str | None = None) -> None:
        """Operations changed on ``number`` (None: anywhere): its SMS without one are
        examined again."""
        if number is None:
            self.recheck_all = True
        else:
            self.recheck.add(number)

    def take_recheck(self) -> Literal[True] | list[str]:
        """True: every unmatched SMS; else the numbers to look at (and forget them)."""
        if self.recheck_all:
            self.recheck_all = False
            self.recheck.clear()
            return True
        numbers = sorted(self.recheck)
        self.recheck.clear()
        return numbers

    def times(self, t: float) -> list[float]:
        """``t``, then ``t`` moved back and forth by each recent step: a time taken on one
        side of a step compared with one taken on the other."""
        out = [t]
        for d in self.clocks.recent():
            out += [t - d, t + d]
        return out

    def begin_pass(self) -> None:
        if self.clocks.check() is not None:
            self.recheck_all = True

    def unmatched(self, message_id: int) -> None:
        self.waiting.setdefault(message_id, self.clocks.monotonic() + self.wait)

    def given_up(self) -> list[int]:
        """SMS whose wait ran out (forgotten here: the caller marks them no_operation)."""
        now = self.clocks.monotonic()
        done = [mid for mid, until in self.waiting.items() if until <= now]
        for mid in done:
            del self.waiting[mid]
        return done
