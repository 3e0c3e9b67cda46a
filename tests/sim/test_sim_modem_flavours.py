"""Vendor flavours of the modem simulator: identity, boot URCs, ICCID forms, memories, gating."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_sim_modem_pty import OK, Events, PtyClient, answer, lines_of

from muxd.pdu import EncodedPdu, encode_deliver
from muxd_sim.modem import ModemSimulator
from muxd_sim.modem_flavours import FLAVOURS, get_flavour, parse_flavours
from muxd_sim.modem_state import SimModemState

SCTS = datetime(2024, 5, 17, 12, 30, 45, tzinfo=timezone(timedelta(hours=3)))
ICCID = "89701012345678901234"
IMSI = "250011234567890"
CMTI_RE = re.compile(rb'\r\n\+CMTI: "(\w\w)",(\d+)\r\n')
MAIN = ("generic", "quectel", "simcom", "huawei", "telit")


def make_pdu(text: str = "Your code is 123456") -> EncodedPdu:
    [pdu] = encode_deliver("Telegram", text, scts=SCTS)
    return pdu


def make_state(flavour: str, **kwargs: int) -> SimModemState:
    state = SimModemState(iccid=ICCID, imsi=IMSI, flavour=FLAVOURS[flavour], **kwargs)
    state.feed(b"ATE0\r")
    return state


def run(state: SimModemState, command: str) -> bytes:
    """A command's answer without Huawei's extra blank lines around it."""
    out = state.feed(command.encode() + b"\r")
    if state.flavour.blank_lines:
        assert out.startswith(b"\r\n"), out
        assert out.endswith(b"\r\n"), out
        return out[2:-2]
    return out


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("flavour", "manufacturer", "model"),
    [
        ("generic", "Quectel", "EC25"),
        ("quectel", "Quectel", "EC25"),
        ("simcom", "SIMCOM_Ltd", "SIMCOM_SIM7600E"),
        ("sim800", "SIMCOM_Ltd", "SIMCOM_SIM800L"),
        ("huawei", "huawei", "E173"),
        ("telit", "Telit", "LE910"),
    ],
)
def test_identity_strings(flavour: str, manufacturer: str, model: str) -> None:
    state = make_state(flavour)
    assert run(state, "AT+CGMI") == answer(manufacturer)
    assert run(state, "AT+CGMM") == answer(model)
    assert run(state, "ATI").startswith(answer(manufacturer, model)[: -len(OK)])


@pytest.mark.parametrize(
    ("flavour", "command", "expected"),
    [
        ("generic", "AT+CCID", answer(f"+CCID: {ICCID}")),
        ("generic", "AT+QCCID", b"\r\nERROR\r\n"),
        ("quectel", "AT+QCCID", answer(f"+QCCID: {ICCID}")),
        ("quectel", "AT+CCID", answer(f"+CCID: {ICCID}")),
        ("simcom", "AT+CCID", answer(ICCID)),
        ("simcom", "AT+CICCID", answer(f"+ICCID: {ICCID}")),
        ("sim800", "AT+CCID", answer(ICCID)),
        ("huawei", "AT^ICCID?", answer(f"^ICCID: {ICCID}")),
        ("huawei", "AT+CCID", b"\r\nCOMMAND NOT SUPPORT\r\n"),
        ("telit", "AT#CCID", answer(f"#CCID: {ICCID}")),
        ("telit", "AT+CCID", b"\r\nERROR\r\n"),
    ],
)
def test_iccid_commands(flavour: str, command: str, expected: bytes) -> None:
    assert run(make_state(flavour), command) == expected


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_ef_iccid_read_works_everywhere(flavour: str) -> None:
    assert run(make_state(flavour), "AT+CRSM=176,12258,0,0,10") == answer(
        '+CRSM: 144,0,"98070121436587092143"'
    )


def test_huawei_frames_with_blank_lines_and_rejects_unknown_commands() -> None:
    state = make_state("huawei")
    assert state.feed(b"AT\r") == b"\r\n\r\nOK\r\n\r\n"
    assert state.feed(b"AT+CSQ\r") == b"\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\n"
    assert state.feed(b"AT+CMEE=1\r") == b"\r\n\r\nOK\r\n\r\n"
    assert state.feed(b"AT+FOO\r") == b"\r\n\r\nCOMMAND NOT SUPPORT\r\n\r\n"
    assert state.feed(b"AT+CMGR=5\r") == b"\r\n\r\n+CMS ERROR: 321\r\n\r\n"


@pytest.mark.parametrize(
    ("flavour", "base"), [(name, 0 if name == "huawei" else 1) for name in MAIN]
)
def test_index_base(flavour: str, base: int) -> None:
    state = make_state(flavour, capacity=2)
    pdu = make_pdu()
    assert [state.store_deliver(pdu) for _ in range(3)] == [base, base + 1, None]
    assert run(state, f"AT+CMGR={base}") == answer(f"+CMGR: 0,,{pdu.tpdu_length}", pdu.hex)
    assert run(state, f"AT+CMGR={base + 2}") == b"\r\n+CMS ERROR: 321\r\n"


def test_quectel_stores_in_me_by_default_and_offers_sm() -> None:
    state = make_state("quectel")
    assert run(state, "AT+CPMS?") == answer('+CPMS: "ME",0,30,"ME",0,30,"ME",0,30')
    assert run(state, "AT+CPMS=?") == answer(
        '+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")'
    )
    pdu = make_pdu()
    assert state.store_deliver(pdu) == 1
    assert state.cmti_if_enabled(1) == b'\r\n+CMTI: "ME",1\r\n'
    assert run(state, 'AT+CPMS="SM","SM","SM"') == answer("+CPMS: 0,30,0,30,0,30")
    assert run(state, "AT+CMGL=4") == OK  # the message is in ME, not SM
    assert run(state, 'AT+CPMS="MT","MT","MT"') == answer("+CPMS: 1,30,1,30,1,30")
    assert run(state, "AT+CMGL=4") == answer(f"+CMGL: 1,0,,{pdu.tpdu_length}", pdu.hex)
    assert state.urc_cmti(2) == b'\r\n+CMTI: "ME",2\r\n'  # MT is served by ME's slots


def test_generic_offers_sm_only() -> None:
    state = make_state("generic")
    assert run(state, 'AT+CPMS="ME"') == b"\r\n+CMS ERROR: 302\r\n"
    assert run(state, "AT+CPMS=?") == answer('+CPMS: ("SM"),("SM"),("SM")')


def test_telit_rejects_status_report_routing() -> None:
    state = make_state("telit")
    assert run(state, "AT+CNMI=2,1,0,2,0") == b"\r\n+CMS ERROR: 303\r\n"
    assert run(state, "AT+CNMI=2,1,0,1,0") == b"\r\n+CMS ERROR: 303\r\n"
    assert run(state, "AT+CNMI=2,1,0,0,0") == OK
    assert run(state, "AT+CNMI=2,1") == OK
    assert run(state, "AT+CNMI?") == answer("+CNMI: 2,1,0,0,0")
    generic = make_state("generic")
    assert run(generic, "AT+CNMI=2,1,0,2,0") == OK


def test_telit_qss_gates_sim_urcs() -> None:
    state = make_state("telit")
    assert state.remove_sim() == b""  # #QSS mode 0: no URC
    assert state.insert_sim(imsi=IMSI, iccid=ICCID, number=None) == b""
    assert run(state, "AT#QSS=1") == OK
    assert run(state, "AT#QSS?") == answer("#QSS: 1,1")
    assert state.remove_sim() == b"\r\n#QSS: 0\r\n"
    assert run(state, "AT#QSS?") == answer("#QSS: 1,0")
    assert state.insert_sim(imsi=IMSI, iccid=ICCID, number=None) == b"\r\n#QSS: 1\r\n"
    state.power_up()
    assert state.qss == 0  # not kept across a reboot


def test_huawei_curc_silences_caret_urcs() -> None:
    state = make_state("huawei")
    assert lines_of(state.periodic_urcs()) == [
        b"^RSSI:20",
        b"^BOOT:20358751,0,0,0,72",
        b"^MODE:5,4",
        b"^DSFLOWRPT:0000240E,00000000,00000000,00000000000AD023,00000000002FA192,0003E800,0003E800",
    ]
    assert run(state, "AT^CURC?") == answer("^CURC: 1")
    assert run(state, "AT^CURC=0") == OK
    assert state.periodic_urcs() == b""
    assert state.remove_sim() == b""  # ^SIMST is a ^ report too
    assert run(state, "AT^CURC=1") == OK
    assert state.periodic_urcs() != b""
    assert make_state("generic").periodic_urcs() == b""


def test_huawei_cmti_needs_portsel() -> None:
    state = make_state("huawei")
    assert not state.urcs_enabled
    assert state.cmti_if_enabled(0) == b""
    assert run(state, "AT^PORTSEL?") == answer("^PORTSEL: 0")
    assert run(state, "AT^PORTSEL=1") == OK
    assert state.cmti_if_enabled(0) == b'\r\n+CMTI: "SM",0\r\n'
    state.power_up()
    assert not state.urcs_enabled  # back to the power-up default


def test_simcom_refuses_sms_commands_while_booting() -> None:
    state = SimModemState(flavour=FLAVOURS["simcom"])
    assert state.power_up(booting=True) == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n"
    assert state.feed(b"AT+CMGF=0\r") == b"AT+CMGF=0\r\r\n+CMS ERROR: 500\r\n"
    assert state.feed(b"ATE0;+CSQ\r") == b"ATE0;+CSQ\r" + answer("+CSQ: 20,99")
    assert state.sms_ready() == b"\r\nSMS DONE\r\n\r\nPB DONE\r\n"
    assert state.feed(b"AT+CMGF=0\r") == OK


@pytest.mark.parametrize(
    ("flavour", "command", "reboots"),
    [
        ("generic", "AT+CFUN=1,1", False),
        ("quectel", "AT+CFUN=1,1", True),
        ("quectel", "AT+CFUN=1", False),
        ("simcom", "AT+CRESET", True),
        ("huawei", "AT^RESET", True),
        ("telit", "AT#REBOOT", True),
    ],
)
def test_reset_commands_request_a_reboot(flavour: str, command: str, reboots: bool) -> None:
    state = make_state(flavour)
    assert run(state, command) == OK
    assert state.reboot_pending is reboots


@pytest.mark.parametrize("flavour", MAIN)
def test_no_sim_errors(flavour: str) -> None:
    state = make_state(flavour)
    run(state, "AT+CMEE=1")
    state.remove_sim()
    assert run(state, "AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"
    assert run(state, "AT+CIMI") == b"\r\n+CME ERROR: 10\r\n"
    assert run(state, "AT+CMGL=4") == b"\r\n+CMS ERROR: 310\r\n"
    assert state.store_deliver(make_pdu()) is None
    assert run(state, "AT+CSQ") == answer("+CSQ: 20,99")


def test_parse_flavours() -> None:
    assert parse_flavours("quectel, Huawei") == ("quectel", "huawei")
    assert parse_flavours(["telit"]) == ("telit",)
    assert parse_flavours("all") == tuple(FLAVOURS)
    with pytest.raises(ValueError, match="unknown modem flavour 'nokia'"):
        parse_flavours("quectel,nokia")
    with pytest.raises(ValueError, match="no modem flavour"):
        parse_flavours(" , ")
    assert get_flavour("SIMCOM").name == "simcom"


# ---------------------------------------------------------------- over real ptys


async def test_flavours_cycle_over_ports_with_their_boot_urcs(tmp_path: Path) -> None:
    async with ModemSimulator(6, tmp_path, flavours=MAIN, urc_interval=0, boot_delay=0) as sim:
        assert [port.flavour.name for port in sim.ports] == [*MAIN, "generic"]
        expected = {
            "quectel": [
                b"RDY",
                b"+CPIN: READY",
                b"+QUSIM: 1",
                b"+QIND: SMS DONE",
                b"+QIND: PB DONE",
            ],
            "simcom": [b"RDY", b"+CPIN: READY", b"SMS DONE", b"PB DONE"],
            "huawei": [b"^SIMST:1"],
        }
        for port in sim.ports:
            client = PtyClient(port.path)
            try:
                # boot URCs were written before the host opened the port: they wait for it
                before = await client.command("ATE0")
                assert lines_of(before) == [*expected.get(port.flavour.name, []), b"ATE0", b"OK"]
                reply = await client.command("AT+CGMM")
                assert lines_of(reply) == [port.flavour.model.encode(), b"OK"]
            finally:
                client.close()


async def test_simcom_sms_commands_fail_until_sms_done(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(
        1, tmp_path, flavours=["simcom"], boot_delay=1.0, on_event=events
    ) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.read_line("+CPIN: READY")
            assert sim.ports[0].state.booting
            assert await client.command("AT+CMGF=0") == b"AT+CMGF=0\r\r\n+CMS ERROR: 500\r\n"
            assert events.count(0, "sms-ready") == 0
            await client.read_line("SMS DONE")
            await client.read_line("PB DONE")
            assert await client.command("AT+CMGF=0") == b"AT+CMGF=0\r" + OK
        finally:
            client.close()


async def test_huawei_periodic_urcs_stop_after_curc_0(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(
        1, tmp_path, flavours=["huawei"], urc_interval=0.01, on_event=events
    ) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            for report in ("^BOOT:20358751,0,0,0,72", "^MODE:5,4", f"^RSSI:{port.state.rssi}"):
                await client.read_line(report)
            await client.read_until(re.compile(rb"\^DSFLOWRPT:[0-9A-F,]+\r\n"))
            await client.command("ATE0")
            await client.command("AT^CURC=0")
            client.take()
            ticks = events.count(0, "urc-tick")
            await events.wait(0, "urc-tick", ticks + 3)  # three silenced rounds
            assert lines_of(await client.command("AT")) == [b"OK"]
            assert b"^" not in client.take()
            assert port.urc_ticks >= ticks + 3
            assert await client.command("AT^CURC=1") == b"\r\n\r\nOK\r\n"
            await client.read_line("^MODE:5,4")
        finally:
            client.close()


async def test_huawei_announces_sms_only_after_portsel(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path, flavours=["huawei"], urc_interval=0) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.command("ATE0")
            sim.inject(0, "Telegram", "first")
            # inject writes synchronously, so a +CMTI would come before this answer
            assert lines_of(await client.command("AT")) == [b"OK"]
            assert lines_of(await client.command("AT^PORTSEL=1")) == [b"OK"]
            sim.inject(0, "Telegram", "second")
            match = await client.read_until(CMTI_RE)
            assert match.groups() == (b"SM", b"1")  # index base 0: the first one is in 0
            listing = lines_of(await client.command("AT+CMGL=4"))
            headers = [line for line in listing if line.startswith(b"+CMGL:")]
            assert [line.split(b",")[0] for line in headers] == [b"+CMGL: 0", b"+CMGL: 1"]
        finally:
            client.close()


async def test_quectel_announces_me_and_reboots_on_cfun_1_1(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, flavours=["quectel"], on_event=events) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await client.read_line("+QIND: PB DONE")
            await client.command("ATE0")
            sim.inject(0, "Telegram", "Your code is 424242")
            assert (await client.read_until(CMTI_RE)).groups() == (b"ME", b"1")
            assert await client.command("AT+CPMS?") == answer(
                '+CPMS: "ME",1,30,"ME",1,30,"ME",1,30'
            )
            await client.command('AT+CPMS="SM","SM","SM"')
            assert await client.command("AT+CFUN=1,1") == OK
            before = await client.read_line("+QIND: PB DONE")
            assert lines_of(before) == [b"RDY", b"+CPIN: READY", b"+QUSIM: 1", b"+QIND: SMS DONE"]
            await events.wait(0, "power-up", 2)
            assert await client.command("AT") == b"AT\r" + OK  # echo is back on
            assert await client.command("AT+CPMS?") == b"AT+CPMS?\r" + answer(
                '+CPMS: "ME",1,30,"ME",1,30,"ME",1,30'  # memories back to the default
            )
        finally:
            client.close()


async def test_telit_qss_urcs_on_sim_swap(tmp_path: Path) -> None:
    async with ModemSimulator(2, tmp_path, flavours=["telit"]) as sim:
        port = sim.ports[1]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            assert await client.command("AT#QSS=1") == OK
            old = port.iccid
            ident = sim.swap_sim(1)
            await client.read_line("#QSS: 0")
            await client.read_line("#QSS: 1")
            assert ident.iccid != old
            assert port.iccid == ident.iccid
            assert await client.command("AT#CCID") == answer(f"#CCID: {ident.iccid}")
        finally:
            client.close()
