"""End to end over real pseudo-terminals: simulator + Onlinesim stand-in + daemon + SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from pathlib import Path

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd.store.journal import JOURNAL_FILE
from muxd_sim.modem import ModemSimulator, SimPort, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve

PORTS = 8
SMS = 50
KEY = "e2e-key"
# Generous bounds for a loaded CI machine; the test waits on events, these only stop a hang.
READY_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 40.0

TEXTS = (
    "Your code is 123456",  # GSM 7-bit
    "Ваш код подтверждения: 654321",  # UCS-2
    "Use {code} [ok] ~ €5",  # GSM 7-bit with extension characters
    "验证码 778899 😀",  # UCS-2 with a surrogate pair
)
SENDERS = ("Telegram", "+79161234567", "WhatsApp", "+447700900123")


def make_config(tmp_path: Path, stand_in_port: int) -> Config:
    return Config(
        state_dir=str(tmp_path / "state"),
        modems=ModemsConfig(ports=[str(tmp_path / "dev" / "port*")]),
        numbers=NumbersConfig(file=str(tmp_path / "numbers.csv")),
        upstream=UpstreamConfig(
            url=f"http://127.0.0.1:{stand_in_port}", api_key=KEY, batch_delay=0.05
        ),
        http=HttpConfig(listen="127.0.0.1:0"),
    )


async def test_fifty_sms_arrive_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    journal_path = tmp_path / "state" / JOURNAL_FILE
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    deletes: list[tuple[str, int, bool]] = []

    def committed(pdu_hex: str) -> bool:
        # A second connection sees only committed rows: this is the ordering check.
        conn = sqlite3.connect(journal_path)
        try:
            row = conn.execute("SELECT 1 FROM parts WHERE pdu = ?", (pdu_hex.upper(),)).fetchone()
        finally:
            conn.close()
        return row is not None

    all_deleted = asyncio.Event()

    def on_delete(port: SimPort, index: int, pdu_hex: str) -> None:
        deletes.append((port.name, index, committed(pdu_hex)))
        if len(deletes) >= SMS:
            all_deleted.set()

    task: asyncio.Task[None] | None = None
    try:
        async with ModemSimulator(PORTS, tmp_path / "dev", on_delete=on_delete) as sim:
            write_numbers_csv(sim, tmp_path / "numbers.csv", share=1.0)
            daemon = Daemon(make_config(tmp_path, served.port))
            task = asyncio.create_task(daemon.run())
            # Every port's number is published once the fleet is up.
            await stub.wait_until(lambda: len(stub.numbers) == PORTS, timeout=READY_TIMEOUT)
            assert set(stub.numbers) == {p.number for p in sim.ports}
            for entry in stub.numbers.values():
                assert entry.country_id == 7
                assert entry.operator == 25001

            expected: Counter[tuple[str, str, str]] = Counter()
            for k in range(SMS):
                port = sim.ports[k % PORTS]
                sender, text = SENDERS[k % len(SENDERS)], TEXTS[k % len(TEXTS)]
                text = f"{text} #{k}"
                sim.inject(port.index, sender, text)
                expected[(port.number, sender, text)] += 1

            await stub.wait_for_messages(SMS, timeout=DELIVERY_TIMEOUT)
            got = Counter((m.number, m.from_, m.message) for m in stub.messages)
            assert got == expected
            assert stub.duplicates == 0
            # AT+CMGD follows the commit, so it may still be on its way when the SMS arrives.
            await asyncio.wait_for(all_deleted.wait(), DELIVERY_TIMEOUT)
            assert len(deletes) == SMS
            assert all(ok for _, _, ok in deletes), [d for d in deletes if not d[2]]
            assert all(port.state.used == 0 for port in sim.ports)
            # Acknowledged means marked delivered in the journal too.
            await asyncio.wait_for(daemon.status.wait_forwarded(SMS), DELIVERY_TIMEOUT)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await served.runner.cleanup()

    conn = sqlite3.connect(journal_path)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
    finally:
        conn.close()
    assert states == {"delivered": SMS}
