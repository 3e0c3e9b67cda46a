"""Reused concatenation references and bad or absurd SMSC stamps, read back over real ptys."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_sim_modem_pty import PtyClient, lines_of

from muxd.pdu import EncodedPdu, SmsDeliver, decode_pdu, reassemble
from muxd.pdu.scts import encode_scts
from muxd_sim.modem import NETWORK_TZ, ModemSimulator
from muxd_sim.modem_smsfaults import (
    ABSURD_SCTS,
    BAD_SCTS,
    REUSED_MESSAGE_GAP_S,
    REUSED_PART_GAP_S,
    scts_offset,
)

CMTI_RE = re.compile(rb'\r\n\+CMTI: "SM",(\d+)\r\n')
SENT_AT = datetime.datetime(2026, 12, 4, 15, 30, 0, tzinfo=NETWORK_TZ)


async def read_stored(client: PtyClient, index: int) -> EncodedPdu:
    """``AT+CMGR=index`` as a host sends it; the stored PDU."""
    lines = lines_of(await client.command(f"AT+CMGR={index}"))
    header = next(k for k, line in enumerate(lines) if line.startswith(b"+CMGR:"))
    length = int(lines[header].rsplit(b",", 1)[1])
    return EncodedPdu(hex=lines[header + 1].decode(), tpdu_length=length)


def truth(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_reused_refs_store_two_messages_interleaved(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    async with ModemSimulator(1, tmp_path / "ports", log_path=log) as sim:
        port = sim.ports[0]
        port.faults.reused_refs = 1.0
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            sim.inject(0, "Bank", "Your code is 1111", scts=SENT_AT)
            announced = [int((await client.read_until(CMTI_RE)).group(1)) for _ in range(4)]
            assert announced == [1, 2, 3, 4]
            parts = []
            for index in announced:
                decoded = decode_pdu(
                    (pdu := await read_stored(client, index)).hex, tpdu_length=pdu.tpdu_length
                )
                assert isinstance(decoded, SmsDeliver)
                parts.append(decoded)
        finally:
            client.close()
    a_text, b_text = (line["text"] for line in truth(log))
    assert a_text != b_text
    assert a_text.startswith("Your code is 1111")
    assert b_text.startswith("Your code is 1111")
    # one reference and total, from one sender; storage order A1, B1, B2, A2
    assert {(p.originator, p.concat.ref, p.concat.total) for p in parts if p.concat} == {
        ("Bank", 0, 2)
    }
    a1, b1, b2, a2 = parts
    assert [p.concat.seq for p in parts if p.concat] == [1, 1, 2, 2]
    assert reassemble([a1, a2]) == a_text
    assert reassemble([b1, b2]) == b_text
    assert reassemble([a1, b2]) not in (a_text, b_text)  # what mixing them gives
    # stamps: parts of one message seconds apart, the two messages an hour apart
    part_gap = datetime.timedelta(seconds=REUSED_PART_GAP_S)
    assert a2.scts - a1.scts == part_gap
    assert b2.scts - b1.scts == part_gap
    assert b1.scts - a1.scts == datetime.timedelta(seconds=REUSED_MESSAGE_GAP_S)
    assert b2.scts == SENT_AT
    lines = truth(log)
    assert [line["indices"] for line in lines] == [[1, 4], [2, 3]]
    assert {line["reused_ref"] for line in lines} == {0}
    assert lines[0]["part_scts"] == [a1.scts.isoformat(), a2.scts.isoformat()]


async def test_reused_refs_of_a_ucs2_text_are_two_parts_too(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    async with ModemSimulator(1, tmp_path / "ports", log_path=log, capacity=8) as sim:
        sim.ports[0].faults.reused_refs = 1.0
        sim.inject(0, "Bank", "Код 😀 2222", scts=SENT_AT)
        slots = sim.ports[0].state.slots
        decoded = [decode_pdu(slots[i].pdu_hex, tpdu_length=slots[i].tpdu_length) for i in (1, 4)]
    assert all(isinstance(p, SmsDeliver) for p in decoded)
    assert reassemble(decoded) == truth(log)[0]["text"]  # type: ignore[arg-type]


@pytest.mark.parametrize(("knob", "kinds"), [("bad_scts", BAD_SCTS), ("absurd_scts", ABSURD_SCTS)])
async def test_spoilt_stamps_keep_the_text(
    tmp_path: Path, knob: str, kinds: tuple[str, ...]
) -> None:
    log = tmp_path / "truth.jsonl"
    count = 24
    async with ModemSimulator(1, tmp_path / "ports", log_path=log, capacity=count, seed=9) as sim:
        port = sim.ports[0]
        setattr(port.faults, knob, 1.0)
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            texts = ["Your code is 000001", "Ваш код 000002", "x" * 200]  # 1, 1 and 2 parts
            for k in range(count // 2):
                sim.inject(0, "Telegram", f"{texts[k % 3]} #{k}", scts=SENT_AT)
            lines = truth(log)
            slots = sorted(port.state.slots)
            stored = {index: await read_stored(client, index) for index in slots}
        finally:
            client.close()
    assert {line["scts_fault"] for line in lines} == set(kinds)  # every kind, seeded
    for line in lines:
        raw = bytes.fromhex(line["scts_raw"])
        parts = [stored[index] for index in line["indices"]]
        assert len(parts) == line["parts"]
        decoded = []
        for pdu in parts:
            data = bytes.fromhex(pdu.hex)
            pos = scts_offset(data)
            assert data[pos : pos + 7] == raw  # the stamp the ground truth names
            # muxd's decoder keeps the text of an SMS whose stamp is not a time.
            part = decode_pdu(pdu.hex, tpdu_length=pdu.tpdu_length)
            assert isinstance(part, SmsDeliver)
            if knob == "bad_scts":
                assert part.scts is None
                assert part.scts_raw == raw
            decoded.append(part)
        assert reassemble(decoded) == line["text"]
        if line["scts_fault"] == "year2099":
            assert {p.scts.year for p in decoded} == {2099}
        elif line["scts_fault"] == "zone-17:30":
            assert {p.scts.utcoffset() for p in decoded} == {
                -datetime.timedelta(hours=17, minutes=30)
            }


def test_scts_offset_with_alphanumeric_and_numeric_senders() -> None:
    from muxd.pdu import encode_deliver

    for sender in ("Telegram", "+79161234567", "900", "Bank"):
        for smsc in (None, "+79168999100"):
            pdu = encode_deliver(sender, "hi", scts=SENT_AT, smsc=smsc)[0]
            data = bytes.fromhex(pdu.hex)
            assert data[scts_offset(data) : scts_offset(data) + 7] == encode_scts(SENT_AT)


async def test_benchmark_ledger_checks_each_reused_ref_message_whole(tmp_path: Path) -> None:
    """The campaign's ledger on this ground truth: a mixed text is corrupted, named as such."""
    from benchmarks import e2e_smsfaults
    from muxd_sim.ledger import Delivery, Ledger

    log = tmp_path / "truth.jsonl"
    async with ModemSimulator(1, tmp_path / "ports", log_path=log, seed=1) as sim:
        port = sim.ports[0]
        port.faults.reused_refs = 1.0
        sim.inject(0, "Bank", "Your code is 3333", scts=SENT_AT)
        port.faults.reused_refs = 0.0
        port.faults.bad_scts = 1.0
        sim.inject(0, "Bank", "Your code is 4444", scts=SENT_AT)
        slots = port.state.slots
        stored = [decode_pdu(slots[i].pdu_hex, tpdu_length=slots[i].tpdu_length) for i in (1, 4)]
    a, b, bad = truth(log)
    assert isinstance(stored[0], SmsDeliver)
    assert isinstance(stored[1], SmsDeliver)
    number = a["number"]
    ledger = Ledger()
    for record in (a, b, bad):
        ledger.add_sent(record, 1)
    ledger.add_delivery(Delivery(1.0, number, "Bank", a["text"]), 1)  # A whole
    mixed = a["text"][: len(stored[0].text)] + b["text"][len(stored[0].text) :]
    ledger.add_delivery(Delivery(1.0, number, "Bank", mixed), 1)  # A1 + B2
    ledger.add_delivery(Delivery(1.0, number, "Bank", bad["text"]), 1)  # bad stamp, right text
    ledger.pair_corrupted()
    kinds = e2e_smsfaults.report(ledger)
    assert kinds["reused_ref"] == {
        "injected": 2,
        "delivered": 1,
        "lost": 0,
        "corrupted": 1,
        "duplicated": 0,
        "excused": 0,
        "mixed_deliveries": 1,
    }
    assert kinds["bad_scts"]["delivered"] == kinds["bad_scts"]["injected"] == 1
    assert ledger.misdelivered()["by_what"] == {"mixed_reused_ref": 1}
    assert "reused_ref 1/2 (1 corrupted)" in e2e_smsfaults.summary_line(kinds)
