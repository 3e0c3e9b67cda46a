"""The whole daemon against a stand-in speaking the other readings at once (string ``response``
and ids, POST-only checkWork, JSON errors): modems over real pseudo-terminals, SQLite, and the
reading metrics wired through."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve

PORTS = 3
SMS = 9
KEY = "dialect-daemon-key"
# Bounds for a loaded machine; the test waits on events, these only stop a hang.
READY_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 40.0


async def test_daemon_delivers_against_the_other_readings(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    stub = Onlinesim(api_key=KEY)
    stub.set_dialects("string-response,string-ids,post-checkwork,json-errors")
    served = await serve(stub, "127.0.0.1", 0)
    task: asyncio.Task[None] | None = None
    try:
        async with ModemSimulator(PORTS, tmp_path / "dev") as sim:
            write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
            cfg = Config(
                state_dir=str(tmp_path / "state"),
                modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")]),
                numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
                upstream=UpstreamConfig(
                    url=f"http://127.0.0.1:{served.port}",
                    api_key=KEY,
                    batch_delay=0.05,
                    numbers_mode="incremental",
                ),
                http=HttpConfig(listen="127.0.0.1:0"),
            )
            daemon = Daemon(cfg)
            task = asyncio.create_task(daemon.run())
            await stub.wait_until(lambda: len(stub.numbers) == PORTS, timeout=READY_TIMEOUT)
            expected: Counter[tuple[str, str]] = Counter()
            for k in range(SMS):
                port = sim.ports[k % PORTS]
                sim.inject(port.index, "VK", f"code {k}")
                expected[(port.number, f"code {k}")] += 1
            await stub.wait_for_messages(SMS, timeout=DELIVERY_TIMEOUT)
            await asyncio.wait_for(daemon.status.wait_forwarded(SMS), DELIVERY_TIMEOUT)
            assert Counter((m.number, m.message) for m in stub.messages) == expected
            assert stub.duplicates == 0
            assert daemon.publisher is not None
            assert daemon.publisher.ids == {n: e.id for n, e in stub.numbers.items()}
            registry = daemon.metrics.registry
            strings = registry.get_sample_value(
                "muxd_upstream_reading_total", {"field": "response", "reading": "string"}
            )
            assert strings is not None
            assert strings >= 2  # at least the heartbeat and one delivery
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await served.runner.cleanup()
