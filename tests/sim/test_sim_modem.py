"""Tests of the pseudo-terminal modem simulator (muxd_sim.modem and its helpers)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from muxd.pdu import EncodedPdu, SmsDeliver, decode_pdu, encode_deliver
from muxd_sim.modem import (
    LOAD_SENDERS,
    NETWORK_TZ,
    ModemSimulator,
    SimModemState,
    SimPort,
    encode_ahead,
    run_simulator,
    write_numbers_csv,
)
from muxd_sim.modem_ident import iccid_ef_hex, luhn_valid, make_identity

IO_TIMEOUT = 5.0  # seconds to wait for bytes from the simulator
SCTS = datetime(2024, 5, 17, 12, 30, 45, tzinfo=timezone(timedelta(hours=3)))
IMEI = "356092040000007"
IMSI = "250011234567890"
ICCID = "89701012345678901234"
NUMBER = "+79001234567"
OK = b"\r\nOK\r\n"
FINAL_RE = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")
CMTI_RE = re.compile(rb'\r\n\+CMTI: "SM",(\d+)\r\n')


def make_pdu(sender: str = "Telegram", text: str = "Your code is 123456") -> EncodedPdu:
    [pdu] = encode_deliver(sender, text, scts=SCTS)
    return pdu


def make_state(*, capacity: int = 30, index_base: int = 1, rssi: int = 20) -> SimModemState:
    state = SimModemState(
        imei=IMEI,
        imsi=IMSI,
        iccid=ICCID,
        number=NUMBER,
        capacity=capacity,
        index_base=index_base,
        rssi=rssi,
    )
    assert state.feed(b"ATE0\r") == b"ATE0\r" + OK
    return state


def answer(*lines: str) -> bytes:
    """A single command's response: its information lines (CRLF-separated), then OK."""
    body = ("\r\n" + "\r\n".join(lines) + "\r\n").encode() if lines else b""
    return body + OK


# ---------------------------------------------------------------- SimModemState


def test_echo_is_on_until_ate0() -> None:
    state = SimModemState()
    assert state.feed(b"AT\r") == b"AT\r" + OK
    assert state.feed(b"ATE0\r") == b"ATE0\r" + OK
    assert state.feed(b"AT\r") == OK
    assert state.feed(b"ATE1\r") == OK
    assert state.feed(b"AT\r") == b"AT\r" + OK


def test_atz_restores_power_up_profile() -> None:
    state = make_state()
    assert state.feed(b"AT+CMEE=1;+CMGF=1\r") == OK
    assert state.feed(b"ATZ\r") == OK
    assert (state.echo, state.cmee, state.cmgf) == (True, 0, 0)


def test_partial_command_fed_byte_by_byte() -> None:
    state = make_state()
    command = b"AT+CSQ\r"
    replies = [state.feed(command[k : k + 1]) for k in range(len(command))]
    assert replies[:-1] == [b""] * (len(command) - 1)
    assert replies[-1] == answer(f"+CSQ: {state.rssi},99")


def test_partial_command_echoed_as_it_arrives() -> None:
    state = SimModemState()
    assert state.feed(b"AT+CG") == b"AT+CG"
    assert state.feed(b"SN\r") == b"SN\r" + answer(state.imei)


def test_crlf_terminated_and_batched_commands() -> None:
    state = make_state()
    assert state.feed(b"AT\r\nAT+CIMI\r\n") == OK + answer(IMSI)
    assert state.feed(b"\r\n\r") == b""


def test_backspace_edits_the_line() -> None:
    state = make_state()
    assert state.feed(b"AT+CIMX\x08I\r") == answer(IMSI)


def test_non_at_lines_are_ignored() -> None:
    state = make_state()
    assert state.feed(b"hello\r") == b""
    assert list(state.commands)[-1] == "hello"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("AT", answer()),
        ("AT+CGSN", answer(IMEI)),
        ("AT+GSN", answer(IMEI)),
        ("AT+CIMI", answer(IMSI)),
        ("AT+CCID", answer(f"+CCID: {ICCID}")),
        ("AT+CRSM=176,12258,0,0,10", answer('+CRSM: 144,0,"98070121436587092143"')),
        ("AT+CRSM=176,12258,0,0,2", answer('+CRSM: 144,0,"9807"')),
        ("AT+CRSM=176,28480,0,0,10", answer("+CRSM: 106,130")),
        ("AT+CNUM", answer(f'+CNUM: "","{NUMBER}",145')),
        ("AT+CSQ", answer("+CSQ: 20,99")),
        ("AT+CREG?", answer("+CREG: 0,1")),
        ("AT+CGREG?", answer("+CGREG: 0,1")),
        ("AT+CEREG?", answer("+CEREG: 0,1")),
        ("AT+COPS?", answer('+COPS: 0,2,"25001",7')),
        ("AT+CGMI", answer("Quectel")),
        ("AT+CGMM", answer("EC25")),
        ("AT+CGMR", answer("Revision: EC25EFAR06A06M4G")),
        ("ATI", answer("Quectel", "EC25", "Revision: EC25EFAR06A06M4G")),
        ("AT+CPIN?", answer("+CPIN: READY")),
        ("AT+CMGF?", answer("+CMGF: 0")),
        ("AT+CMGF=0", answer()),
        ("AT+CPMS?", answer('+CPMS: "SM",0,30,"SM",0,30,"SM",0,30')),
        ('AT+CPMS="SM","SM","SM"', answer("+CPMS: 0,30,0,30,0,30")),
        ('AT+CPMS="SM"', answer("+CPMS: 0,30,0,30,0,30")),
        ('AT+CPMS="ME","ME","ME"', b"\r\n+CMS ERROR: 302\r\n"),
        ("AT+CNMI?", answer("+CNMI: 2,1,0,0,0")),
        ("AT+CMEE?", answer("+CMEE: 0")),
        ("AT+CSCS?", answer('+CSCS: "IRA"')),
        ("AT+CMGL=4", answer()),
        ("AT+CMGR=1", b"\r\n+CMS ERROR: 321\r\n"),
        ("AT+CMGR=31", b"\r\n+CMS ERROR: 321\r\n"),
        ("AT+CMGR=x", b"\r\n+CMS ERROR: 321\r\n"),
        ("AT+CMGD=1", answer()),
        ("AT+CMGD=0", b"\r\n+CMS ERROR: 321\r\n"),
        ("AT+FOO", b"\r\nERROR\r\n"),
        ("AT+CMEE=7", b"\r\nERROR\r\n"),
        ("AT#?", b"\r\nERROR\r\n"),
        ("ATE0V1Q0", answer()),
        ("at+cgsn", answer(IMEI)),
    ],
)
def test_command_answers(command: str, expected: bytes) -> None:
    state = make_state(rssi=20)
    assert state.feed(command.encode() + b"\r") == expected


def test_cnum_answers_bare_ok_without_stored_number() -> None:
    state = SimModemState(number=None)
    state.feed(b"ATE0\r")
    assert state.feed(b"AT+CNUM\r") == OK


def test_ef_iccid_of_19_digit_iccid_is_f_padded() -> None:
    assert iccid_ef_hex("8970101234567890123") == "980701214365870921F3"


def test_cme_error_reporting_follows_cmee() -> None:
    state = make_state()
    assert state.feed(b"AT+CMEE=1\r") == OK
    assert state.feed(b"AT+FOO\r") == b"\r\n+CME ERROR: 100\r\n"
    assert state.feed(b"AT+CMEE=2\r") == OK
    assert state.feed(b"AT+FOO\r") == b"\r\n+CME ERROR: unknown\r\n"
    assert state.feed(b"AT+CMGR=9\r") == b"\r\n+CMS ERROR: invalid memory index\r\n"


def test_error_stops_a_command_line() -> None:
    state = make_state()
    assert state.feed(b"AT+CGSN;+FOO;+CIMI\r") == f"\r\n{IMEI}\r\n".encode() + b"\r\nERROR\r\n"


def test_text_mode_refuses_sms_reads() -> None:
    state = make_state()
    state.store_deliver(make_pdu())
    assert state.feed(b"AT+CMGF=1\r") == OK
    assert state.feed(b"AT+CMGF?\r") == answer("+CMGF: 1")
    assert state.feed(b"AT+CMGR=1\r") == b"\r\n+CMS ERROR: 302\r\n"
    assert state.feed(b"AT+CMGL=4\r") == b"\r\n+CMS ERROR: 302\r\n"


def test_cnmi_is_stored_and_gates_cmti() -> None:
    state = make_state()
    assert state.urc_cmti(3) == b'\r\n+CMTI: "SM",3\r\n'
    assert state.cmti_if_enabled(3) == state.urc_cmti(3)
    assert state.feed(b"AT+CNMI=1,0,0,0,0\r") == OK
    assert state.feed(b"AT+CNMI?\r") == answer("+CNMI: 1,0,0,0,0")
    assert state.cmti_if_enabled(3) == b""
    assert state.feed(b"AT+CNMI=2,1\r") == OK
    assert state.cnmi == (2, 1, 0, 0, 0)
    state.drop_urcs = True
    assert state.cmti_if_enabled(3) == b""


def test_creg_and_cops_formats() -> None:
    state = make_state()
    assert state.feed(b"AT+CREG=2;+CREG?\r") == answer('+CREG: 2,1,"1B2C","0A3F51",7')
    assert state.feed(b"AT+COPS=3,0;+COPS?\r") == answer('+COPS: 0,0,"MTS RUS",7')
    state.reg_stat = 2
    assert state.feed(b"AT+COPS?\r") == answer("+COPS: 0")
    assert state.feed(b"AT+CREG=0;+CREG?\r") == answer("+CREG: 0,2")


def test_cmgr_returns_pdu_and_marks_read() -> None:
    state = make_state()
    pdu = make_pdu()
    assert state.store_deliver(pdu) == 1
    assert state.feed(b"AT+CMGR=1\r") == answer(f"+CMGR: 0,,{pdu.tpdu_length}", pdu.hex)
    assert state.slots[1].stat == 1
    assert state.feed(b"AT+CMGR=1\r") == answer(f"+CMGR: 1,,{pdu.tpdu_length}", pdu.hex)
    decoded = decode_pdu(pdu.hex, tpdu_length=pdu.tpdu_length)
    assert isinstance(decoded, SmsDeliver)
    assert (decoded.originator, decoded.text) == ("Telegram", "Your code is 123456")


def test_cmgl_lists_all_or_unread() -> None:
    state = make_state()
    first, second = make_pdu(text="one"), make_pdu(text="two")
    state.store_deliver(first)
    state.store_deliver(second)
    state.feed(b"AT+CMGR=1\r")
    assert state.feed(b"AT+CMGL=0\r") == answer(f"+CMGL: 2,0,,{second.tpdu_length}", second.hex)
    assert state.slots[2].stat == 1  # listing unread messages marks them read
    assert state.feed(b"AT+CMGL=0\r") == OK
    assert state.feed(b"AT+CMGL=4\r") == answer(
        f"+CMGL: 1,1,,{first.tpdu_length}",
        first.hex,
        f"+CMGL: 2,1,,{second.tpdu_length}",
        second.hex,
    )
    assert state.feed(b"AT+CMGL=9\r") == b"\r\n+CMS ERROR: 304\r\n"


def test_cmgd_deletes_records_history_and_calls_hook() -> None:
    state = make_state()
    pdus = [make_pdu(text=f"text {k}") for k in range(3)]
    for pdu in pdus:
        state.store_deliver(pdu)
    seen: list[tuple[int, str, bool]] = []
    state.on_delete = lambda index, pdu_hex: seen.append((index, pdu_hex, index in state.slots))
    assert state.feed(b"AT+CMGD=2\r") == OK
    assert sorted(state.slots) == [1, 3]
    assert state.feed(b"AT+CMGR=2\r") == b"\r\n+CMS ERROR: 321\r\n"
    assert state.feed(b"AT+CMGD=2\r") == OK  # deleting an empty slot is fine
    assert state.feed(b"AT+CMGD=1,4\r") == OK
    assert state.slots == {}
    expected = [(2, pdus[1].hex), (1, pdus[0].hex), (3, pdus[2].hex)]
    assert state.deleted == expected
    assert seen == [(index, pdu_hex, False) for index, pdu_hex in expected]
    assert state.feed(b"AT+CPMS?\r") == answer('+CPMS: "SM",0,30,"SM",0,30,"SM",0,30')


def test_cmgd_flag_1_deletes_only_read_messages() -> None:
    state = make_state()
    state.store_deliver(make_pdu(text="read"))
    state.store_deliver(make_pdu(text="unread"))
    state.feed(b"AT+CMGR=1\r")
    assert state.feed(b"AT+CMGD=1,1\r") == OK
    assert sorted(state.slots) == [2]


def test_full_storage_refuses_and_frees_a_slot_after_delete() -> None:
    state = make_state(capacity=2)
    pdu = make_pdu()
    assert [state.store_deliver(pdu) for _ in range(3)] == [1, 2, None]
    assert state.feed(b"AT+CPMS?\r") == answer('+CPMS: "SM",2,2,"SM",2,2,"SM",2,2')
    assert state.feed(b"AT+CMGD=1\r") == OK
    assert state.store_deliver(pdu) == 1


def test_zero_based_storage() -> None:
    state = make_state(index_base=0, capacity=2)
    pdu = make_pdu()
    assert [state.store_deliver(pdu) for _ in range(3)] == [0, 1, None]
    assert state.feed(b"AT+CMGR=0\r") == answer(f"+CMGR: 0,,{pdu.tpdu_length}", pdu.hex)
    assert state.feed(b"AT+CMGR=2\r") == b"\r\n+CMS ERROR: 321\r\n"


def test_mute_modem_answers_nothing() -> None:
    state = make_state()
    state.mute = True
    assert state.feed(b"AT\r") == b""
    assert not state.urcs_enabled
    state.mute = False
    assert state.feed(b"AT\r") == OK


def test_on_command_sees_every_line() -> None:
    state = make_state()
    lines: list[str] = []
    state.on_command = lines.append
    state.feed(b"AT+CSQ\rAT+CIMI\r")
    assert lines == ["AT+CSQ", "AT+CIMI"]


# ---------------------------------------------------------------- identities


def test_identities_are_valid_unique_and_deterministic() -> None:
    idents = [make_identity(7, index) for index in range(300)]
    assert idents == [make_identity(7, index) for index in range(300)]
    assert idents != [make_identity(8, index) for index in range(300)]
    for ident in idents:
        assert len(ident.imei) == 15
        assert luhn_valid(ident.imei)
        assert re.fullmatch(r"25001\d{10}", ident.imsi)
        assert re.fullmatch(r"8970101\d{12,13}", ident.iccid)
        assert luhn_valid(ident.iccid)
        assert re.fullmatch(r"\+7900\d{7}", ident.number)
        assert 0 <= ident.rssi <= 31
    for attr in ("imei", "imsi", "iccid", "number"):
        assert len({getattr(ident, attr) for ident in idents}) == len(idents), attr
    assert {len(ident.iccid) for ident in idents} == {19, 20}


def test_first_number_is_incremented_per_port() -> None:
    assert make_identity(0, 5, first_number="+79001000000").number == "+79001000005"
    with pytest.raises(ValueError, match="first_number"):
        make_identity(0, 0, first_number="79001000000")


# ---------------------------------------------------------------- over real ptys


class PtyClient:
    """The host side of one simulated port: plain os.open + a loop reader."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        self.buffer += data
        self.arrived.set()

    async def read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        """Wait for ``pattern`` in the received bytes; consume everything up to its end."""
        async with asyncio.timeout(IO_TIMEOUT):
            while (match := pattern.search(self.buffer)) is None:
                self.arrived.clear()
                await self.arrived.wait()
        matched = pattern.search(bytes(self.buffer[: match.end()]))
        del self.buffer[: match.end()]
        assert matched is not None
        return matched

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


RESPONSE_RE = re.compile(rb"^.*?" + FINAL_RE.pattern, re.DOTALL)


async def command(client: PtyClient, line: str) -> bytes:
    """Send one command line; return everything received up to its final result code."""
    os.write(client.fd, line.encode() + b"\r")
    return (await client.read_until(RESPONSE_RE)).group(0)


async def test_pty_echo_identity_and_symlinks(tmp_path: Path) -> None:
    async with ModemSimulator(3, tmp_path / "ports", seed=1) as sim:
        assert [port.name for port in sim.ports] == ["port000", "port001", "port002"]
        for port in sim.ports:
            assert port.path == tmp_path / "ports" / port.name
            assert os.readlink(port.path) == port.tty_name
            assert port.tty_name.startswith("/dev/")
        port = sim.ports[1]
        client = PtyClient(port.path)
        try:
            assert await command(client, "ATE0") == b"ATE0\r" + OK
            assert await command(client, "AT+CGSN") == answer(port.imei)
            assert await command(client, "AT+CIMI") == answer(port.imsi)
            assert await command(client, "AT+CCID") == answer(f"+CCID: {port.iccid}")
            assert await command(client, "AT+CNUM") == OK  # odd port: no number on the SIM
        finally:
            client.close()
        client = PtyClient(port.path)  # the pty survives the host closing and reopening it
        try:
            assert await command(client, "AT") == OK
        finally:
            client.close()
        even = PtyClient(sim.ports[2].path)
        try:
            assert await command(even, "AT+CNUM") == b"AT+CNUM\r" + answer(
                f'+CNUM: "","{sim.ports[2].number}",145'
            )
        finally:
            even.close()
    assert not any((tmp_path / "ports").iterdir())


async def test_stale_symlink_is_replaced_but_files_are_not(tmp_path: Path) -> None:
    (tmp_path / "port000").symlink_to("/dev/nonexistent")
    async with ModemSimulator(1, tmp_path) as sim:
        assert os.readlink(sim.ports[0].path) == sim.ports[0].tty_name
    (tmp_path / "port000").write_text("not a link")
    with pytest.raises(FileExistsError):
        async with ModemSimulator(1, tmp_path):
            pass


async def test_inject_cmti_cmgr_decodes_back(tmp_path: Path) -> None:
    log_path = tmp_path / "truth.jsonl"
    async with ModemSimulator(2, tmp_path / "ports", log_path=log_path) as sim:
        port = sim.ports[1]
        client = PtyClient(port.path)
        try:
            assert await command(client, "ATE0") == b"ATE0\r" + OK
            sms_id = sim.inject(1, "Telegram", "Ваш код 123456", scts=SCTS)
            index = int((await client.read_until(CMTI_RE)).group(1))
            reply = await command(client, f"AT+CMGR={index}")
            match = re.fullmatch(rb"\r\n\+CMGR: 0,,(\d+)\r\n([0-9A-F]+)\r\n" + OK, reply)
            assert match is not None, reply
            decoded = decode_pdu(match.group(2).decode(), tpdu_length=int(match.group(1)))
            assert isinstance(decoded, SmsDeliver)
            assert (decoded.originator, decoded.text, decoded.scts) == (
                "Telegram",
                "Ваш код 123456",
                SCTS,
            )
        finally:
            client.close()
    [record] = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert record["id"] == sms_id
    assert record["port"] == "port001"
    assert record["number"] == port.number
    assert (record["sender"], record["text"], record["parts"]) == ("Telegram", "Ваш код 123456", 1)
    assert record["indices"] == [index]
    assert record["stored"] is True
    assert isinstance(record["t"], float)


async def test_multipart_sms_gets_one_slot_and_cmti_per_part(tmp_path: Path) -> None:
    text = "Длинное сообщение " * 10
    async with ModemSimulator(1, tmp_path) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await command(client, "ATE0")
            sim.inject(0, "+79161234567", text)
            parts = len(encode_deliver("+79161234567", text, scts=SCTS))
            assert parts > 1
            indices = [int((await client.read_until(CMTI_RE)).group(1)) for _ in range(parts)]
            assert indices == list(range(1, parts + 1))
            listing = await command(client, "AT+CMGL=4")
            assert listing.count(b"+CMGL:") == parts
        finally:
            client.close()


async def test_cmgd_calls_on_delete_before_ok(tmp_path: Path) -> None:
    seen: list[tuple[str, int, str, bool, bytes]] = []
    client: PtyClient | None = None

    def on_delete(port: SimPort, index: int, pdu_hex: str) -> None:
        assert client is not None
        try:  # nothing may have been written to the host for this CMGD yet
            pending = os.read(client.fd, 4096)
        except BlockingIOError:
            pending = b""
        seen.append((port.name, index, pdu_hex, index in port.state.slots, pending))

    async with ModemSimulator(1, tmp_path, on_delete=on_delete) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await command(client, "ATE0")
            sim.inject(0, "Telegram", "Your code is 654321")
            index = int((await client.read_until(CMTI_RE)).group(1))
            pdu_hex = sim.ports[0].state.slots[index].pdu_hex
            assert seen == []
            assert await command(client, f"AT+CMGD={index}") == OK
        finally:
            client.close()
    assert seen == [("port000", index, pdu_hex, False, b"")]
    assert sim.ports[0].state.deleted == [(index, pdu_hex)]


async def test_failing_hook_is_reraised_on_exit(tmp_path: Path) -> None:
    def on_command(port: SimPort, line: str) -> None:
        raise RuntimeError(f"boom on {line}")

    sim = ModemSimulator(1, tmp_path, on_command=on_command)
    await sim.__aenter__()
    client = PtyClient(sim.ports[0].path)
    try:
        assert await command(client, "AT") == b"AT\r" + OK  # the modem still answers
    finally:
        client.close()
    with pytest.raises(RuntimeError, match="boom on AT"):
        await sim.__aexit__(None, None, None)
    assert len(sim.errors) == 1


async def test_drop_urcs_and_full_storage(tmp_path: Path) -> None:
    log_path = tmp_path / "truth.jsonl"
    async with ModemSimulator(1, tmp_path / "ports", log_path=log_path, capacity=2) as sim:
        client = PtyClient(sim.ports[0].path)
        try:
            await command(client, "ATE0")
            sim.ports[0].state.drop_urcs = True
            sim.inject(0, "Telegram", "Your code is 111111")
            assert await command(client, "AT") == OK  # no +CMTI before the answer
            sim.ports[0].state.drop_urcs = False
            sim.inject(0, "Telegram", "Your code is 222222")
            assert int((await client.read_until(CMTI_RE)).group(1)) == 2
            sim.inject(0, "Telegram", "Your code is 333333")
            assert await command(client, "AT") == OK  # storage full: nothing announced
        finally:
            client.close()
    assert (sim.injected, sim.refused) == (3, 1)
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert [(r["stored"], r["indices"]) for r in records] == [(True, [1]), (True, [2]), (False, [])]


async def test_run_load_injects_count_and_logs_each(tmp_path: Path) -> None:
    log_path = tmp_path / "truth.jsonl"
    async with ModemSimulator(4, tmp_path / "ports", log_path=log_path, seed=3) as sim:
        assert await sim.run_load(10_000.0, count=20) == 20
        used = sum(port.state.used for port in sim.ports)
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 20
    assert len({r["id"] for r in records}) == 20
    assert all(r["stored"] for r in records)
    assert used == sum(r["parts"] for r in records)
    assert {r["sender"] for r in records} == set(LOAD_SENDERS)
    texts = [r["text"] for r in records]
    assert any(t.startswith("Your code is ") for t in texts)
    assert any(t.startswith("Ваш код ") for t in texts)
    assert any("😀" in t for t in texts)
    for record in records:
        port = sim.ports[int(record["port"][4:])]
        assert record["number"] == port.number


async def test_run_load_duration_and_custom_texts(tmp_path: Path) -> None:
    async with ModemSimulator(2, tmp_path, capacity=100) as sim:
        injected = await sim.run_load(1000.0, duration=0.05, texts=["hi"])
        assert 1 <= injected <= 50
        with pytest.raises(ValueError, match="rate"):
            await sim.run_load(0.0, count=1)
        texts = {
            decode_pdu(slot.pdu_hex, tpdu_length=slot.tpdu_length).text  # type: ignore[union-attr]
            for port in sim.ports
            for slot in port.state.slots.values()
        }
        assert texts == {"hi"}


async def test_numbers_csv_covers_cnum_less_ports(tmp_path: Path) -> None:
    async with ModemSimulator(8, tmp_path / "ports") as sim:
        assert [port.number_in_cnum for port in sim.ports] == [True, False] * 4
        assert [port.state.number is not None for port in sim.ports] == [True, False] * 4
        csv_path = tmp_path / "numbers.csv"
        written = write_numbers_csv(sim, csv_path)
        assert [port.index for port in written] == [1, 3]
        with csv_path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        p1, p3 = sim.ports[1], sim.ports[3]
        assert rows == [
            ["iccid", "imsi", "number"],
            [p1.iccid, "", p1.number],
            ["", p3.imsi, p3.number],
        ]
    async with ModemSimulator(3, tmp_path / "ports", numbers_in_cnum=False) as sim:
        assert not any(port.number_in_cnum for port in sim.ports)
        assert len(write_numbers_csv(sim, csv_path, share=1.0)) == 3


async def test_run_simulator_prints_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_simulator(2, tmp_path / "ports", rate=500.0, duration=0.02)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"port000 -> /dev/\S+ number \+7900\d{7}", lines[0])
    assert lines[1].startswith("port001 -> ")
    assert not any((tmp_path / "ports").iterdir())


async def test_a_pre_encoded_sms_is_stored_as_the_simulator_would_encode_it(
    tmp_path: Path,
) -> None:
    when = datetime(2026, 12, 2, 15, 0, tzinfo=NETWORK_TZ)
    async with ModemSimulator(2, tmp_path, seed=3) as sim:
        text = "Your code 123456"
        ahead = encode_ahead("Bank", text, when)
        assert ahead is not None
        sim.inject(0, "Bank", text, scts=when)
        sim.inject(1, "Bank", text, scts=when, encoded=ahead)
        (a,) = sim.ports[0].state.receive_storage.values()
        (b,) = sim.ports[1].state.receive_storage.values()
        assert (a.pdu_hex, a.tpdu_length) == (b.pdu_hex, b.tpdu_length)
        assert (a.pdu_hex, a.tpdu_length) == (ahead.hex, ahead.tpdu_length)
        assert encode_ahead("Bank", "x" * 200, when) is None  # two parts: not ahead
        with pytest.raises(ValueError, match="scts"):
            sim.inject(1, "Bank", text, encoded=ahead)
