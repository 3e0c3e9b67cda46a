"""The only module that opens serial ports.

Prefers pyserial-asyncio-fast (writes are not buffered needlessly), falls back to
pyserial-asyncio. Accepts device paths and pyserial URLs such as ``socket://host:port`` for
network serial servers. Ports are opened exclusively so two muxd processes can't share a modem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

try:
    import serial_asyncio_fast as _serial_asyncio
except ImportError:  # pragma: no cover - the fork is a declared dependency
    import serial_asyncio as _serial_asyncio

import serial


class SerialOpenError(OSError):
    """The port could not be opened (missing, busy, permission)."""


async def open_port(
    url: str,
    protocol_factory: Callable[[], asyncio.Protocol],
    *,
    baudrate: int,
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Open ``url`` and connect it to a protocol made by ``protocol_factory``."""
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {"baudrate": baudrate}
    if not url.startswith("socket://"):
        kwargs["exclusive"] = True
    try:
        transport, protocol = await _serial_asyncio.create_serial_connection(
            loop, protocol_factory, url, **kwargs
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        # pyserial wraps OSError in SerialException; unwrap the errno text for the log.
        raise SerialOpenError(f"{url}: cannot open: {exc}") from exc
    return transport, protocol
