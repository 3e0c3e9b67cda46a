"""The daemon with ``upstream.api = "v1"``: Onlinesim (the v1 driver) takes a number, an SMS on
that port is pushed once, FINISH 3 sells it. Real ptys, real HTTP both ways, real journal."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim_v1 import V1Driver

from .conftest import KEY, make_config, v1_ready

PORTS = 3
# Bounds of event-driven waits on a loaded CI machine.
WAIT = 30.0


async def test_daemon_serves_v1_and_pushes_sms(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    task: asyncio.Task[None] | None = None
    async with V1Driver(api_key=KEY) as driver, ModemSimulator(PORTS, tmp_path / "dev") as sim:
        write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
        cfg = Config(
            state_dir=str(tmp_path / "state"),
            modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")]),
            numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
            upstream=UpstreamConfig(api="v1", api_key=KEY),
            http=HttpConfig(listen="127.0.0.1:0"),
            v1=make_config(driver),
        )
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(WAIT):
                await v1_ready(daemon, PORTS)
            assert daemon.v1 is not None
            driver.base_url = f"http://127.0.0.1:{daemon.v1.port}"
            services = await driver.get_services()
            (russia,) = services["countryList"]
            before = russia["operatorMap"]["any"]["vk"]
            assert before == PORTS

            answer = await driver.get_number("russia", "any", "vk", 12)
            assert answer["status"] == "SUCCESS"
            number = "+" + str(answer["number"])
            port = next(p for p in sim.ports if p.number == number)
            sim.inject(port.index, "VK", "VK: 482913 is your code")
            (push,) = await driver.wait_pushes(1, timeout=WAIT)
            assert push.text == "VK: 482913 is your code"
            assert push.phone == number.lstrip("+")

            await driver.finish(answer["activationId"], 3)
            services = await driver.get_services()
            (russia,) = services["countryList"]
            assert russia["operatorMap"]["any"]["vk"] == before - 1
            assert driver.failed() == [], driver.report()
            assert daemon.status.ready() is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
