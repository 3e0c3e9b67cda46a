"""The per-port reconnect policy (a pure function of what the last attempt did)."""

from __future__ import annotations

from muxd.fleet import BACKOFF_MAX, BACKOFF_MIN, HEALTHY_RESET, READY_RESET, next_backoff


def test_failing_opens_double_up_to_the_cap() -> None:
    delays, backoff = [], BACKOFF_MIN
    for _ in range(12):
        delay, backoff = next_backoff(backoff, ran_for=0.1, reached_ready=False)
        delays.append(delay)
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == BACKOFF_MAX


def test_a_port_that_hung_after_ready_is_retried_at_once() -> None:
    delay, backoff = next_backoff(BACKOFF_MAX, ran_for=READY_RESET + 5, reached_ready=True)
    assert delay == BACKOFF_MIN
    assert backoff == 2 * BACKOFF_MIN


def test_a_port_failing_right_after_ready_keeps_backing_off() -> None:
    delay, _ = next_backoff(64.0, ran_for=READY_RESET / 2, reached_ready=True)
    assert delay == 64.0


def test_a_long_healthy_run_resets_even_without_ready() -> None:
    delay, _ = next_backoff(BACKOFF_MAX, ran_for=HEALTHY_RESET + 1, reached_ready=False)
    assert delay == BACKOFF_MIN
