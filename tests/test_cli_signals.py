"""Long-running commands stop at once on SIGINT or SIGTERM, even when idle.

A handler installed with ``signal.signal`` runs only when the event loop wakes up; an idle
stand-in (its recorder waits up to an hour) once ignored a Ctrl-C for that hour. The loop's own
signal handling (``loop.add_signal_handler``) wakes it at once.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import pytest

# A bound only: the process answers a signal within milliseconds.
STOP_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_an_idle_stand_in_stops_at_once(sig: signal.Signals, tmp_path: object) -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muxd", "stand-in", "--listen", f"127.0.0.1:{port}",
        "--record", f"{tmp_path}/record.jsonl", "--log-level", "warning",
    )  # fmt: skip
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)  # not listening yet: poll the port
                    continue
                writer.close()
                await writer.wait_closed()
                break
    finally:
        proc.send_signal(sig)
    async with asyncio.timeout(STOP_TIMEOUT):
        assert await proc.wait() == 0
