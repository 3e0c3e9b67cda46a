"""The shared fake clock and the virtual-time loop."""

from __future__ import annotations

import asyncio

import pytest

from muxd_sim.clock import FakeClock, run_virtual


async def test_sleepers_wake_when_an_advance_reaches_their_end_in_order() -> None:
    clock = FakeClock(1000.0, mono=5.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("late", 30.0), ("early", 10.0))]
    await asyncio.sleep(0)  # both asleep
    await clock.advance(9.0)
    assert woke == []
    assert clock.next_wake() == 15.0
    await clock.advance(30.0)
    assert woke == [("early", 44.0), ("late", 44.0)]
    assert (clock(), clock.time(), clock.monotonic()) == (1039.0, 1039.0, 44.0)
    assert clock.sleeps == [30.0, 10.0]
    await asyncio.gather(*tasks)


async def test_a_wall_clock_step_moves_no_sleeper() -> None:
    clock = FakeClock(1000.0, mono=0.0)
    task = asyncio.create_task(clock.sleep(60.0))
    await asyncio.sleep(0)
    clock.step(3600.0)
    clock.step(-7200.0)
    await asyncio.sleep(0)
    assert not task.done()
    assert (clock.now, clock.mono) == (-2600.0, 0.0)
    await clock.move_to(60.0)
    assert task.done()
    assert clock.now == -2540.0


async def test_a_jumping_clock_moves_at_each_sleep() -> None:
    clock = FakeClock(0.0, jump=True)
    await clock.sleep(5.0)
    await clock.sleep(0.0)
    await clock.sleep(2.5)
    assert (clock.now, clock.mono, clock.sleeps) == (7.5, 7.5, [5.0, 0.0, 2.5])


async def test_run_until_jumps_from_wake_up_to_wake_up() -> None:
    clock = FakeClock(0.0)
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            ticks.append(clock.monotonic())
            await clock.sleep(300.0)

    task = asyncio.create_task(loop())
    try:
        await clock.run_until(lambda: len(ticks) >= 13, limit=7200.0)  # no real wait
        assert ticks == [300.0 * i for i in range(13)]
        await clock.run_for(600.0)
        await asyncio.sleep(0)  # the last wake-up runs
        assert ticks[-1] == 4200.0
        with pytest.raises(AssertionError, match="limit"):
            await clock.run_until(lambda: False, limit=900.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_virtual_loop_takes_no_wall_time_and_moves_its_clock() -> None:
    clock = FakeClock(1000.0, mono=0.0)
    seen: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600.0)
        seen.extend([loop.time(), clock.now])

    run_virtual(main, clock)
    assert seen == [3600.0, 4600.0]


def test_the_virtual_loop_fails_on_a_task_left_pending() -> None:
    started: list[asyncio.Task[None]] = []

    async def main() -> None:
        started.append(asyncio.create_task(asyncio.sleep(10.0), name="forgotten"))
        await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="forgotten"):
        run_virtual(main)
