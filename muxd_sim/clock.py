"""Virtual time for tests and benchmarks: one fake clock, and an event loop that runs on it.

:class:`FakeClock` holds two readings that only move when told: the wall clock (UNIX seconds,
what ``time.time`` would say) and the monotonic clock (what ``time.monotonic`` would say).
:meth:`~FakeClock.advance` moves both, as time passing does; :meth:`~FakeClock.step` moves the
wall clock alone, as NTP setting the time of a box without a real-time clock does. Its
:meth:`~FakeClock.sleep` is an injectable ``asyncio.sleep`` on the monotonic clock: a sleeper
wakes when an advance reaches its end, or at once, moving the clock, when the clock is built
with ``jump=True`` (for a loop driven alone, whose every sleep is just time passing).

:meth:`~FakeClock.run_for` and :meth:`~FakeClock.run_until` drive loops that sleep on the
clock: they wait (real time) until every loop is asleep, then jump straight to the earliest
wake-up, so an hour passes in a moment and no request is hidden by a jump.

:class:`VirtualTimeLoop` is a real asyncio loop whose ``time()`` is a fake clock's monotonic
reading: when nothing is ready to run it jumps to its next timer, so the code's own
``asyncio.sleep`` and ``call_later`` take no wall time. :func:`run_virtual` runs a coroutine
on one and fails if it leaves tasks pending.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

# 2026-11-25 12:01 UTC: a plausible "now" for SMS stamped on the morning of that day.
DEFAULT_START = 1_795_608_060.0
# Bounds a wait (real seconds) for the loops to fall asleep; only stops a hang.
SETTLE_TIMEOUT = 10.0
# Loop iterations given to woken sleepers after an awaited advance, before it returns.
WAKE_ITERATIONS = 3
# Loop iterations that must pass with nothing to wake before the loops count as asleep.
QUIET_ITERATIONS = 5
# Real seconds between two looks at sleeping loops (lets sockets and threads answer).
SETTLE_POLL = 0.001


class FakeClock:
    """Wall and monotonic readings and a sleep that move only when told (module docstring).

    ``clock()`` (calling the object) reads the wall clock, :meth:`monotonic` the monotonic
    one; both start at ``start`` unless ``mono`` is given. ``sleeps`` lists every delay asked
    of :meth:`sleep`, in order."""

    def __init__(
        self, start: float = DEFAULT_START, *, mono: float | None = None, jump: bool = False
    ) -> None:
        self.now = start  # the wall clock (UNIX seconds)
        self.mono = start if mono is None else mono
        self.jump = jump
        self.sleeps: list[float] = []
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    # -- readings ---------------------------------------------------------------------------

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    # -- moving -----------------------------------------------------------------------------

    def step(self, seconds: float) -> None:
        """A wall-clock step (NTP on a box without a real-time clock); sleepers do not see it."""
        self.now += seconds

    def advance_to(self, mono: float) -> None:
        """Let time pass until the monotonic clock reads ``mono`` (never backwards), the wall
        clock by as much, and wake every sleeper due by then."""
        passed = max(0.0, mono - self.mono)
        self.mono += passed
        self.now += passed
        while self._heap and self._heap[0][0] <= self.mono:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, then give the woken sleepers a few loop iterations."""
        self.advance_to(self.mono + seconds)
        for _ in range(WAKE_ITERATIONS):
            await asyncio.sleep(0)

    async def move_to(self, mono: float) -> None:
        """:meth:`advance` to the monotonic reading ``mono``."""
        await self.advance(mono - self.mono)

    # -- sleeping ---------------------------------------------------------------------------

    async def sleep(self, delay: float) -> None:
        """``asyncio.sleep`` on the monotonic clock."""
        self.sleeps.append(delay)
        if delay <= 0:
            await asyncio.sleep(0)
            return
        if self.jump:
            self.advance_to(self.mono + delay)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.mono + delay, next(self._seq), fut))
        await fut

    def next_wake(self) -> float | None:
        """The monotonic reading at which the earliest sleeper wakes (None: nobody sleeps)."""
        while self._heap and self._heap[0][2].done():  # cancelled sleeps
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # -- driving loops that sleep on it ---------------------------------------------------

    async def settle(self, idle: Callable[[], bool]) -> float | None:
        """Wait (real time) until the loops are asleep and ``idle()``; the next wake-up."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while True:
                for _ in range(QUIET_ITERATIONS):
                    await asyncio.sleep(0)
                wake = self.next_wake()
                if wake is not None and idle():
                    return wake
                await asyncio.sleep(SETTLE_POLL)

    async def run_for(self, seconds: float, idle: Callable[[], bool] = lambda: True) -> None:
        """Let ``seconds`` of virtual time pass, one wake-up at a time."""
        end = self.mono + seconds
        while self.mono < end:
            wake = await self.settle(idle)
            assert wake is not None
            self.advance_to(min(wake, end))

    async def run_until(
        self, done: Callable[[], bool], idle: Callable[[], bool] = lambda: True, limit: float = 3600
    ) -> None:
        """Advance wake-up by wake-up until ``done()`` (at most ``limit`` virtual seconds)."""
        end = self.mono + limit
        while not done():
            assert self.mono < end, "not done within the limit"
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while True:
                    for _ in range(QUIET_ITERATIONS):
                        await asyncio.sleep(0)
                    if done():
                        return
                    wake = self.next_wake()
                    if wake is not None and idle():
                        break
                    await asyncio.sleep(SETTLE_POLL)
            self.advance_to(min(wake, end))


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when it would block for ``t`` seconds, ``clock`` (its
    monotonic reading is the loop's ``time()``) advances by ``t``."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__()
        self.clock = FakeClock(mono=0.0) if clock is None else clock
        selector = self._selector  # type: ignore[attr-defined]
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            ready: list[tuple[selectors.SelectorKey, int]] = real_select(0)
            if ready or timeout is None:
                # Nothing scheduled at all: only a thread can wake us (executor shutdown).
                return ready or real_select(timeout)
            self.clock.advance_to(self.clock.mono + timeout)
            return ready

        selector.select = select

    def time(self) -> float:
        return self.clock.mono


def run_virtual(
    main: Callable[[], Coroutine[Any, Any, None]], clock: FakeClock | None = None
) -> None:
    """Run ``main()`` on a :class:`VirtualTimeLoop`; fail if it leaves a task pending."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(clock)) as runner:
        runner.run(main())
        left = [t for t in asyncio.all_tasks(runner.get_loop()) if not t.done()]
        if left:
            names = ", ".join(f"{t.get_name()} ({t.get_coro()!r})" for t in left)
            raise AssertionError(f"{len(left)} task(s) left pending: {names}")
