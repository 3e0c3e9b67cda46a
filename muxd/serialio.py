"""The only module that opens serial ports.

pyserial opens and configures the port (termios, exclusive lock); pyserial-asyncio-fast, the
maintained drop-in fork of pyserial-asyncio, drives it from the event loop. Reads and writes go
straight to the non-blocking descriptor: pyserial's own ``read()``/``write()`` call
``select()``, which fails for descriptors above 1023 — and a 512-port box has more than that.
Device paths and pyserial URLs such as ``socket://host:port`` are accepted.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import Any

import serial
import serial_asyncio_fast
from serial.serialposix import Serial as PosixSerial


class SerialOpenError(OSError):
    """The port could not be opened (missing, busy, permission)."""


class _DirectSerial(PosixSerial):  # type: ignore[misc]
    """A POSIX serial port whose I/O is one system call, without select()."""

    def read(self, size: int = 1) -> bytes:
        try:
            data = os.read(self.fd, size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise serial.SerialException(f"read failed: {exc}") from exc
        if not data:
            # Readable but nothing to read: the device went away (tty hang-up).
            raise serial.SerialException("device disconnected")
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            raise
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                raise BlockingIOError(exc.errno, exc.strerror) from exc
            raise serial.SerialException(f"write failed: {exc}") from exc


def _open(url: str, baudrate: int) -> serial.Serial:
    if url.startswith("socket://") or "://" in url:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0, do_not_open=False)
    port = _DirectSerial(url, baudrate=baudrate, timeout=0, exclusive=True)
    return port


async def open_port(
    url: str,
    protocol_factory: Callable[[], asyncio.Protocol],
    *,
    baudrate: int,
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Open ``url`` and connect it to a protocol made by ``protocol_factory``."""
    loop = asyncio.get_running_loop()
    try:
        instance = await loop.run_in_executor(None, _open, url, baudrate)
    except (serial.SerialException, OSError, ValueError) as exc:
        # pyserial wraps OSError in SerialException; keep its errno text for the log.
        raise SerialOpenError(f"{url}: cannot open: {exc}") from exc
    pair: tuple[Any, Any] = await serial_asyncio_fast.connection_for_serial(
        loop, protocol_factory, instance
    )
    transport, protocol = pair
    return transport, protocol
