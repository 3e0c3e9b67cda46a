"""Helpers shared by the flavour and fault tests of the modem simulator (no tests here).

The host side of a simulated port is a plain ``os.open`` of the symlink plus a loop
reader, as in ``test_sim_modem.py``, made robust for ports that hang up (``vanish``).
Everything waits on data, futures or events with a bounded timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from muxd_sim.modem import SimPort

IO_TIMEOUT = 5.0  # seconds to wait for bytes or events from the simulator
FINAL_RE = re.compile(rb"\r\n(OK|ERROR|COMMAND NOT SUPPORT|\+CM[ES] ERROR: [^\r]*)\r\n")
RESPONSE_RE = re.compile(rb"^.*?" + FINAL_RE.pattern, re.DOTALL)
OK = b"\r\nOK\r\n"


def answer(*lines: str) -> bytes:
    """A single command's response: its information lines (CRLF-separated), then OK."""
    body = ("\r\n" + "\r\n".join(lines) + "\r\n").encode() if lines else b""
    return body + OK


def lines_of(data: bytes) -> list[bytes]:
    """The non-empty lines of ``data`` (CR and LF both end a line)."""
    return [line for line in re.split(rb"[\r\n]+", data) if line]


class PtyClient:
    """The host side of one simulated port: os.open + a loop reader; notices hang-ups."""

    def __init__(self, path: Path | str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buffer = bytearray()
        self.reads: list[int] = []  # size of every os.read that returned data
        self.hung_up = False
        self.arrived = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fd, self._readable)
        self._reading = True

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: the master end is gone
            data = b""
        if not data:
            self.hung_up = True
            self._stop_reading()
        else:
            self.reads.append(len(data))
            self.buffer += data
        self.arrived.set()

    def _stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False

    async def _wait(self) -> None:
        self.arrived.clear()
        await self.arrived.wait()

    async def read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        """Wait for ``pattern`` in the received bytes; consume everything up to its end."""
        async with asyncio.timeout(IO_TIMEOUT):
            while (match := pattern.search(self.buffer)) is None:
                assert not self.hung_up, f"hung up while waiting for {pattern.pattern!r}"
                await self._wait()
        matched = pattern.search(bytes(self.buffer[: match.end()]))
        del self.buffer[: match.end()]
        assert matched is not None
        return matched

    async def read_line(self, text: str) -> bytes:
        """Wait for the line ``text``; return everything received before it (consumed)."""
        match = await self.read_until(
            re.compile(rb"^(.*?)(?<![^\r\n])" + re.escape(text.encode()) + rb"\r\n", re.DOTALL)
        )
        return match.group(1)

    async def wait_hangup(self) -> None:
        async with asyncio.timeout(IO_TIMEOUT):
            while not self.hung_up:
                await self._wait()

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    async def command(self, line: str) -> bytes:
        """Send one command line; return everything received up to its final result code."""
        self.send(line)
        return (await self.read_until(RESPONSE_RE)).group(0)

    def take(self) -> bytes:
        """Everything received and not yet consumed."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def close(self) -> None:
        self._stop_reading()
        os.close(self.fd)


class Events:
    """``on_event`` hook that records ``(port index, event)`` and lets tests wait for them."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, port: SimPort, event: str) -> None:
        self.seen.append((port.index, event))
        self._changed.set()

    def count(self, index: int, event: str) -> int:
        return self.seen.count((index, event))

    async def wait(self, index: int, event: str, count: int = 1) -> None:
        """Wait until port ``index`` has had ``event`` at least ``count`` times."""
        async with asyncio.timeout(IO_TIMEOUT):
            while self.count(index, event) < count:
                self._changed.clear()
                await self._changed.wait()
