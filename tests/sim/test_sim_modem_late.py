"""Late answers of the modem simulator (``late=P:MIN-MAX``), seen from the host side of a pty."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from test_sim_modem_pty import OK, RESPONSE_RE, PtyClient, answer

from muxd_sim.modem import ModemSimulator
from muxd_sim.modem_faults import FAULT_KEYS, FaultPlan, parse_fault_spec

LATE_S = 0.3  # the late answers of these tests (muxd's deadline is 5 s; the shape is the same)
BEFORE_CMTI = re.compile(rb'^(.*?)\r\n\+CMTI: "SM",(\d+)\r\n', re.DOTALL)


def test_parse_late_and_the_new_keys() -> None:
    plan = parse_fault_spec(
        "late=0.02:5.2-7,reused_refs,bad_scts=0.1,absurd_scts,routed=0.3,routed_nocsms,cnma=2"
    )
    assert (plan.late_p, plan.late_min_s, plan.late_max_s) == (0.02, 5.2, 7.0)
    assert (plan.reused_refs, plan.bad_scts, plan.absurd_scts) == (0.05, 0.1, 0.05)
    assert (plan.routed, plan.routed_nocsms, plan.cnma_timeout_s) == (0.3, 1.0, 2.0)
    assert plan.port_faults().late_max_s == 7.0
    assert FaultPlan().late_p == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("late=0.1", "late=P:MIN-MAX"),
        ("late=0.1:5", "late=P:MIN-MAX"),
        ("late=0.1:7-5", "7.0 > 5.0"),
        ("late=2:1-2", "late_p must be a probability"),
        ("routed=1.5", "routed must be a probability"),
        ("bad_scts=x", "not a number"),
        ("cnma", "missing value"),
    ],
)
def test_parse_errors_of_the_new_keys(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_fault_spec(spec)


def test_unknown_key_lists_every_fault() -> None:
    with pytest.raises(ValueError, match="unknown fault") as caught:
        parse_fault_spec("bogus")
    for key in FAULT_KEYS:
        assert key in str(caught.value)
    for key in ("late=P:MIN-MAX", "reused_refs[=P]", "bad_scts[=P]", "absurd_scts[=P]"):
        assert key in FAULT_KEYS
    assert "routed[=P]" in FAULT_KEYS
    assert "routed_nocsms[=P]" in FAULT_KEYS


async def test_late_answer_queues_later_commands_and_lets_urcs_through(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        state = port.state
        client = PtyClient(port.path)
        loop = asyncio.get_running_loop()
        try:
            await client.command("ATE0")
            await client.command("ATE1")  # echo on: we see when each line is taken in
            port.faults.late_p, port.faults.late_min_s, port.faults.late_max_s = 1.0, LATE_S, LATE_S
            start = loop.time()
            client.send("AT+CSQ")
            await client.read_until(re.compile(rb"AT\+CSQ\r"))  # taken in at once: echoed
            port.faults.late_p = 0.0  # only that one is late
            client.send("AT+CGSN")  # a host whose deadline passed sends the next ones
            client.send("AT+CIMI")
            sim.inject(0, "Telegram", "Your code is 424242")  # URCs keep flowing
            before = await client.read_until(BEFORE_CMTI)
            assert before.group(1) == b""  # nothing else came before the URC: no answer, no echo
            assert loop.time() - start < LATE_S
            assert list(state.commands)[-1] == "AT+CSQ"  # the queued lines have not run yet
            csq = (await client.read_until(RESPONSE_RE)).group(0)
            assert loop.time() - start >= LATE_S
            assert csq == answer(f"+CSQ: {state.rssi},99")
            # then the queued lines, in order, each echoed and answered as it is run
            assert (await client.read_until(RESPONSE_RE)).group(0) == b"AT+CGSN\r" + answer(
                port.imei
            )
            assert (await client.read_until(RESPONSE_RE)).group(0) == b"AT+CIMI\r" + answer(
                port.imsi
            )
            assert list(state.commands)[-3:] == ["AT+CSQ", "AT+CGSN", "AT+CIMI"]
            assert port.late_answers == 1
            assert port._late is None
            assert not port._held
            assert await client.command("AT") == b"AT\r" + OK  # back to prompt answers
        finally:
            client.close()


async def test_a_queued_command_runs_only_after_the_late_answer(tmp_path: Path) -> None:
    """AT+CMGD written behind a late AT+CMGR deletes nothing until the CMGR is answered."""
    deleted: list[tuple[int, int]] = []  # (index, late answers written by then)
    async with ModemSimulator(
        1, tmp_path, on_delete=lambda port, index, pdu: deleted.append((index, port.late_answers))
    ) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            sim.inject(0, "Telegram", "Your code is 111111")
            await client.read_until(BEFORE_CMTI)
            port.faults.late_p, port.faults.late_min_s, port.faults.late_max_s = 1.0, LATE_S, LATE_S
            client.send("AT+CMGR=1")
            await client.read_until(re.compile(rb"AT\+CMGR=1\r"))  # taken in, answer held
            assert port._late is not None
            port.faults.late_p = 0.0
            client.send("AT+CMGD=1")
            cmgr = (await client.read_until(RESPONSE_RE)).group(0)
            assert cmgr.startswith(b"\r\n+CMGR: 0,,")  # read while it was still unread
            assert (await client.read_until(RESPONSE_RE)).group(0) == b"AT+CMGD=1\r" + OK
            assert deleted == [(1, 1)]  # the CMGD ran after the late CMGR was answered
        finally:
            client.close()


async def test_late_share_is_seeded_and_every_answer_keeps_its_order(tmp_path: Path) -> None:
    counts = []
    for _ in range(2):
        async with ModemSimulator(1, tmp_path, seed=3) as sim:
            port = sim.ports[0]
            port.faults.late_p, port.faults.late_min_s, port.faults.late_max_s = 0.3, 0.001, 0.01
            client = PtyClient(port.path)
            try:
                await client.command("ATE0")
                for k in range(40):
                    client.send(f'AT+CSCS="{("GSM", "IRA", "UCS2")[k % 3]}"')
                    client.send("AT+CSCS?")
                for k in range(40):
                    assert (await client.read_until(RESPONSE_RE)).group(0) == OK
                    got = (await client.read_until(RESPONSE_RE)).group(0)
                    assert got == answer(f'+CSCS: "{("GSM", "IRA", "UCS2")[k % 3]}"')
            finally:
                client.close()
            counts.append(port.late_answers)
    assert counts[0] == counts[1]
    assert 5 <= counts[0] <= 60


async def test_vanish_drops_a_pending_late_answer(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path, boot_delay=0) as sim:
        port = sim.ports[0]
        port.faults.late_p, port.faults.late_min_s, port.faults.late_max_s = 1.0, 60.0, 60.0
        client = PtyClient(port.path)
        try:
            client.send("AT+CSQ")
            await client.read_until(re.compile(rb"AT\+CSQ\r"))
            assert port._late is not None
            sim.vanish(0, 0.01)
            assert port._late is None
            assert not port._held
        finally:
            client.close()
