"""The root conftest's check: a test that leaves a task pending on its loop fails, naming it;
one that cancels and awaits what it started, or whose fixture does so at teardown, passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import pending_tasks

CONFTEST = Path(__file__).with_name("conftest.py")
LEAKY = """
import asyncio
import pytest

async def forever() -> None:
    await asyncio.Event().wait()

async def test_leaks_a_task() -> None:
    asyncio.create_task(forever(), name="left-behind")
    await asyncio.sleep(0)

async def test_cancels_at_the_end() -> None:
    # The cancellation runs before the loop stops: the task is done, not left behind.
    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    task.cancel()

async def test_awaits_what_it_cancels() -> None:
    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

@pytest.fixture
async def background():
    task = asyncio.create_task(forever(), name="fixture-task")
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

async def test_fixture_cleans_up_at_teardown(background) -> None:
    await asyncio.sleep(0)
    assert not background.done()

@pytest.fixture
async def sloppy():
    yield asyncio.create_task(forever(), name="fixture-leak")

async def test_fixture_leaks(sloppy) -> None:
    await asyncio.sleep(0)

def test_sync() -> None:
    pass
"""


def test_a_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())  # this very check, on its own
    pytester.makepyfile(test_leaky=LEAKY)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "asyncio")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 6, result.stdout.str()
    assert outcomes.get("errors") == 2, result.stdout.str()
    out = result.stdout.str()
    assert "ERROR at teardown of test_leaks_a_task" in out
    assert "ERROR at teardown of test_fixture_leaks" in out
    assert "left-behind: <coroutine object forever" in out
    assert "fixture-leak: <coroutine object forever" in out


def test_pending_tasks_lists_what_is_left() -> None:
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(asyncio.sleep(3600), name="sleeper")
        assert pending_tasks(loop) == [task]
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        assert pending_tasks(loop) == []
    finally:
        loop.close()
