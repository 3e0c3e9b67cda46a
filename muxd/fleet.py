"""The fleet: port discovery, one supervisor per port, isolation between ports.

Each port has exactly one owner task (its supervisor). A port's failure is logged, backed off
with capped exponential backoff plus jitter, and retried; it never touches another port. Only
cancellation ends a supervisor, or the port disappearing (a rescan brings it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from muxd.at import Urc
from muxd.at.sync import MARKER_TIMEOUT, RESYNC_ATTEMPTS
from muxd.errors import ModemError
from muxd.log import PortLog
from muxd.modem.port import ModemPort
from muxd.modem.session import ModemSession
from muxd.numbering import UssdQuery
from muxd.ports import PartSink, PortInfo, PortStatus
from muxd.serialio import SerialOpenError, open_port

LOGGER = logging.getLogger(__name__)

# Reconnect backoff: start small (a modem re-enumerating on USB is back within seconds), cap at
# 5 minutes so a dead port costs nothing, reset once a port has been healthy this long...
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
HEALTHY_RESET = 120.0
# ...or when it failed after being READY for at least this long: it initialised fine, then hung
# or dropped (a hang is noticed after 3 timed-out commands, 15 s), and its SMS wait on the SIM;
# a port failing sooner after READY (a bug, a flapping link) keeps doubling its backoff.
READY_RESET = 10.0


def next_backoff(current: float, *, ran_for: float, reached_ready: bool) -> tuple[float, float]:
    """(the delay before the next attempt, before jitter; the delay after that one)."""
    if ran_for > HEALTHY_RESET or (reached_ready and ran_for >= READY_RESET):
        current = BACKOFF_MIN
    return current, min(BACKOFF_MAX, current * 2)


# Closing a serial port runs in a worker thread; it takes milliseconds unless the driver hangs.
CLOSE_TIMEOUT = 5.0
# The commands of a closed session whose answers may still come (a hung modem answers them
# late, to whichever session has the port then) are not used as sync markers by the next
# session on the port if it opens within this long: the longest wait for a late answer (later
# than that, the modem is hung).
LATE_ANSWERS_FOR = RESYNC_ATTEMPTS * MARKER_TIMEOUT


def discover(patterns: list[str]) -> list[str]:
    """Every existing path matching the glob patterns, sorted, without duplicates."""
    return sorted({path for paths in discover_each(patterns).values() for path in paths})


def discover_each(patterns: list[str]) -> dict[str, list[str]]:
    """The existing paths each glob pattern matches (URLs such as socket:// match themselves)."""
    return {p: [p] if "://" in p else sorted(glob.glob(p)) for p in patterns}


class Fleet:
    """All ports. ``run()`` rescans the globs and keeps one supervisor task per port."""

    def __init__(
        self,
        patterns: list[str],
        *,
        baudrate: int,
        sink: PartSink,
        numbers: Mapping[str, str],
        sweep_interval: float,
        rescan_interval: float,
        on_change: Callable[[PortInfo], None] | None = None,
        ussd: Sequence[UssdQuery] = (),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ussd = ussd
        self.wall = wall  # the wall clock the ports stamp what they read with
        self.patterns = patterns
        self.baudrate = baudrate
        self.sink = sink
        self.numbers = numbers
        self.sweep_interval = sweep_interval
        self.rescan_interval = rescan_interval
        self.ports: dict[str, PortInfo] = {}
        self.sessions: dict[str, ModemSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._on_change = on_change or (lambda _info: None)
        self.changed = asyncio.Event()
        self.intake = asyncio.Event()  # cleared while the journal cannot store (the journal watch)
        self.intake.set()
        self._matched: dict[str, int] = {}  # glob -> ports it matched at the last rescan
        # path -> (monotonic time its session closed, commands whose answers may still come)
        self._outstanding: dict[str, tuple[float, frozenset[str]]] = {}

    def _changed(self, info: PortInfo) -> None:
        self.changed.set()
        self._on_change(info)

    async def run(self) -> None:
        try:
            while True:
                self.rescan()
                await asyncio.sleep(self.rescan_interval)
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _log_matches(self, matches: dict[str, list[str]]) -> None:
        """One line per glob at start, then only when a glob's count changes (hot-plug)."""
        for pattern, paths in matches.items():
            count = len(paths)
            before = self._matched.get(pattern)
            if before == count:
                continue
            self._matched[pattern] = count
            if count == 0:
                LOGGER.warning("modems.ports %r matches no port", pattern)
            elif before is None:
                LOGGER.info("modems.ports %r matches %d port(s)", pattern, count)
            else:
                LOGGER.info(
                    "modems.ports %r now matches %d port(s), was %d", pattern, count, before
                )

    def rescan(self) -> None:
        matches = discover_each(self.patterns)
        self._log_matches(matches)
        for path in sorted({p for paths in matches.values() for p in paths}):
            task = self._tasks.get(path)
            if task is not None and not task.done():
                continue
            name = Path(path).name
            info = self.ports.get(path) or PortInfo(name=name, path=path)
            self.ports[path] = info
            self._tasks[path] = asyncio.create_task(self._supervise(info), name=f"port:{name}")

    async def _supervise(self, info: PortInfo) -> None:
        backoff = BACKOFF_MIN
        while True:
            started = time.monotonic()
            try:
                await self._run_once(info)
            except SerialOpenError as exc:
                info.last_error = str(exc)
                url = "://" in info.path  # socket://host:port: never "vanishes"
                if not url and not os.path.exists(info.path):  # noqa: ASYNC240 - one stat per failed open
                    PortLog(LOGGER, info).warning("port vanished")
                    self._set_status(info, PortStatus.GONE)
                    return
                LOGGER.warning("%s", exc)
            except (ModemError, OSError) as exc:
                info.last_error = str(exc)
                PortLog(LOGGER, info).warning("%s", exc)
            except Exception:  # noqa: BLE001 - isolation: one port's bug must not stop the fleet
                # A bug in one port's driver must not take the fleet down: log and retry.
                PortLog(LOGGER, info).exception("unexpected failure")
            delay, backoff = next_backoff(
                backoff,
                ran_for=time.monotonic() - started,
                reached_ready=info.status is PortStatus.READY,
            )
            self._set_status(info, PortStatus.BACKOFF)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _set_status(self, info: PortInfo, status: PortStatus) -> None:
        if info.status is not status:
            info.status = status
            self._changed(info)

    def _inherited(self, path: str) -> frozenset[str]:
        """What the port's previous session may still receive, if it closed recently."""
        closed = self._outstanding.get(path)
        if closed is None or time.monotonic() - closed[0] > LATE_ANSWERS_FOR:
            self._outstanding.pop(path, None)
            return frozenset()
        return closed[1]

    def _remember_outstanding(
        self, path: str, outstanding: frozenset[str], inherited: frozenset[str]
    ) -> None:
        if not outstanding:
            self._outstanding.pop(path, None)
        elif outstanding != inherited:
            self._outstanding[path] = (time.monotonic(), outstanding)
        # else: nothing new went out (no marker was left to use): the older record ages on.

    async def _run_once(self, info: PortInfo) -> None:
        self._set_status(info, PortStatus.OPENING)
        port: ModemPort | None = None

        def on_urc(urc: Urc) -> None:
            if port is not None:
                port.on_urc(urc)

        inherited = self._inherited(info.path)
        transport, protocol = await open_port(
            info.path,
            lambda: ModemSession(info.name, on_urc=on_urc, suspects=inherited),
            baudrate=self.baudrate,
        )
        assert isinstance(protocol, ModemSession)
        session = protocol
        self.sessions[info.path] = session
        try:
            await session.wait_connected()
            port = ModemPort(
                info,
                session,
                self.sink,
                numbers=self.numbers,
                sweep_interval=self.sweep_interval,
                on_change=self._changed,
                intake=self.intake,
                ussd=self.ussd,
                wall=self.wall,
            )
            await port.run()
        finally:
            self._remember_outstanding(info.path, session.outstanding, inherited)
            info.at_timeouts += session.timeouts
            info.resyncs += session.resyncs
            self.sessions.pop(info.path, None)
            # abort: no flush (a hung modem may never drain); then wait until the fd is really
            # closed, so the next open does not find the port still locked.
            if not transport.is_closing():
                transport.abort()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await asyncio.shield(session.closed)
