"""A full disk under the daemon: intake stops, nothing is deleted, the alarm is loud, and every
SMS is delivered once space returns. Real parts: a small tmpfs, pty modems, the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve
from tests.reliability.tmpfs import mounted_tmpfs

KEY = "disk-key"
PORTS = 2
# Bounds of event-driven waits (a loaded CI machine); recovery includes one 5 s journal probe.
WAIT = 30.0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "state", "size=4m") as mnt:
        yield mnt


def fill(path: Path) -> None:
    # The suppress is outermost: closing the file flushes what the last write left buffered,
    # which fails with ENOSPC too on a full disk.
    with contextlib.suppress(OSError), path.open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


async def test_full_disk_stops_intake_and_recovers(tmp_path: Path, small_fs: Path) -> None:
    (tmp_path / "dev").mkdir()
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    task: asyncio.Task[None] | None = None
    try:
        async with ModemSimulator(PORTS, tmp_path / "dev", capacity=50) as sim:
            write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
            cfg = Config(
                state_dir=str(small_fs),
                modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")], sweep_interval=1.0),
                numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
                upstream=UpstreamConfig(
                    url=f"http://127.0.0.1:{served.port}", api_key=KEY, batch_delay=0.0
                ),
                http=HttpConfig(listen="127.0.0.1:0"),
            )
            daemon = Daemon(cfg)
            task = asyncio.create_task(daemon.run())
            await stub.wait_until(lambda: len(stub.numbers) == PORTS, timeout=WAIT)
            sent = 0
            for k in range(3):
                sim.inject(k % PORTS, "Bank", f"before {k}")
                sent += 1
            await stub.wait_until(lambda: len(stub.messages) == sent, timeout=WAIT)
            assert daemon.journal is not None

            fill(small_fs / "filler")
            for k in range(6):
                sim.inject(k % PORTS, "Bank", f"while full {k} " + "x" * 100)
                sent += 1
            await asyncio.wait_for(daemon.journal.broken.wait(), WAIT)
            # Loud: health says why; nothing was deleted, the SMS wait on the SIMs.
            assert daemon.status.problem() is not None
            url = f"http://127.0.0.1:{daemon.http_port}/healthz"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                assert resp.status == 503
                assert "commit failed" in await resp.text()
            on_sims = sum(p.state.used for p in sim.ports)
            assert on_sims >= 1

            (small_fs / "filler").unlink()
            await stub.wait_until(lambda: len(stub.messages) == sent, timeout=WAIT)
            assert daemon.status.problem() is None
            assert stub.duplicates == 0
            texts = sorted(m.message for m in stub.messages)
            assert len(set(texts)) == sent
            await asyncio.wait_for(daemon.status.wait_forwarded(sent), WAIT)
            assert all(p.state.used == 0 for p in sim.ports)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await served.runner.cleanup()
