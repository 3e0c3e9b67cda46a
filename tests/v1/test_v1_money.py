"""API v1 money and operations over the whole daemon: real ptys, the v1 driver calling muxd,
a real journal, the operator HTTP API and the CLI on the same journal file.

Earnings metrics count FINISH status 3 (with the FINISH sum, else GET_NUMBER's); ``muxd v1
sales`` reads the journal; ``/api/numbers`` shows numbers in an operation; ``muxd v1
operations close`` frees a rent whose FINISH was lost, and the running daemon notices."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from muxd.app import Daemon
from muxd.cli import main
from muxd.config import load
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim_v1 import V1Driver

from .conftest import KEY, v1_ready

PORTS = 3
SERVICES = ["vk", "wa"]
# Bounds of event-driven waits on a loaded machine.
WAIT = 30.0


def write_config(tmp: Path, driver: V1Driver) -> Path:
    path = tmp / "muxd.toml"
    path.write_text(
        f"""
state_dir = "{tmp / "state"}"
[modems]
ports = ["{tmp / "dev" / "port*"}"]
[numbers]
file = "{tmp / "numbers.csv"}"
[upstream]
api = "v1"
api_key = "{KEY}"
[http]
listen = "127.0.0.1:0"
[v1]
listen = "127.0.0.1:0"
push_sms_url = "{driver.push_url}"
push_sms_rent_url = "{driver.rent_url}"
services = {SERVICES!r}
rent = true
""".replace("'", '"')
    )
    return path


@contextlib.asynccontextmanager
async def daemon_up(tmp: Path) -> AsyncIterator[tuple[Daemon, V1Driver, ModemSimulator, Path]]:
    (tmp / "dev").mkdir()
    async with V1Driver(api_key=KEY) as driver, ModemSimulator(PORTS, tmp / "dev") as sim:
        write_numbers_csv(sim, tmp / "numbers.csv", share=1.0)
        config = write_config(tmp, driver)
        daemon = Daemon(load(config))
        task = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(WAIT):
                await v1_ready(daemon, PORTS)
            assert daemon.v1 is not None
            driver.base_url = f"http://127.0.0.1:{daemon.v1.port}"
            yield daemon, driver, sim, config
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def get_json(daemon: Daemon, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{daemon.http_port}{path}") as resp,
    ):
        assert resp.status == 200
        return await resp.json()


async def scrape(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{daemon.http_port}/metrics") as resp,
    ):
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def test_earnings_sales_numbers_and_a_local_close(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with daemon_up(tmp_path) as (daemon, driver, sim, config):
        before = await scrape(daemon)
        # Every configured service has its series at 0 from the start, per port.
        assert before[("muxd_v1_sales_total", (("service", "vk"),))] == 0
        first_port = sorted(p.name for p in daemon.status.ports())[0]
        assert before[("muxd_v1_earned_total", (("port", first_port), ("service", "wa")))] == 0

        sold = await driver.get_number("russia", "any", "vk", 12)
        number = "+" + str(sold["number"])
        sim_port = next(p for p in sim.ports if p.number == number)
        sim.inject(sim_port.index, "VK", "VK: 482913 is your code")
        await driver.wait_pushes(1, timeout=WAIT)
        await driver.finish(sold["activationId"], 3, 10.5)  # FINISH's sum wins
        cancelled = await driver.get_number("russia", "any", "wa", 7)
        await driver.finish(cancelled["activationId"], 1)  # not a success: earns nothing
        rent = await driver.get_number("russia", "any", "rent", 400, rent=True)
        rented = "+" + str(rent["number"])

        port_name = daemon.status.port_of(number)
        assert port_name is not None
        after = await scrape(daemon)
        assert after[("muxd_v1_earned_total", (("port", port_name), ("service", "vk")))] == 10.5
        assert after[("muxd_v1_sales_total", (("service", "vk"),))] == 1
        assert after[("muxd_v1_sales_total", (("service", "wa"),))] == 0

        # /api/numbers names the numbers in an operation (empty in v1 mode before).
        rows = {r["number"]: r for r in (await get_json(daemon, "/api/numbers"))["numbers"]}
        assert len(rows) == PORTS
        assert rows[rented]["in_operation"]
        assert rows[rented]["rent"]
        assert rows[rented]["activation_id"] == rent["activationId"]
        assert not rows[number]["in_operation"]

        code, out = await cli(capsys, "v1", "sales", "-c", str(config), "--since", "1h")
        assert code == 0
        assert out.split("\n")[1].split() == ["vk", "1", "10.50"]
        code, out = await cli(capsys, "v1", "sales", "-c", str(config), "--by", "port")
        assert code == 0
        assert port_name in out

        code, out = await cli(capsys, "v1", "operations", "-c", str(config), "list", "--open")
        assert code == 0
        lines = out.strip().split("\n")
        assert len(lines) == 2
        assert lines[1].split()[:4] == [
            str(rent["activationId"]),
            rented,
            "rent",
            "open",
        ]

        # The rent's FINISH is lost: close it locally; the running daemon frees the number.
        rent_count = (await driver.get_services(rent=True))["countryList"][0]["operatorMap"]
        args = ("v1", "operations", "-c", str(config), "close", str(rent["activationId"]))
        code, out = await cli(capsys, *args)
        assert code == 0
        # The service's reload loop looks every few seconds (tested on an injected clock
        # with the service alone); here one look is made at once.
        assert daemon.v1 is not None
        await daemon.v1.reload_closed()
        assert not rows_busy((await get_json(daemon, "/api/numbers"))["numbers"], rented)
        assert rent["activationId"] not in daemon.v1.book.open_by_id
        now = (await driver.get_services(rent=True))["countryList"][0]["operatorMap"]
        assert now["any"]["rent"] == rent_count["any"]["rent"] + 1
        # Closing again changes nothing and says so.
        code, _ = await cli(capsys, *args)
        assert code == 1
        # A local close is not an earning Onlinesim reported.
        final = await scrape(daemon)
        assert final[("muxd_v1_sales_total", (("service", "rent"),))] == 0


def rows_busy(rows: list[dict[str, Any]], number: str) -> bool:
    return any(r["number"] == number and r["in_operation"] for r in rows)
