"""The journal's writer thread: runs blocking SQLite calls one at a time, in order.

A leaner hand-off than ``loop.run_in_executor`` (no concurrent Future chained to an asyncio
one, no coroutine-function checks): a job goes through a :class:`queue.SimpleQueue`, and its
result comes back with one ``call_soon_threadsafe``. At a few journal transactions per SMS this
is a measurable share of the event loop's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]


def _resolve(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class WriterThread:
    """One daemon thread. A caller cancelled while its job runs does not stop the job."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._thread.is_alive():
            raise RuntimeError("the writer thread is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, loop, fut))
        return await fut

    def stop(self, *, wait: bool = True) -> None:
        """Stop after the jobs already queued."""
        self._jobs.put(None)
        if wait:
            self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, loop, fut = job
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
                outcome: tuple[Callable[..., None], Any] = (_fail, exc)
            else:
                outcome = (_resolve, result)
            # The loop may be closed already (a caller gone at shutdown): nobody waits then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(outcome[0], fut, outcome[1])
