"""A port and its sink, the store's Intake, over a fake modem and a real SQLite journal.

The port builds the record of each PDU it read (its SIM, its number, where it read it, when)
and counts its own SMS from the sink's answer: a completed message counts once on the port,
a part read again counts nothing, a part that does not decode is read a second time before
it is deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.modem.port import ModemPort
from muxd.modem.session import ModemSession
from muxd.pdu import encode_deliver
from muxd.ports import PartRead, PartSink, PartStored, PortInfo
from muxd.store import Journal
from muxd.store.sink import Intake

from .fakes import FakeModem, ModemModel

STAMP = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WALL = STAMP.timestamp() + 7.5  # the port's wall clock: when it read each part
UNDECODABLE = "07919761989901F0040B9197011199"  # cut short inside the originator's address


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "state")
    try:
        yield journal
    finally:
        await journal.close()


async def _identified_port(model: ModemModel, sink: PartSink) -> tuple[ModemPort, FakeModem]:
    info = PortInfo(name="ttyFAKE", path="/dev/ttyFAKE")
    ports: list[ModemPort] = []
    session = ModemSession("ttyFAKE", on_urc=lambda urc: ports[0].on_urc(urc))
    modem = FakeModem(session, model)
    port = ModemPort(
        info,
        session,
        sink,
        numbers={},
        sweep_interval=60.0,
        on_change=lambda _info: None,
        wall=lambda: WALL,
    )
    ports.append(port)
    port.memories = ["SM"]
    await port.identify()  # a sweep reads only for a SIM identified in this window
    return port, modem


class Spy:
    """A PartSink in front of another: keeps each record and each answer."""

    def __init__(self, sink: PartSink) -> None:
        self.sink = sink
        self.calls: list[tuple[PartRead, PartStored]] = []

    async def __call__(self, part: PartRead, /) -> PartStored:
        stored = await self.sink(part)
        self.calls.append((part, stored))
        return stored


async def test_the_port_reads_in_its_sims_name_and_counts_a_completed_sms(
    journal: Journal,
) -> None:
    (enc,) = encode_deliver("Bank", "code 1234", scts=STAMP)
    model = ModemModel(storage={"SM": {4: enc.hex}})
    messages: list[None] = []
    spy = Spy(Intake(journal, on_message=lambda: messages.append(None)))
    port, _modem = await _identified_port(model, spy)
    await port.sweep()
    ((part, stored),) = spy.calls
    assert part == PartRead(
        sim=model.iccid,
        port="ttyFAKE",
        number=model.number,
        storage="SM",
        index=4,
        pdu=enc.hex,
        tpdu_length=len(enc.hex) // 2 - 1,  # the listing's <length>, as the fake modem says it
        received_at=WALL,
    )
    assert stored.completed
    assert (port.info.sms_received, port.info.last_sms_at) == (1, WALL)
    assert len(messages) == 1
    assert model.deleted == [("SM", 4, enc.hex)]
    (msg,) = await journal.pending(10)
    assert (msg.number, msg.text, msg.received_at) == (model.number, "code 1234", WALL)


async def test_a_part_read_again_does_not_count_on_the_port(journal: Journal) -> None:
    """The same PDU at two indexes (a copy the modem kept, a delete that was lost): stored
    once, counted once, both deleted."""
    (enc,) = encode_deliver("Bank", "code 1234", scts=STAMP)
    model = ModemModel(storage={"SM": {1: enc.hex, 2: enc.hex}})
    port, _modem = await _identified_port(model, Intake(journal))
    await port.sweep()
    assert port.info.sms_received == 1
    assert model.deleted == [("SM", 1, enc.hex), ("SM", 2, enc.hex)]
    assert len(await journal.pending(10)) == 1
    model.storage["SM"][3] = enc.hex
    await port.sweep()
    assert port.info.sms_received == 1


async def test_a_waiting_part_does_not_count_until_its_message_completes(
    journal: Journal,
) -> None:
    first, second = encode_deliver("Bank", "y" * 200, scts=STAMP, ref=3)
    model = ModemModel(storage={"SM": {1: second.hex}})
    port, _modem = await _identified_port(model, Intake(journal))
    await port.sweep()
    assert (port.info.sms_received, port.info.last_sms_at) == (0, None)
    model.storage["SM"][2] = first.hex
    await port.sweep()
    assert (port.info.sms_received, port.info.last_sms_at) == (1, WALL)


async def test_a_part_that_does_not_decode_is_read_again_then_deleted(journal: Journal) -> None:
    model = ModemModel(storage={"SM": {6: UNDECODABLE}})
    spy = Spy(Intake(journal))
    port, modem = await _identified_port(model, spy)
    await port.read_index("SM", 6)
    assert [stored for _, stored in spy.calls] == [
        PartStored(new=True, decodable=False, completed=False)
    ]
    assert modem.written[-3:] == ["AT+CMGR=6", "AT+CMGR=6", "AT+CMGD=6"]
    assert model.deleted == [("SM", 6, UNDECODABLE)]
    assert port.info.sms_received == 0
