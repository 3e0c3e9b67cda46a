"""The deny-list over the whole daemon, in both API versions: simulated modems on real
pseudo-terminals, the real journal file, the real stand-ins (v2: Onlinesim's API; v1: the
partner driver receiving PUSH_SMS). A denied SMS never reaches the upstream, is listed,
counted (metric, /api/outbox), and an operator's replay releases it; allowed SMS go through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from muxd.app import Daemon
from muxd.config import (
    Config,
    DenyConfig,
    DenyRule,
    HttpConfig,
    ModemsConfig,
    NumbersConfig,
    UpstreamConfig,
)
from muxd.store import admin
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve
from muxd_sim.onlinesim_v1 import V1Driver
from tests.v1.conftest import make_config, v1_ready

KEY = "deny-pipeline-key"
PORTS = 2
# Bounds of event-driven waits on a loaded machine; they only stop a hang.
WAIT = 40.0
DENY = DenyConfig(
    rules={
        "bank": DenyRule(senders=["900"], text=["никому не сообщайте.{0,40}перевод"]),
        "sim": DenyRule(text=[r"\bPUK\d?\b"]),
        "unused": DenyRule(senders=["Nobody"]),
    }
)
BANK = "Код 1111 для перевода 500 р"
BANK_TEXT = "Никому не сообщайте: перевод 2222"
PUK = "Ваш PUK1: 12345678"


def config(tmp_path: Path, upstream: UpstreamConfig, **kw: Any) -> Config:
    return Config(
        state_dir=str(tmp_path / "state"),
        modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")]),
        numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
        upstream=upstream,
        http=HttpConfig(listen="127.0.0.1:0"),
        deny=DENY,
        **kw,
    )


@contextlib.asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(cfg, status_cache_ttl=0.0)  # each check reads the journal afresh
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(WAIT):
            await daemon.started.wait()
        yield daemon
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Deleted:
    """The simulator's delete hook: muxd deletes an SMS off the modem only once it is
    journaled, and judged, in the same commit. ``wait(n)``: until n were deleted."""

    def __init__(self) -> None:
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self, _port: object, _index: int, _pdu: str) -> None:
        self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.count += 1
        self._changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


def denied_count(daemon: Daemon, rule: str) -> float | None:
    return daemon.metrics.registry.get_sample_value("muxd_sms_denied_total", {"rule": rule})


async def api_outbox(daemon: Daemon) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.http_port}/api/outbox"
        async with http.get(url) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result


def denied_rows(tmp_path: Path) -> dict[str, int]:
    """text -> message id of every denied message, with its rule checked against the text."""
    rows = admin.list_messages(tmp_path / "state", state="denied", limit=100)
    return {str(r["text"]): int(r["id"]) for r in rows}  # type: ignore[call-overload]


async def test_v2_shipper_never_ships_denied_sms(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    deleted = Deleted()
    try:
        async with ModemSimulator(PORTS, tmp_path / "dev", on_delete=deleted) as sim:
            write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
            upstream = UpstreamConfig(
                url=f"http://127.0.0.1:{served.port}", api_key=KEY, batch_delay=0.05
            )
            async with running(config(tmp_path, upstream)) as daemon:
                assert denied_count(daemon, "unused") == 0  # every rule's series from the start
                await stub.wait_until(lambda: len(stub.numbers) == PORTS, timeout=WAIT)
                first, second = sim.ports
                sim.inject(first.index, "900", BANK)
                sim.inject(first.index, "Shop", BANK_TEXT)
                sim.inject(second.index, "Operator", PUK)
                sim.inject(first.index, "VK", "VK: 333")
                sim.inject(second.index, "Telegram", "Telegram code 444")
                await deleted.wait(5)
                await stub.wait_for_messages(2, timeout=WAIT)
                assert sorted(m.message for m in stub.messages) == ["Telegram code 444", "VK: 333"]

                denied = denied_rows(tmp_path)
                assert set(denied) == {BANK, BANK_TEXT, PUK}
                rules = {
                    str(r["text"]): r["last_error"]
                    for r in admin.list_messages(tmp_path / "state", state="denied", limit=10)
                }
                assert rules == {BANK: "denied by bank", BANK_TEXT: "denied by bank",
                                 PUK: "denied by sim"}  # fmt: skip
                assert (denied_count(daemon, "bank"), denied_count(daemon, "sim")) == (2, 1)
                assert denied_count(daemon, "unused") == 0
                outbox = await api_outbox(daemon)
                assert (outbox["messages_denied"], outbox["backlog"]) == (3, 0)

                # An operator releases one on purpose; the next SMS wakes the shipper.
                assert admin.replay(tmp_path / "state", [denied[BANK]]) == [denied[BANK]]
                sim.inject(second.index, "WhatsApp", "WhatsApp code 555")
                await stub.wait_for_messages(4, timeout=WAIT)
                await asyncio.wait_for(daemon.status.wait_forwarded(4), WAIT)
                assert sorted(m.message for m in stub.messages) == sorted(
                    [BANK, "Telegram code 444", "VK: 333", "WhatsApp code 555"]
                )
                assert stub.duplicates == 0
                assert set(denied_rows(tmp_path)) == {BANK_TEXT, PUK}
                assert (await api_outbox(daemon))["messages_denied"] == 2
    finally:
        await served.runner.cleanup()


async def test_v1_activation_and_rent_pushes_skip_denied_sms(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    deleted = Deleted()
    async with (
        V1Driver(api_key=KEY) as driver,
        ModemSimulator(PORTS, tmp_path / "dev", on_delete=deleted) as sim,
    ):
        write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
        # The built-in vk patterns filter the activation: the VK code passes them.
        v1 = make_config(driver, filter_library=True)
        cfg = config(tmp_path, UpstreamConfig(api="v1", api_key=KEY), v1=v1)
        async with running(cfg) as daemon:
            assert daemon.v1 is not None
            assert daemon.fleet is not None
            async with asyncio.timeout(WAIT):
                await v1_ready(daemon, PORTS)
            driver.base_url = f"http://127.0.0.1:{daemon.v1.port}"
            activation = await driver.get_number("russia", "any", "vk", 12)
            rent = await driver.get_number("russia", "any", "rent", 12, rent=True)
            assert (activation["status"], rent["status"]) == ("SUCCESS", "SUCCESS"), rent

            def port_of(answer: dict[str, Any]) -> int:
                return next(p.index for p in sim.ports if p.number == f"+{answer['number']}")

            act_port, rent_port = port_of(activation), port_of(rent)
            # Rent takes every SMS (no service filter applies to it): the deny-list still does.
            sim.inject(act_port, "900", BANK)
            sim.inject(rent_port, "Operator", PUK)
            sim.inject(rent_port, "Shop", BANK_TEXT)
            sim.inject(act_port, "Telegram", "Telegram code 999")  # not vk: filtered
            sim.inject(act_port, "VK", "VK: 482913 is your code")
            sim.inject(rent_port, "Anyone", "rent text 1")
            await deleted.wait(6)
            pushes = await driver.wait_pushes(2, timeout=WAIT)
            assert {(p.text, p.rent_url) for p in pushes} == {
                ("VK: 482913 is your code", False),
                ("rent text 1", True),
            }
            denied = denied_rows(tmp_path)
            assert set(denied) == {BANK, PUK, BANK_TEXT}
            assert (denied_count(daemon, "bank"), denied_count(daemon, "sim")) == (2, 1)
            assert (await api_outbox(daemon))["messages_denied"] == 3

            # Released on purpose: the PUK notice goes to the renter with the next SMS.
            assert admin.replay(tmp_path / "state", [denied[PUK]]) == [denied[PUK]]
            sim.inject(rent_port, "Anyone", "rent text 2")
            pushes = await driver.wait_pushes(4, timeout=WAIT)
            rent_texts: Callable[[], list[str]] = lambda: sorted(  # noqa: E731
                str(p.text) for p in pushes if p.rent_url
            )
            assert rent_texts() == sorted([PUK, "rent text 1", "rent text 2"])
            assert {p.text for p in pushes} & {BANK, BANK_TEXT} == set()
            assert set(denied_rows(tmp_path)) == {BANK, BANK_TEXT}
            # Every pass since it was journaled looked at the Telegram SMS: the built-in vk
            # patterns filtered it.
            assert admin.stats(tmp_path / "state")["messages_filtered"] == 1
            assert driver.failed() == [], driver.report()
