"""ModemSession over a fake modem transport, on virtual time."""

from __future__ import annotations

import asyncio

import pytest

from muxd.at import MARKERS, Urc
from muxd.at.sync import MARKER_TIMEOUT, RESYNC_ATTEMPTS, RESYNC_FLOOR
from muxd.errors import AtTimeoutError, ModemHungError, PortClosedError, SyncLostError
from muxd.modem.session import AT_TIMEOUT, ModemSession
from muxd_sim.clock import run_virtual

from .fakes import Chunker, FakeModem, ModemModel, answer, bytewise, whole

PDU = "07919761989901F0040B919701119905F80000211062320232210AC8329BFD065DDF72363904"
IMEI = "867530021234567"
CHUNKERS = pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])


def _make(
    chunker: Chunker = whole, model: ModemModel | None = None, latency: float = 0.0
) -> tuple[ModemSession, FakeModem, list[Urc]]:
    urcs: list[Urc] = []
    session = ModemSession("ttyFAKE", on_urc=urcs.append)
    modem = FakeModem(session, model, chunker=chunker, latency=latency)
    return session, modem, urcs


@CHUNKERS
def test_answers_whole_and_one_byte_at_a_time(chunker: Chunker) -> None:
    async def main() -> None:
        session, _modem, _ = _make(chunker, ModemModel(storage={"SM": {3: PDU}}))
        resp = await session.command("AT+CGSN")
        assert [i.line for i in resp.lines] == [IMEI]
        resp = await session.command("AT+CMGR=3")
        assert [(i.line, i.pdu) for i in resp.lines] == [(f"+CMGR: 0,,{len(PDU) // 2 - 1}", PDU)]

    run_virtual(main)


def test_fresh_session_proves_sync_before_its_first_command() -> None:
    """A reopened port may still carry the answer to the previous session's command."""

    async def main() -> None:
        session, modem, _ = _make(latency=0.01)
        stale = answer("+CMGR: 0,,38", PDU, "OK")
        asyncio.get_running_loop().call_later(0.005, modem.send, stale)
        resp = await session.command("AT+CGSN")
        assert [i.line for i in resp.lines] == [IMEI]
        assert modem.written == [MARKERS[0][0], "AT+CGSN"]

    run_virtual(main)


@CHUNKERS
def test_late_answer_is_not_taken_for_the_next_command(chunker: Chunker) -> None:
    async def main() -> None:
        session, modem, _ = _make(chunker)
        await session.command("AT+CSQ")
        modem.slow["AT+CGSN"] = AT_TIMEOUT + 1.0  # answered 1 s after its deadline
        with pytest.raises(AtTimeoutError):
            await session.command("AT+CGSN")
        resp = await session.command("AT+CIMI")
        assert [i.line for i in resp.lines] == [modem.model.imsi]
        assert session.epoch == 1
        assert session.synchronised
        assert session.discarded >= 2  # the late IMEI line and its OK

    run_virtual(main)


@CHUNKERS
def test_urc_inside_an_answer_goes_to_the_urc_handler(chunker: Chunker) -> None:
    async def main() -> None:
        session, modem, urcs = _make(chunker, ModemModel(storage={"SM": {3: PDU}}))
        modem.inject["AT+CMGR=3"] = answer('+CMTI: "SM",4')
        resp = await session.command("AT+CMGR=3")
        assert [i.pdu for i in resp.lines] == [PDU]
        assert [(u.name, u.args) for u in urcs] == [("+CMTI", '"SM",4')]

    run_virtual(main)


def test_port_closed_mid_command() -> None:
    async def main() -> None:
        session, modem, _ = _make()
        await session.command("AT+CSQ")
        modem.silent.add("AT+CGSN")
        task = asyncio.create_task(session.command("AT+CGSN"))
        while await modem.next_command() != "AT+CGSN":
            pass
        modem.abort()
        with pytest.raises(PortClosedError):
            await task
        assert session.closed.done()
        with pytest.raises(PortClosedError):
            await session.command("AT+CSQ")

    run_virtual(main)


def test_cancel_from_outside_leaves_the_session_unsynchronised() -> None:
    async def main() -> None:
        session, modem, _ = _make()
        await session.command("AT+CSQ")
        modem.slow["AT+CGSN"] = 2.0
        task = asyncio.create_task(session.command("AT+CGSN"))
        while await modem.next_command() != "AT+CGSN":
            pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        resp = await session.command("AT+CIMI")  # the IMEI answer arrives first
        assert [i.line for i in resp.lines] == [modem.model.imsi]
        assert session.epoch == 1

    run_virtual(main)


def test_answer_with_nothing_in_flight_is_dropped_and_costs_sync() -> None:
    async def main() -> None:
        session, modem, urcs = _make()
        await session.command("AT+CSQ")
        modem.send(answer("OK"))
        assert session.strays == 1
        assert not session.synchronised
        assert urcs == []
        written = len(modem.written)
        resp = await session.command("AT+CGSN")
        assert [i.line for i in resp.lines] == [IMEI]
        assert modem.written[written:] == [MARKERS[0][0], "AT+CGSN"]

    run_virtual(main)


def test_a_port_that_never_answers_is_hung_after_bounded_markers() -> None:
    async def main() -> None:
        session, modem, _ = _make()
        await session.command("AT+CSQ")
        modem.silent |= {"AT+CGSN", *(m for m, _ in MARKERS)}
        with pytest.raises(AtTimeoutError):
            await session.command("AT+CGSN")
        loop = asyncio.get_running_loop()
        started = loop.time()
        written = len(modem.written)
        with pytest.raises(ModemHungError):
            await session.command("AT+CIMI")
        markers = modem.written[written:]
        assert len(markers) == RESYNC_ATTEMPTS
        assert len(set(markers)) == RESYNC_ATTEMPTS  # a suspect marker is never reused
        assert loop.time() - started <= RESYNC_ATTEMPTS * (MARKER_TIMEOUT + RESYNC_FLOOR)
        assert "AT+CIMI" not in modem.written

    run_virtual(main)


def test_a_marker_that_timed_out_is_not_reused() -> None:
    async def main() -> None:
        session, modem, _ = _make()
        modem.slow[MARKERS[0][0]] = MARKER_TIMEOUT + 5.0
        resp = await session.command("AT+CGSN")
        assert [i.line for i in resp.lines] == [IMEI]
        assert modem.written == [MARKERS[0][0], MARKERS[1][0], "AT+CGSN"]

    run_virtual(main)


def test_command_tied_to_an_epoch_is_not_sent_after_a_loss() -> None:
    async def main() -> None:
        session, modem, _ = _make()
        read = await session.command("AT+CMGL=4")
        modem.slow["AT+CSQ"] = AT_TIMEOUT + 1.0
        with pytest.raises(AtTimeoutError):
            await session.command("AT+CSQ")
        with pytest.raises(SyncLostError):
            await session.command("AT+CMGD=1", epoch=read.epoch)
        assert "AT+CMGD=1" not in modem.written
        read = await session.command("AT+CMGL=4")  # a fresh read, in the new epoch
        await session.command("AT+CMGD=1", epoch=read.epoch)
        assert modem.written[-1] == "AT+CMGD=1"

    run_virtual(main)


def test_late_answer_while_idle_is_counted_and_never_attached() -> None:
    async def main() -> None:
        session, modem, urcs = _make()
        await session.command("AT+CSQ")
        modem.slow["AT+CGSN"] = AT_TIMEOUT + 1.0
        with pytest.raises(AtTimeoutError):
            await session.command("AT+CGSN")
        await asyncio.sleep(2.0)  # the late answer arrives with nothing in flight
        assert session.strays == 2  # the IMEI line and its OK
        assert [u.name for u in urcs] == [IMEI]  # passed on only as an unknown URC
        resp = await session.command("AT+CIMI")
        assert [i.line for i in resp.lines] == [modem.model.imsi]
        assert modem.written[-2:] == [MARKERS[0][0], "AT+CIMI"]

    run_virtual(main)
