"""One port's AT session: bytes from the transport -> parser events -> command results / URCs.

Discipline (DESIGN.md §3, style habit 3):
- one command in flight per port (a lock);
- the waiter is registered before the command is written;
- the deadline is absolute (``asyncio.timeout``), so a URC flood cannot extend it;
- a URC never completes a command: the parser routes it apart;
- nothing raises out of ``data_received``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from muxd.at import AtParser, Echo, Final, Garbage, Info, Prompt, Urc
from muxd.errors import AtCommandError, AtTimeoutError, PortClosedError

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


class _Expired(Exception):
    """A command's deadline passed (raised into its waiter by the deadline timer)."""


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class Response:
    """The information lines and final result of one command."""

    __slots__ = ("command", "final", "lines")

    def __init__(self, command: str) -> None:
        self.command = command
        self.lines: list[Info] = []
        self.final: Final | None = None

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
    ) -> None:
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

    async def command(self, command: str, *, timeout: float = AT_TIMEOUT) -> Response:
        """Send one command and wait for its final result.

        Raises AtCommandError on ERROR/+CME/+CMS, AtTimeoutError past the deadline,
        PortClosedError if the port goes away.
        """
        async with self._lock:
            transport = self._transport
            if transport is None:
                raise PortClosedError(f"{self.name}: port closed")
            loop = asyncio.get_running_loop()
            response = Response(command)
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
                raise AtTimeoutError(f"{self.name}: {command}: no answer in {timeout} s") from None
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
