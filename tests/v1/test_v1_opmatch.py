"""The SMS-to-operation rule and the clock-step watch, on their own."""

from __future__ import annotations

from muxd.upstream.v1.opmatch import STEP_MEMORY, ClockWatch, Window, pick
from muxd_sim.clock import FakeClock

SKEW = 60.0


def test_exact_window_beats_a_nearer_tolerated_one() -> None:
    old = Window(1, 0.0, 1000.0)  # finished at 1000
    new = Window(2, 1002.0, None)  # the number sold again 2 s later
    assert pick([old, new], [999.0], SKEW) == 1  # the previous client's late code
    assert pick([old, new], [1003.0], SKEW) == 2


def test_the_latest_of_overlapping_windows_wins() -> None:
    expired = Window(1, 0.0, None)  # expired locally, never finished
    resold = Window(2, 1000.0, None)
    assert pick([expired, resold], [500.0], SKEW) == 1
    assert pick([expired, resold], [1500.0], SKEW) == 2


def test_tolerance_at_both_ends_nearest_first() -> None:
    a = Window(1, 0.0, 100.0)
    b = Window(2, 200.0, 300.0)
    assert pick([a, b], [130.0], SKEW) == 1
    assert pick([a, b], [180.0], SKEW) == 2
    assert pick([a, b], [-61.0], SKEW) is None
    assert pick([a, b], [361.0], SKEW) is None


def test_clock_watch_sees_steps_and_forgets_them() -> None:
    clock = FakeClock(1_000_000.0, mono=10.0)
    watch = ClockWatch(clock, clock.monotonic)
    clock.advance_to(clock.mono + 1.0)
    assert watch.check() is None
    assert watch.recent() == []
    clock.step(-3600.0)
    assert watch.check() == -3600.0
    assert watch.recent() == [-3600.0]
    clock.advance_to(clock.mono + STEP_MEMORY)
    assert watch.check() is None
    assert watch.recent() == []


def test_a_time_read_across_a_step_finds_its_exact_window() -> None:
    """Stepped back an hour: an SMS read (and stamped with the read time) after the step is
    the current operation's, not the nearer previous one's."""
    hour = 3600.0
    previous = Window(1, -1000.0, -100.0)
    current = Window(2, 0.0, None)
    read = 60.0 - hour
    assert pick([previous, current], [read], SKEW) is None
    assert pick([previous, current], [read, read + hour, read - hour], SKEW) == 2
    assert pick([previous, current], [read, read - hour, read + hour], SKEW) == 2
    # two hours earlier there was another operation: of the moved times landing in windows,
    # the later window wins; the SMS's own time, when it fits exactly, beats any moved one
    older = Window(3, -2 * hour - 100.0, -2 * hour + 200.0)
    assert pick([older, previous, current], [read, read - hour, read + hour], SKEW) == 2
    assert pick([older, previous, current], [-500.0, -500.0 + hour], SKEW) == 1
