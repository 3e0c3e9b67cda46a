"""One port's AT session: bytes from the transport -> parser events -> command results / URCs.

Discipline:
- one command in flight per port (a lock);
- the waiter is registered before the command is written;
- the deadline is absolute (a timer), so a URC flood cannot extend it;
- a URC never completes a command: the parser routes it apart;
- an answer never completes a later command: after a timeout, a cancel or an answer with no
  command in flight the session is unsynchronised, and before its next command it proves
  sync with a marker (:mod:`muxd.at.sync`); each loss of sync starts a new *epoch*, and a
  command can be tied to the epoch of an earlier answer (a delete to its read);
- answers that arrive with no command in flight are counted and dropped;
- nothing raises out of ``data_received``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable

from muxd.at import (
    AtParser,
    AtSync,
    Echo,
    Final,
    Garbage,
    Hung,
    Info,
    Prompt,
    SendMarker,
    Synchronised,
    Urc,
)
from muxd.at.results import parse_final
from muxd.at.urc import URC_NAMES
from muxd.errors import (
    AtCommandError,
    AtTimeoutError,
    ModemHungError,
    PortClosedError,
    SyncLostError,
)

LOGGER = logging.getLogger(__name__)

# Most AT commands answer within milliseconds; 5 s covers slow firmware on a loaded USB hub.
AT_TIMEOUT = 5.0
# Reading a listing of a full SIM (30-50 PDUs at 115200 baud) takes well under a second, but some
# firmware scans storage slowly: allow 20 s.
CMGL_TIMEOUT = 20.0
# The transport calls connection_made on a later loop iteration; it is immediate in practice.
OPEN_TIMEOUT = 5.0
# How many raw lines per port are kept for /debug views.
TRACE_LINES = 50
# Answers (not URCs) that can arrive with no command in flight: a late one is dropped.
_ANSWER_NAMES = frozenset({"+CMGR", "+CMGL"})


class _Expired(Exception):
    """A command's deadline passed (raised into its waiter by the deadline timer)."""


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Response:
    """The information lines and final result of one command."""

    __slots__ = ("command", "epoch", "final", "interrupted_by", "lines")

    def __init__(self, command: str, epoch: int = 0) -> None:
        self.command = command
        self.lines: list[Info] = []
        self.final: Final | None = None
        #: The sync epoch the command was sent in (see :mod:`muxd.at.sync`).
        self.epoch = epoch
        #: A URC the caller flagged while this command was in flight (a SIM event).
        self.interrupted_by: str | None = None

    def first(self, prefix: str) -> str | None:
        """The arguments of the first info line starting with ``prefix`` (e.g. "+CSQ")."""
        for info in self.lines:
            if info.line.startswith(prefix):
                return info.line[len(prefix) :].lstrip(":").strip()
        return None


class ModemSession(asyncio.Protocol):
    """asyncio Protocol glue around the sans-I/O :class:`AtParser`."""

    def __init__(
        self,
        name: str,
        *,
        on_urc: Callable[[Urc], None],
        on_garbage: Callable[[Garbage], None] | None = None,
        synchronised: bool = False,
        suspects: Iterable[str] = (),
    ) -> None:
        """``suspects``: commands of the port's previous session whose answers may still come
        (its :attr:`outstanding`): they are not used as sync markers."""
        self.name = name
        self._on_urc = on_urc
        self._on_garbage = on_garbage
        self._parser = AtParser()
        self._transport: asyncio.Transport | None = None
        self._lock = asyncio.Lock()
        self._current: Response | None = None
        self._waiter: asyncio.Future[Response] | None = None
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._urc_waiters: list[tuple[str, asyncio.Future[Urc]]] = []
        self.trace: deque[str] = deque(maxlen=TRACE_LINES)
        self.timeouts = 0
        self.resyncs = 0
        # A fresh session is unsynchronised: the port may still carry the answers to the
        # commands of a session that timed out before the port was reopened.
        self._sync = AtSync(synchronised=synchronised, suspects=suspects)
        self._sync_wake: asyncio.Future[None] | None = None
        self._loop = loop
        self.strays = 0  # answers that came with no command in flight

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self.connected.done():
            self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        err = PortClosedError(f"{self.name}: port closed" + (f": {exc}" if exc else ""))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)
        if self._sync_wake is not None and not self._sync_wake.done():
            self._sync_wake.set_exception(err)
        if not self.connected.done():
            self.connected.set_exception(err)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            events = self._parser.feed(data)
        except Exception:  # the parser promises never to raise; keep the port alive if it does
            LOGGER.exception("%s: AT parser failed on %r", self.name, data[:64])
            self.resyncs += 1
            return
        for event in events:
            try:
                self._dispatch(event)
            except Exception:
                LOGGER.exception("%s: handling %r failed", self.name, event)

    def _dispatch(self, event: Echo | Info | Final | Urc | Prompt | Garbage) -> None:
        sync = self._sync
        if sync.resyncing and sync.feed(event, self._loop.time()):
            if isinstance(event, Echo | Info | Final | Urc):
                self.trace.append(f"< {event.line}")
            if self._sync_wake is not None and not self._sync_wake.done():
                self._sync_wake.set_result(None)
            return
        if isinstance(event, Info):
            self.trace.append(f"< {event.line}")
            if self._current is not None:
                self._current.lines.append(event)
        elif isinstance(event, Final):
            self.trace.append(f"< {event.line}")
            if self._current is not None and self._waiter is not None:
                self._current.final = event
                if not self._waiter.done():
                    self._waiter.set_result(self._current)
        elif isinstance(event, Urc):
            self.trace.append(f"< {event.line}")
            if event.name in _ANSWER_NAMES or parse_final(event.line) is not None:
                # An answer with nothing in flight: some command got a final result that was
                # not its own, or an answer came twice. Prove sync before the next command.
                self.strays += 1
                self._lose(None)
                return
            if not sync.synchronised and event.name not in URC_NAMES:
                # Most likely a late answer's line (an IMEI, a +CCID): counted, and passed on
                # only as an unknown URC, which nothing acts upon.
                self.strays += 1
            for name, fut in self._urc_waiters:
                if name == event.name and not fut.done():
                    fut.set_result(event)
            self._on_urc(event)
        elif isinstance(event, Garbage):
            self.resyncs += 1
            LOGGER.debug("%s: resync (%s): %r", self.name, event.reason, event.data[:64])
            if self._on_garbage is not None:
                self._on_garbage(event)
        # Echo and Prompt need no action: echo is turned off during init, no command here
        # waits for a prompt yet.

    # -- commands -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    def expect_urc(self, name: str) -> asyncio.Future[Urc]:
        """Register interest in the next URC ``name`` (before sending what provokes it)."""
        fut: asyncio.Future[Urc] = asyncio.get_running_loop().create_future()
        self._urc_waiters.append((name, fut))
        return fut

    async def wait_urc(self, fut: asyncio.Future[Urc], *, timeout: float) -> Urc:
        async with asyncio.timeout(timeout):
            return await fut

    def forget_urc(self, fut: asyncio.Future[Urc]) -> None:
        self._urc_waiters = [(n, f) for n, f in self._urc_waiters if f is not fut]
        if not fut.done():
            fut.cancel()

    async def wait_connected(self) -> None:
        async with asyncio.timeout(OPEN_TIMEOUT):
            await self.connected

    @property
    def epoch(self) -> int:
        """Incremented on each loss of sync (see :mod:`muxd.at.sync`)."""
        return self._sync.epoch

    @property
    def synchronised(self) -> bool:
        return self._sync.synchronised

    @property
    def outstanding(self) -> frozenset[str]:
        """Commands whose answers may still arrive (for the next session on this port)."""
        return self._sync.outstanding

    @property
    def discarded(self) -> int:
        """Lines and final results dropped as not belonging to any command in flight."""
        return self._sync.discarded + self.strays

    def flag_in_flight(self, urc_name: str) -> None:
        """Mark the command in flight, if any, as interrupted by ``urc_name`` (a SIM event):
        which SIM its answer comes from is unknown."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the answer was complete before the event
        if self._current is not None and self._current.interrupted_by is None:
            self._current.interrupted_by = urc_name

    def _lose(self, command: str | None) -> None:
        was = self._sync.synchronised
        self._sync.lost(command, self._loop.time())
        if was:
            LOGGER.info(
                "%s: out of sync after %s (epoch %d)",
                self.name,
                command or "an answer with no command in flight",
                self._sync.epoch,
            )

    async def _resync(self) -> None:
        """Send markers until the sync state machine is satisfied (or gives up)."""
        loop = self._loop
        sync = self._sync
        epoch = sync.epoch
        try:
            while True:
                step = sync.poll(loop.time())
                if isinstance(step, Synchronised):
                    if epoch:
                        LOGGER.info("%s: in sync again (epoch %d)", self.name, epoch)
                    return
                if isinstance(step, Hung):
                    raise ModemHungError(
                        f"{self.name}: no answer to {step.attempts} sync markers: hung"
                    )
                if isinstance(step, SendMarker):
                    transport = self._transport
                    if transport is None:
                        raise PortClosedError(f"{self.name}: port closed")
                    self.trace.append(f"> {step.command}")
                    transport.write(step.command.encode("ascii") + b"\r")
                    continue
                fut: asyncio.Future[None] = loop.create_future()
                self._sync_wake = fut
                handle = loop.call_at(step.until, _wake, fut)
                try:
                    await fut
                finally:
                    handle.cancel()
                    self._sync_wake = None
        except BaseException:
            # Cancelled or closed with a marker out: its answer may still come.
            if sync.resyncing:
                sync.lost(sync.marker, loop.time())
            raise

    async def command(
        self, command: str, *, timeout: float = AT_TIMEOUT, epoch: int | None = None
    ) -> Response:
        """Send one command and wait for its final result.

        With ``epoch``, the command is sent only if sync was not lost since that epoch (a
        delete tied to its read); otherwise SyncLostError. Before any other command an
        unsynchronised session first proves sync (ModemHungError if it cannot).

        Raises AtCommandError on ERROR/+CME/+CMS, AtTimeoutError past the deadline,
        PortClosedError if the port goes away.
        """
        async with self._lock:
            sync = self._sync
            if epoch is not None and (epoch != sync.epoch or not sync.synchronised):
                raise SyncLostError(f"{self.name}: {command} not sent: sync lost since it")
            if self._transport is None:
                raise PortClosedError(f"{self.name}: port closed")
            if not sync.synchronised:
                await self._resync()
            transport = self._transport
            if transport is None:
                raise PortClosedError(f"{self.name}: port closed")
            loop = self._loop
            response = Response(command, sync.epoch)
            self._current = response
            self._waiter = loop.create_future()
            self._parser.command_sent(command)
            self.trace.append(f"> {command}")
            waiter = self._waiter
            # An absolute deadline (a timer, cheaper per command than asyncio.timeout): what
            # the modem sends meanwhile, URCs included, cannot extend it.
            expiry = loop.call_later(timeout, _expire, waiter)
            try:
                transport.write(command.encode("ascii") + b"\r")
                await waiter
            except _Expired:
                self.timeouts += 1
                self._lose(command)
                raise AtTimeoutError(f"{self.name}: {command}: no answer in {timeout} s") from None
            except asyncio.CancelledError:
                # Cancelled from outside before the answer was complete: it will still come.
                if waiter.cancelled() or not waiter.done():
                    self._lose(command)
                raise
            finally:
                expiry.cancel()
                self._current = None
                self._waiter = None
                self._parser.command_done()
        final = response.final
        assert final is not None
        if not final.ok:
            raise AtCommandError(command, final.kind, final.code, final.line)
        return response
