"""Fault injection of the modem simulator, observed from the host side of real ptys."""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import fields
from pathlib import Path

import pytest
from test_sim_modem_pty import OK, RESPONSE_RE, Events, PtyClient, answer, lines_of

from muxd.pdu import SmsDeliver, decode_pdu, reassemble
from muxd_sim.modem import ModemSimulator, raise_fd_limit, run_simulator
from muxd_sim.modem_faults import FaultPlan, Faults, parse_fault_spec
from muxd_sim.modem_ident import make_identity

CMTI_RE = re.compile(rb'\r\n\+CMTI: "(\w\w)",(\d+)\r\n')
PDU_RE = re.compile(rb"[0-9A-F]{20,}")
HEADER_RE = re.compile(rb"\+CMG[LR]: ")


def listing_pairs(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(header, next line) for every +CMGL/+CMGR header among ``lines``."""
    return [(line, lines[k + 1]) for k, line in enumerate(lines) if HEADER_RE.match(line)]


async def fill(sim: ModemSimulator, client: PtyClient, index: int, count: int) -> None:
    """Inject ``count`` SMS on port ``index`` and consume their +CMTI."""
    for k in range(count):
        sim.inject(index, "Telegram", f"Your code is {k:06d}")
        await client.read_until(CMTI_RE)


# ---------------------------------------------------------------- spec and plan


def test_parse_fault_spec_example() -> None:
    plan = parse_fault_spec("noise=0.05,split_reads,delay=0.2,urc_mid_response")
    assert (plan.noise, plan.split_reads, plan.delay_s, plan.urc_mid_response) == (
        0.05,
        True,
        0.2,
        True,
    )
    assert not plan.mute
    assert not plan.scheduled


def test_parse_fault_spec_every_key() -> None:
    plan = parse_fault_spec(
        " noise , mid_pdu,mute,drop_urcs,storage_full,cnum_empty,parts=shuffle,ref16,"
        "hang=30:5,vanish=120:2.5,swap=600,"
    )
    assert plan.noise == 0.05
    assert plan.mid_pdu
    assert plan.mute
    assert plan.drop_urcs
    assert plan.storage_full
    assert plan.cnum_empty
    assert (plan.parts_order, plan.ref_bits) == ("shuffle", 16)
    assert (plan.hang_every, plan.hang_s, plan.vanish_every, plan.vanish_s) == (30, 5, 120, 2.5)
    assert plan.swap_every == 600
    assert plan.scheduled
    assert parse_fault_spec("ref_bits=8,parts=reverse,delay_s=1").ref_bits == 8
    split = parse_fault_spec("split_reads=0.01")
    assert (split.split_reads, split.split_gap_s) == (True, 0.01)
    assert parse_fault_spec("") == FaultPlan()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown fault"),
        ("delay", "unknown fault or missing value"),
        ("delay=x", "not a number"),
        ("delay=-1", ">= 0"),
        ("noise=2", "probability"),
        ("mute=1", "takes no value"),
        ("split_reads=x", "not a number"),
        ("parts=sideways", "parts_order"),
        ("ref_bits=12", "ref_bits"),
        ("hang=30", "hang=EVERY:SECONDS"),
        ("swap=5:1", "swap=EVERY"),
        ("vanish=nan:1", "finite"),
    ],
)
def test_parse_fault_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_fault_spec(spec)


def test_fault_plan_copies_its_knobs() -> None:
    plan = FaultPlan(noise=0.1, split_reads=True, hang_every=3.0, hang_s=1.0)
    faults = plan.port_faults()
    assert type(faults) is Faults
    assert faults == Faults(noise=0.1, split_reads=True)
    assert faults is not plan.port_faults()
    assert {f.name for f in fields(Faults)} < {f.name for f in fields(FaultPlan)}
    assert Faults().shapes_output is False


async def test_fault_share_picks_seeded_ports(tmp_path: Path) -> None:
    plan = FaultPlan(noise=0.01, cnum_empty=True)
    chosen = []
    for _ in range(2):
        async with ModemSimulator(8, tmp_path, faults=plan, fault_share=0.25, seed=5) as sim:
            chosen.append(sim.faulty)
            assert len(sim.faulty) == 2
            for port in sim.ports:
                expected = plan.port_faults() if port.index in sim.faulty else Faults()
                assert port.faults == expected
                assert port.faults is port.state.faults
            first, second = (sim.ports[i].faults for i in sim.faulty)
            assert first is not second
    assert chosen[0] == chosen[1]
    async with ModemSimulator(8, tmp_path, faults=plan, fault_share=0.25, seed=6) as sim:
        assert len(sim.faulty) == 2
    async with ModemSimulator(3, tmp_path, faults=plan) as sim:
        assert sim.faulty == [0, 1, 2]  # the whole fleet by default
    async with ModemSimulator(3, tmp_path, faults=plan, fault_share=0.0) as sim:
        assert sim.faulty == []
    with pytest.raises(ValueError, match="fault_share"):
        ModemSimulator(3, tmp_path, faults=plan, fault_share=1.5)
    with pytest.raises(ValueError, match="noise"):
        ModemSimulator(3, tmp_path, faults=FaultPlan(noise=3.0))


# ---------------------------------------------------------------- I/O faults


async def test_urc_mid_response_lands_between_whole_lines(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.command("ATE0")
            await fill(sim, client, 0, 3)
            await client.command("AT+CMGL=4")  # marks them read: listings stay the same now
            clean = lines_of(await client.command("AT+CMGL=4"))
            sim.ports[0].faults.urc_mid_response = True
            for _ in range(10):
                lines = lines_of(await client.command("AT+CMGL=4"))
                extra = [line for line in lines if line not in clean]
                assert len(extra) == 1, lines
                assert re.fullmatch(rb'\+CMTI: "SM",[123]|\+CREG: 1', extra[0])
                assert [line for line in lines if line in clean] == clean
                for _header, pdu in listing_pairs(lines):
                    assert PDU_RE.fullmatch(pdu), lines  # pairs never split
            # a single-line answer is left alone
            assert await client.command("AT+CSQ") == answer(f"+CSQ: {sim.ports[0].state.rssi},99")
        finally:
            client.close()


async def test_mid_pdu_also_splits_header_and_pdu(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path, seed=3) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.command("ATE0")
            await fill(sim, client, 0, 1)
            faults = sim.ports[0].faults
            faults.urc_mid_response = faults.mid_pdu = True
            split = 0
            for _ in range(30):
                lines = lines_of(await client.command("AT+CMGR=1"))
                [(_header, after)] = listing_pairs(lines)
                assert len(lines) == 4, lines  # header, PDU, URC, OK in some order
                split += not PDU_RE.fullmatch(after)
            assert 0 < split < 30
        finally:
            client.close()


async def test_split_reads_deliver_answers_in_small_pieces(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await fill(sim, client, 0, 3)
            whole = await client.command("AT+CMGL=4")
            assert len(whole) > 300
            port.faults.split_reads = True
            client.reads.clear()
            assert await client.command("AT+CMGL=4") == whole.replace(b",0,,", b",1,,")
            # one write per loop iteration: the kernel may merge a few, never all of them
            assert len(client.reads) > 1
            port.faults.split_gap_s = 0.002
            client.reads.clear()
            expected = answer(f"+CCID: {port.iccid}")
            assert await client.command("AT+CCID") == expected
            assert len(client.reads) >= 3
            assert max(client.reads) < len(expected)
            port.faults.split_reads = False
            client.reads.clear()
            assert await client.command("AT+CIMI") == answer(port.imsi)
            assert client.reads == [len(answer(port.imsi))]
        finally:
            client.close()


async def test_delay_holds_the_answer_but_not_the_echo(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        port.faults.delay_s = 0.2
        client = PtyClient(port.path)
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            client.send("AT+CSQ")
            await client.read_until(re.compile(rb"AT\+CSQ\r"))  # the echo comes at once
            assert b"OK" not in client.buffer
            sim.inject(0, "Telegram", "Your code is 777777")  # a URC while the answer is due
            reply = (await client.read_until(RESPONSE_RE)).group(0)
            assert loop.time() - start >= 0.2
            assert reply == answer(f"+CSQ: {port.state.rssi},99")
            match = await client.read_until(CMTI_RE)  # order kept: the URC after the answer
            assert match.group(2) == b"1"
        finally:
            client.close()


async def test_delayed_answer_survives_a_reboot(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, flavours=["telit"], on_event=events) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            port.faults.delay_s = 0.05
            assert await client.command("AT#REBOOT") == OK  # no boot URCs push it out
            await events.wait(0, "power-up", 2)
            assert await client.command("AT") == b"AT\r" + OK  # rebooted: echo on
        finally:
            client.close()


async def test_noise_adds_junk_lines_only(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path, seed=11) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await fill(sim, client, 0, 2)
            await client.command("AT+CMGL=4")  # marks them read: listings stay the same now
            clean = lines_of(await client.command("AT+CMGL=4"))
            port.faults.noise = 1.0
            noisy = lines_of(await client.command("AT+CMGL=4"))
            port.faults.noise = 0.0
            junk = [line for line in noisy if line not in clean]
            assert len(junk) >= len(clean)  # a junk line at every boundary
            assert [line for line in noisy if line in clean] == clean
            for _header, pdu in listing_pairs(noisy):
                assert PDU_RE.fullmatch(pdu)
            for line in junk:
                assert not line.startswith((b"+", b"^", b"#", b"OK", b"ERROR")), line
            assert any(b"\x00" in line or b"\xff" in line for line in junk)
            client.take()
            assert await client.command("AT") == OK
        finally:
            client.close()


# ---------------------------------------------------------------- hangs and vanishing ports


async def test_mute_for_hangs_then_recovers(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, on_event=events) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            sim.mute_for(0, 0.15)
            assert port.faults.mute
            client.send("AT+CSQ")  # swallowed
            sim.inject(0, "Telegram", "Your code is 111111")  # stored, not announced
            await events.wait(0, "unmute")
            assert not port.faults.mute
            reply = await client.command("AT")
            assert reply == OK  # no echo, no +CSQ, no +CMTI before it
            assert await client.command("AT+CMGL=4") != OK  # the SMS is in storage
            port.state.mute = True  # the interpreter's switch is the same one
            assert port.faults.mute
            port.faults.mute = False
            assert await client.command("AT+CSQ") == answer(f"+CSQ: {port.state.rssi},99")
        finally:
            client.close()


async def test_vanish_replaces_the_pty_and_keeps_the_sim(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(
        2, tmp_path, flavours=["quectel"], on_event=events, boot_delay=0
    ) as sim:
        port = sim.ports[1]
        client = PtyClient(port.path)
        await client.read_line("+QIND: PB DONE")
        await client.command("ATE0")
        sim.inject(1, "Telegram", "Your code is 123123")
        await client.read_until(CMTI_RE)
        old_tty = port.tty_name
        sim.vanish(1, 0.1)
        assert not os.path.lexists(port.path)  # noqa: ASYNC240
        assert port.vanished
        assert os.readlink(sim.ports[0].path) == sim.ports[0].tty_name  # others unaffected
        await client.wait_hangup()
        client.close()  # the host lets go: the old /dev/pts/N is free again
        with pytest.raises(RuntimeError, match="already vanished"):
            sim.vanish(1, 0.1)
        sim.inject(1, "Telegram", "Your code is 456456")  # arrives while the port is gone
        await events.wait(1, "reappear")
        new_tty = os.readlink(port.path)
        assert new_tty == port.tty_name
        assert new_tty != old_tty
        assert new_tty.startswith("/dev/")
        client = PtyClient(port.path)
        try:
            boot = await client.read_line("+QIND: PB DONE")
            assert lines_of(boot) == [b"RDY", b"+CPIN: READY", b"+QUSIM: 1", b"+QIND: SMS DONE"]
            assert await client.command("AT") == b"AT\r" + OK  # a new modem: echo on again
            await client.command("ATE0")
            assert await client.command("AT+CCID") == answer(f"+CCID: {port.iccid}")
            listing = lines_of(await client.command("AT+CMGL=4"))
            headers = [line for line in listing if line.startswith(b"+CMGL:")]
            assert [h.split(b",")[0] for h in headers] == [b"+CMGL: 1", b"+CMGL: 2"]
        finally:
            client.close()
        assert events.count(1, "power-up") == 2


async def test_swap_sim_changes_identity_and_empties_the_sim(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(
        2,
        tmp_path,
        flavours=["quectel"],
        boot_delay=0,
        log_path=tmp_path / "log.jsonl",
        on_event=events,
    ) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.read_line("+QIND: PB DONE")
            await client.command("ATE0;+CMEE=1")
            sim.inject(0, "Telegram", "kept in ME")  # ME is the modem's memory
            await client.read_until(CMTI_RE)
            await client.command('AT+CPMS="SM","SM","SM"')
            sim.inject(0, "Telegram", "gone with the SIM")
            assert (await client.read_until(CMTI_RE)).group(1) == b"SM"
            sim.inject(0, "Telegram", "deleted before the swap")
            assert (await client.read_until(CMTI_RE)).group(2) == b"2"
            assert await client.command("AT+CMGD=2") == OK
            old = (port.imsi, port.iccid, port.number)
            ident = sim.swap_sim(0, gap=0.2)
            await client.read_line("+CPIN: NOT READY")
            assert await client.command("AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"
            assert await client.command("AT+CMGL=4") == b"\r\n+CMS ERROR: 310\r\n"
            after = await client.read_line("+QIND: PB DONE")
            assert lines_of(after) == [b"+CPIN: READY", b"+QUSIM: 1", b"+QIND: SMS DONE"]
            assert ident == make_identity(0, 0 + 1 * 2)  # (seed, index + swaps * n_ports)
            assert (port.imsi, port.iccid, port.number) == (ident.imsi, ident.iccid, ident.number)
            assert ident.imsi != old[0]
            assert ident.iccid != old[1]
            assert ident.number != old[2]
            assert await client.command("AT+CIMI") == answer(ident.imsi)
            assert await client.command("AT+QCCID") == answer(f"+QCCID: {ident.iccid}")
            assert await client.command("AT+CNUM") == answer(f'+CNUM: "","{ident.number}",145')
            assert await client.command("AT+CMGL=4") == OK  # the new SIM's memory is empty
            await client.command('AT+CPMS="ME","ME","ME"')
            assert b"+CMGL: 1," in await client.command("AT+CMGL=4")  # ME kept its message
            sim.inject(0, "Telegram", "to the new number")
            await client.read_until(CMTI_RE)
            given = make_identity(9, 9)
            sim.swap_sim(0, make_identity(8, 8), gap=0.05)  # overtaken by the next swap
            assert sim.swap_sim(0, given) is given
            assert port.iccid == given.iccid
            sim.mute_for(1, 0.1)  # a clock on the other port: fires after the 0.05 s gap
            await events.wait(1, "unmute")
            assert events.count(0, "sim-inserted") == 2  # the overtaken SIM never came in
            swaps = await client.read_line("+QIND: PB DONE")
            assert lines_of(swaps) == [
                b"+CPIN: NOT READY",
                b"+CPIN: NOT READY",
                b"+CPIN: READY",
                b"+QUSIM: 1",
                b"+QIND: SMS DONE",
            ]
            assert await client.command("AT+CCID") == answer(f"+CCID: {given.iccid}")
        finally:
            client.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    injected = [r for r in records if "event" not in r]
    assert [r["number"] for r in injected] == [old[2], old[2], old[2], ident.number]
    assert [r["mem"] for r in injected] == ["ME", "SM", "SM", "ME"]
    [discarded] = [r for r in records if "event" in r]
    assert discarded["event"] == "discarded"
    assert discarded["reason"] == "sim-swap"
    assert discarded["id"] == injected[1]["id"]  # the SMS that was in the old SIM's memory
    assert discarded["parts"] == 1
    assert sim.discarded == 1


# ---------------------------------------------------------------- storage and CNUM


async def test_storage_full_fault_refuses_and_announces_once(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path, flavours=["quectel"], boot_delay=0) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.read_line("+QIND: PB DONE")
            await client.command("ATE0")
            port.faults.storage_full = True
            sim.inject(0, "Telegram", "refused 1")
            await client.read_line('+QIND: "smsfull","ME"')
            sim.inject(0, "Telegram", "refused 2")
            assert await client.command("AT") == OK  # announced once only
            assert sim.refused == 2
            assert port.state.used == 0
            port.faults.storage_full = False
            sim.inject(0, "Telegram", "stored")
            assert (await client.read_until(CMTI_RE)).groups() == (b"ME", b"1")
        finally:
            client.close()


async def test_full_memory_announced_per_flavour(tmp_path: Path) -> None:
    async with ModemSimulator(
        3,
        tmp_path,
        flavours=["huawei", "simcom", "generic"],
        capacity=2,
        urc_interval=0,
        boot_delay=0,
    ) as sim:
        expected = {0: b'^SMMEMFULL:"SM"', 1: b'+CIEV: "SMSFULL",1', 2: None}
        for index, urc in expected.items():
            client = PtyClient(sim.ports[index].path)
            try:
                await client.command("ATE0")
                sim.inject(index, "Telegram", "one")
                sim.inject(index, "Telegram", "two")  # the memory is full now
                sim.inject(index, "Telegram", "three")  # refused, no second URC
                received = lines_of(await client.command("AT"))
                full = [line for line in received if b"FULL" in line]
                assert full == ([] if urc is None else [urc]), received
                base = sim.ports[index].state.index_base
                await client.command(f"AT+CMGD={base}")
                sim.inject(index, "Telegram", "four")  # full again: announced again
                received = lines_of(await client.command("AT"))
                assert len([line for line in received if b"FULL" in line]) == (urc is not None)
            finally:
                client.close()
        assert sim.refused == 3


async def test_cnum_empty(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            assert await client.command("AT+CNUM") == answer(f'+CNUM: "","{port.number}",145')
            port.faults.cnum_empty = True
            assert await client.command("AT+CNUM") == OK
        finally:
            client.close()


# ---------------------------------------------------------------- multipart


def read_parts(sim: ModemSimulator, index: int) -> dict[int, SmsDeliver]:
    parts = {}
    for slot, stored in sim.ports[index].state.slots.items():
        decoded = decode_pdu(stored.pdu_hex, tpdu_length=stored.tpdu_length)
        assert isinstance(decoded, SmsDeliver)
        parts[slot] = decoded
    return parts


@pytest.mark.parametrize("ref_bits", [8, 16])
@pytest.mark.parametrize("order", ["in", "reverse", "shuffle"])
async def test_multipart_orders_and_reference_sizes(
    tmp_path: Path, ref_bits: int, order: str
) -> None:
    # a surrogate pair straddles parts 1/2: 67 (8-bit ref) or 66 (16-bit) UTF-16 units per part
    per_part = 67 if ref_bits == 8 else 66
    text = "x" * (per_part - 1) + "😀" + "Ж" * per_part + "🎉 end"
    async with ModemSimulator(1, tmp_path, capacity=50, seed=2) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.command("ATE0")
            sim.inject(0, "+79161234567", "warm-up")  # the next reference is 1, not 0
            await client.read_until(CMTI_RE)
            await client.command("AT+CMGD=1")
            sim.inject(0, "+79161234567", text, ref_bits=ref_bits, order=order)
            announced = [int((await client.read_until(CMTI_RE)).group(2)) for _ in range(3)]
        finally:
            client.close()
        parts = read_parts(sim, 0)
    assert sorted(announced) == sorted(parts) == [1, 2, 3]
    seqs = [parts[slot].concat.seq for slot in announced]  # type: ignore[union-attr]
    if order == "in":
        assert seqs == [1, 2, 3]
    elif order == "reverse":
        assert seqs == [3, 2, 1]
    assert sorted(seqs) == [1, 2, 3]
    for part in parts.values():
        assert part.concat is not None
        assert (part.concat.ref, part.concat.ref_bits, part.concat.total) == (1, ref_bits, 3)
    first = next(p for p in parts.values() if p.concat and p.concat.seq == 1)
    assert len(first.user_data) == 2 * per_part
    assert 0xD8 <= first.user_data[-2] <= 0xDB  # the part ends with a high surrogate
    assert reassemble(list(parts.values())) == text


async def test_shuffle_is_seeded_and_fault_defaults_apply(tmp_path: Path) -> None:
    text = "Ж" * 400  # 7 parts of 66 characters
    orders = []
    for _ in range(2):
        async with ModemSimulator(1, tmp_path, capacity=50, seed=4) as sim:
            sim.ports[0].faults.parts_order = "shuffle"
            sim.ports[0].faults.ref_bits = 16
            sim.inject(0, "Telegram", text)
            parts = read_parts(sim, 0)
            orders.append([parts[slot].concat.seq for slot in sorted(parts)])  # type: ignore[union-attr]
            assert {p.concat.ref_bits for p in parts.values()} == {16}  # type: ignore[union-attr]
            with pytest.raises(ValueError, match="ref_bits"):
                sim.inject(0, "Telegram", "x", ref_bits=7)
            with pytest.raises(ValueError, match="order"):
                sim.inject(0, "Telegram", "x", order="sideways")
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == list(range(1, 8))
    assert orders[0] != sorted(orders[0])


# ---------------------------------------------------------------- scheduled chaos, scale, CLI


async def test_fault_plan_schedules_hangs_vanishings_and_swaps(tmp_path: Path) -> None:
    events = Events()
    plan = FaultPlan(
        hang_every=0.02, hang_s=0.02, vanish_every=0.02, vanish_s=0.02, swap_every=0.02
    )
    async with ModemSimulator(
        3, tmp_path, faults=plan, fault_share=0.5, seed=1, on_event=events
    ) as sim:
        assert len(sim.faulty) == 2
        for index in sim.faulty:
            for event in ("unmute", "reappear", "sim-inserted"):
                await events.wait(index, event, 2)
        calm = next(i for i in range(3) if i not in sim.faulty)
        assert events.count(calm, "vanish") == 0
        faulty_port = sim.ports[sim.faulty[0]]
        assert faulty_port.sim_generation >= 2
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (closed mid-chaos: no symlink left)
    assert sim.errors == []


async def test_many_ports_in_one_process(tmp_path: Path) -> None:
    soft, hard = raise_fd_limit()
    assert soft == hard or soft >= 2048
    log_path = tmp_path / "truth.jsonl"
    async with ModemSimulator(
        512, tmp_path / "ports", flavours=["generic", "quectel", "huawei"], log_path=log_path
    ) as sim:
        assert len({port.tty_name for port in sim.ports}) == 512
        assert await sim.run_load(1e9, count=2000) == 2000
        assert sum(port.state.used for port in sim.ports) + sim.refused >= 2000
        client = PtyClient(sim.ports[511].path)
        try:
            assert lines_of(await client.command("AT+CGMM"))[-2:] == [b"EC25", b"OK"]
        finally:
            client.close()
    assert len(log_path.read_text(encoding="utf-8").splitlines()) == 2000


async def test_run_simulator_notes_flavours_and_faulty_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_simulator(
        3,
        tmp_path / "ports",
        duration=0.01,
        flavours=("generic", "huawei"),
        faults=parse_fault_spec("noise=0.01"),
        fault_share=1.0,
    )
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"port000 -> /dev/\S+ number \+7900\d{7} faulty", lines[0])
    assert lines[1].endswith(" huawei faulty")
    assert len(lines) == 3
