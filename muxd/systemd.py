"""systemd integration: readiness (``Type=notify``) and a watchdog fed from the event loop.

Without ``NOTIFY_SOCKET`` in the environment (not started by systemd) everything here is a no-op.
The watchdog is kicked by a task of the event loop itself: a loop wedged by a blocking call or a
CPU-bound bug stops kicking, and systemd (``WatchdogSec=``) kills and restarts the daemon. Every
SMS is durable before it is deleted from a SIM, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

LOGGER = logging.getLogger(__name__)

# Kick the watchdog this often relative to systemd's WatchdogSec (the usual "half the period").
WATCHDOG_FRACTION = 0.5


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    # An abstract socket is given with a leading "@".
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(state: str) -> bool:
    """Send one notification (``READY=1``, ``WATCHDOG=1``…); False when not under systemd."""
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        LOGGER.warning("systemd notification %r failed: %s", state, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between kicks, or None when systemd set no watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or _address() is None:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        period = int(usec) / 1e6
    except ValueError:
        LOGGER.warning("WATCHDOG_USEC=%r is not a number: watchdog off", usec)
        return None
    return period * WATCHDOG_FRACTION if period > 0 else None


async def kick_watchdog(interval: float) -> None:
    """Kick the watchdog every ``interval`` seconds from this event loop, until cancelled."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
