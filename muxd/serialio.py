"""The only module that opens serial ports.

Uses pyserial-asyncio-fast, the maintained drop-in fork of pyserial-asyncio (writes are not
buffered needlessly). Accepts device paths and pyserial URLs such as ``socket://host:port`` for
network serial servers. Ports are opened exclusively so two muxd processes can't share a modem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import serial
import serial_asyncio_fast


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
        transport, protocol = await serial_asyncio_fast.create_serial_connection(
            loop, protocol_factory, url, **kwargs
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        # pyserial wraps OSError in SerialException; unwrap the errno text for the log.
        raise SerialOpenError(f"{url}: cannot open: {exc}") from exc
    return transport, protocol
