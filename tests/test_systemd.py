"""systemd integration in real processes: READY=1, watchdog kicks from the loop, STOPPING=1.

A datagram socket plays systemd's notification socket (NOTIFY_SOCKET), as systemd does.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

# Bounds only (the daemon is up within a second or two here).
START_TIMEOUT = 60.0
# A short watchdog so kicks are many within the test: WatchdogSec=0.4 s -> a kick every 0.2 s.
WATCHDOG_USEC = 400_000
# The blocked-loop process blocks its loop this long; kicks are 0.1 s apart otherwise.
BLOCK_S = 1.5


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock, path


async def _next(sock: socket.socket) -> tuple[float, str]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(START_TIMEOUT):
        data = await loop.sock_recv(sock, 4096)
    return time.monotonic(), data.decode()


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "muxd.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[modems]\nports = ["{tmp_path}/none*"]\n'
        '[upstream]\nurl = "http://127.0.0.1:9"\napi_key = "k"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
    )
    return config


async def test_daemon_reports_ready_kicks_the_watchdog_and_reports_stopping(
    tmp_path: Path,
) -> None:
    sock, path = _notify_socket(tmp_path)
    with sock:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "muxd",
            "run",
            "-c",
            str(_config(tmp_path)),
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC), "PATH": ""},
        )
        try:
            states = [(await _next(sock))[1] for _ in range(4)]
        finally:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(START_TIMEOUT):
            assert await proc.wait() == 0
        rest = []
        while True:
            try:
                rest.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    assert "READY=1" in states
    assert states.count("WATCHDOG=1") >= 2
    assert rest[-1] == "STOPPING=1"


async def test_a_blocked_loop_stops_kicking_the_watchdog(tmp_path: Path) -> None:
    """A wedged loop is what the watchdog is for: no kick while the loop is blocked."""
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from muxd import systemd

        async def main():
            task = asyncio.create_task(systemd.kick_watchdog(0.1))
            await asyncio.sleep(0.5)
            time.sleep({BLOCK_S})  # a blocking call wedges the loop
            await asyncio.sleep(0.5)
            task.cancel()

        asyncio.run(main())
        """
    )
    sock, path = _notify_socket(tmp_path)
    with sock:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, env={"NOTIFY_SOCKET": path, "PATH": ""}
        )
        kicks: list[tuple[float, str]] = []

        async def collect() -> None:
            while True:
                kicks.append(await _next(sock))

        reader = asyncio.create_task(collect())
        async with asyncio.timeout(START_TIMEOUT):
            assert await proc.wait() == 0
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(kicks)]
    assert all(state == "WATCHDOG=1" for _, state in kicks)
    assert max(gaps) >= BLOCK_S * 0.9  # the kicks stopped while the loop was blocked
    assert sorted(gaps)[len(gaps) // 2] < 0.5  # and came every 0.1 s otherwise
