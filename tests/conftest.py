"""Checks every test inherits: an asynchronous test leaves no task behind.

pytest-asyncio runs each async test on its own loop and, when it closes that loop, cancels
whatever is still pending without a word. A task still pending there was started by the test,
one of its fixtures or the code under test, and nobody awaited or cancelled it: a daemon that
does the same leaks it on every restart of the component. :func:`no_leaked_tasks` fails such a
test, naming each task and where it is suspended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

# pytester runs the check itself on a sample of leaky and tidy tests (tests/test_leaked_tasks.py).
pytest_plugins = ["pytester"]

# The fixture pytest-asyncio sets up for a test on a loop of its own (one per test function).
FUNCTION_RUNNER = "_function_scoped_runner"


def pending_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[object]]:
    """Tasks of ``loop`` not done yet (the running task excluded)."""
    current = asyncio.current_task(loop) if loop.is_running() else None
    return [t for t in asyncio.all_tasks(loop) if not t.done() and t is not current]


def describe(task: asyncio.Task[object]) -> str:
    frames = task.get_stack(limit=1)
    where = f" at {frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else ""
    return f"{task.get_name()}: {task.get_coro()!r}{where}"


def leak_report(tasks: list[asyncio.Task[object]]) -> str:
    lines = [f"{len(tasks)} task(s) still pending after the test and its fixtures:"]
    lines += [f"  {describe(t)}" for t in tasks]
    return "\n".join(lines)


@pytest.fixture(autouse=True)
def no_leaked_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an async test that leaves tasks pending on its loop once it and every fixture
    it uses (set up after this one, so torn down before) are done."""
    if FUNCTION_RUNNER not in request.fixturenames:
        yield  # not run on a per-test loop (a sync test, or one that runs its own loop)
        return
    runner: asyncio.Runner = request.getfixturevalue(FUNCTION_RUNNER)
    yield
    leaked = pending_tasks(runner.get_loop())
    if leaked:
        pytest.fail(leak_report(leaked), pytrace=False)
