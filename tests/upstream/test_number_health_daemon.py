"""upstream.check_numbers wired into the daemon: real ptys, the v2 stand-in, real HTTP. A number
the stand-in bans shows as banned on its port in /api/ports and in /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve
from muxd_sim.onlinesim_state import BAN_AFTER_FAILURES

PORTS = 2
KEY = "health-key"
# Bounds of event-driven waits on a loaded machine; the checks run one a second.
WAIT = 30.0


async def test_a_banned_number_shows_on_its_port(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    task: asyncio.Task[None] | None = None
    try:
        async with ModemSimulator(PORTS, tmp_path / "dev") as sim:
            write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
            banned = sim.ports[0].number
            stub.failed_operations[banned] = BAN_AFTER_FAILURES
            cfg = Config(
                state_dir=str(tmp_path / "state"),
                modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")]),
                numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
                upstream=UpstreamConfig(
                    url=f"http://127.0.0.1:{served.port}",
                    api_key=KEY,
                    check_numbers=True,
                    check_interval=1.0,
                ),
                http=HttpConfig(listen="127.0.0.1:0"),
            )
            daemon = Daemon(cfg)
            task = asyncio.create_task(daemon.run())
            await stub.wait_until(lambda: len(stub.numbers) == PORTS, timeout=WAIT)
            async with asyncio.timeout(WAIT):
                await daemon.started.wait()
                health = daemon.health
                assert health is not None
                while True:
                    health.progress.clear()
                    if {banned, sim.ports[1].number} <= set(health.health):
                        break
                    await health.progress.wait()
            base = f"http://127.0.0.1:{daemon.http_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/api/ports") as resp:
                    ports = {p["number"]: p for p in (await resp.json())["ports"]}
                async with http.get(f"{base}/metrics") as resp:
                    metrics = await resp.text()
            assert ports[banned]["health"]["banned"] is True
            assert ports[banned]["health"]["errors"] == BAN_AFTER_FAILURES
            other = sim.ports[1].number
            assert ports[other]["health"]["banned"] is False
            name = ports[banned]["port"]
            assert f'muxd_port_number_banned{{port="{name}"}} 1.0' in metrics
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await served.runner.cleanup()
