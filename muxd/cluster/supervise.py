"""The cluster's part of a box never ends the box.

PostgreSQL being away is handled inside each loop (:mod:`muxd.cluster.gate`). Anything else
that escapes the cluster's tasks (an error PostgreSQL gives that retrying one call will not
cure: a table dropped by hand, a privilege revoked, a schema newer than this muxd; or a bug)
used to end ``muxd run``, and with it the receive path: under systemd that was a restart loop
in which the box read no SMS. Here such an error stops the cluster's tasks only: it is logged
once (again only when the reason changes), the v1 answers go on as while PostgreSQL is down
(no numbers), SMS are received and journaled, and the cluster's tasks start again after
:data:`RESTART_FLOOR` (migrations first, so a dropped schema comes back by itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

LOGGER = logging.getLogger(__name__)

# Between the end of the cluster's tasks on an error and their next start (an hour of an
# error that recurs at once: 120 starts, and one log line).
RESTART_FLOOR: Final = 30.0

Sleep = Callable[[float], Awaitable[None]]


def first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: what the tasks ended on."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def reason(exc: BaseException) -> str:
    leaf = first_leaf(exc)
    text = str(leaf).strip().splitlines()[0] if str(leaf).strip() else ""
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


async def supervise(
    what: str,
    run: Callable[[], Awaitable[None]],
    *,
    sleep: Sleep = asyncio.sleep,
    on_stopped: Callable[[str], None] = lambda _reason: None,
) -> None:
    """Run ``run()`` (the cluster's tasks, named ``what`` in the log) until cancelled: when it
    ends on an error, say why (once per reason, with the traceback the first time), call
    ``on_stopped(reason)``, wait :data:`RESTART_FLOOR` and start it again. Returns when
    ``run()`` returns."""
    last: str | None = None
    while True:
        try:
            await run()
            return
        except Exception as exc:  # anything but a cancel: the box goes on
            why = reason(exc)
            if why != last:
                LOGGER.error(
                    "cluster: %s stopped on an error (started again every %.0f s; SMS are"
                    " still received and journaled meanwhile): %s",
                    what,
                    RESTART_FLOOR,
                    why,
                    exc_info=first_leaf(exc) if last is None else None,
                )
            last = why
            on_stopped(why)
        await sleep(RESTART_FLOOR)
