"""ModemPort's receive path over a fake modem transport, on virtual time."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from muxd.at import MARKERS
from muxd.errors import AtTimeoutError, ModemHungError
from muxd.modem.port import JOURNAL_RETRY_MAX, ModemPort
from muxd.modem.reading import CMS_RETRY_FLOOR, CNMA_WITHIN
from muxd.modem.session import AT_TIMEOUT, ModemSession
from muxd.ports import PortInfo, PortStatus
from muxd_sim.clock import run_virtual

from .fakes import Chunker, FakeModem, ModemModel, RecordingSink, answer, bytewise
from .fakes import whole as whole_answers

PDU_A = "07919761989901F0040B919701119905F80000211062320232210AC8329BFD065DDF72363904"
PDU_B = "07919761989901F0040B919701119905F80000211062320262210AC8329BFD065DDF72363905"
CHUNKERS = pytest.mark.parametrize("chunker", [whole_answers, bytewise], ids=["whole", "bytewise"])


def _port(
    model: ModemModel,
    sink: RecordingSink,
    *,
    chunker: Chunker = whole_answers,
    latency: float = 0.0,
    memories: tuple[str, ...] = ("SM",),
    session: ModemSession | None = None,
) -> tuple[ModemPort, FakeModem]:
    info = PortInfo(name="ttyFAKE", path="/dev/ttyFAKE", iccid=model.iccid, imsi=model.imsi)
    ports: list[ModemPort] = []
    if session is None:
        session = ModemSession("ttyFAKE", on_urc=lambda urc: ports[0].on_urc(urc))
    modem = FakeModem(session, model, chunker=chunker, latency=latency)
    port = ModemPort(
        info, session, sink, numbers={}, sweep_interval=60.0, on_change=lambda _info: None
    )
    ports.append(port)
    port.memories = list(memories)
    return port, modem


def _deleted_only_what_was_stored(model: ModemModel, sink: RecordingSink) -> None:
    stored = {pdu for _, _, pdu in sink.stored}
    for mem, index, pdu in model.deleted:
        assert pdu in stored, f"{mem} index {index} deleted unread"


@CHUNKERS
def test_late_read_answer_never_leads_to_deleting_an_unread_index(chunker: Chunker) -> None:
    """AT+CMGR=1 answered after its deadline: the next read must not take that answer for
    index 2's, store it and delete index 2 unread."""

    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A, 2: PDU_B}})
        sink = RecordingSink()
        port, modem = _port(model, sink, chunker=chunker)
        modem.slow["AT+CMGR=1"] = AT_TIMEOUT + 0.2
        with pytest.raises(AtTimeoutError):
            await port.read_index("SM", 1)
        await port.read_index("SM", 2)
        _deleted_only_what_was_stored(model, sink)
        assert sink.stored == [("SM", 2, PDU_B)]
        assert model.deleted == [("SM", 2, PDU_B)]
        assert model.storage["SM"] == {1: PDU_A}  # never read, so still there

    run_virtual(main)


def test_undecodable_part_read_twice_identical_is_deleted() -> None:
    async def main() -> None:
        model = ModemModel(storage={"SM": {5: PDU_A}})
        sink = RecordingSink(undecodable={PDU_A})
        port, modem = _port(model, sink)
        await port.read_index("SM", 5)
        assert modem.written[-3:] == ["AT+CMGR=5", "AT+CMGR=5", "AT+CMGD=5"]
        assert sink.stored == [("SM", 5, PDU_A)]
        assert model.deleted == [("SM", 5, PDU_A)]

    run_virtual(main)


def test_undecodable_part_read_differently_is_stored_twice_and_kept() -> None:
    async def main() -> None:
        model = ModemModel(storage={"SM": {5: PDU_A}})
        sink = RecordingSink(undecodable={PDU_A})
        # The first read was corrupt: the modem holds PDU_B (what a second read returns).
        sink.on_store = lambda: model.storage["SM"].__setitem__(5, PDU_B)
        port, modem = _port(model, sink)
        await port.read_index("SM", 5)
        assert sink.stored == [("SM", 5, PDU_A), ("SM", 5, PDU_B)]
        assert "AT+CMGD=5" not in modem.written
        assert model.deleted == []

    run_virtual(main)


def test_read_straddling_a_sim_event_is_neither_stored_nor_deleted() -> None:
    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A}})
        sink = RecordingSink()
        port, modem = _port(model, sink)
        modem.inject["AT+CMGR=1"] = answer("+CPIN: NOT READY")
        await port.read_index("SM", 1)
        assert sink.stored == []
        assert model.deleted == []
        assert port._identity_due
        assert port._sweep_due

    run_virtual(main)


def test_sim_event_after_the_read_stores_under_the_old_sim_but_keeps_the_index() -> None:
    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A}})
        sink = RecordingSink()
        port, modem = _port(model, sink)
        sink.on_store = lambda: modem.send(answer("+CPIN: NOT READY"))
        await port.read_index("SM", 1)
        assert sink.stored == [("SM", 1, PDU_A)]
        assert model.deleted == []

    run_virtual(main)


def test_cms_error_from_one_memory_skips_it_and_sweeps_again_after_a_floor() -> None:
    async def main() -> None:
        model = ModemModel(storage={"ME": {}, "SM": {1: PDU_A}}, broken={"ME": "+CMS ERROR: 302"})
        sink = RecordingSink()
        port, _modem = _port(model, sink, memories=("ME", "SM"))
        await port.identify()  # a sweep reads only for a SIM identified since the last resync
        await port.sweep()  # must not raise
        assert sink.stored == [("SM", 1, PDU_A)]
        assert model.deleted == [("SM", 1, PDU_A)]
        now = asyncio.get_running_loop().time()
        assert port._retry_at is not None
        assert port._retry_at == pytest.approx(now + CMS_RETRY_FLOOR)

    run_virtual(main)


def test_cms_error_from_one_index_does_not_tear_the_port_down() -> None:
    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A}}, refuse={"AT+CMGR=1": "+CMS ERROR: 500"})
        sink = RecordingSink()
        port, _modem = _port(model, sink)
        await port.read_index("SM", 1)  # must not raise
        assert sink.stored == []
        assert port._retry_at is not None

    run_virtual(main)


def test_a_part_the_journal_refuses_backs_off_instead_of_looping() -> None:
    window = 60.0

    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A}})
        sink = RecordingSink(fail=True)
        port, _modem = _port(model, sink, latency=0.001)
        port._mem1 = "SM"
        task = asyncio.create_task(port.receive_loop())
        await asyncio.sleep(window)
        # 0.5 + 1 + 2 + 4 + 8 + 16 + 30 s of floors: 7 or 8 attempts in a minute.
        assert 2 <= sink.calls <= 9
        sink.fail = False
        await asyncio.sleep(JOURNAL_RETRY_MAX + 1.0)
        assert model.deleted == [("SM", 1, PDU_A)]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


async def _until_command(modem: FakeModem, command: str) -> None:
    while command not in modem.written:
        await modem.next_command()


@pytest.mark.parametrize("csms", [True, False], ids=["csms-accepted", "csms-refused"])
def test_routed_sms_is_stored_before_it_is_acknowledged(csms: bool) -> None:
    async def main() -> None:
        model = ModemModel(csms=csms)
        sink = RecordingSink()
        port, modem = _port(model, sink)
        stored_at: list[int] = []
        sink.on_store = lambda: stored_at.append(len(modem.written))
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        assert "AT+CSMS=1" in modem.written
        # Every +CNMI form asks for "store and notify" (mt=1): never routing.
        assert all(c.split("=")[1].split(",")[1] == "1" for c in modem.written if "CNMI" in c)
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        modem.send(answer("+CMT: ,38", PDU_A))
        if csms:
            await _until_command(modem, "AT+CNMA")
            assert loop.time() - arrived < CNMA_WITHIN
            assert stored_at
            assert "AT+CNMA" not in modem.written[: stored_at[0]]
        else:
            await asyncio.sleep(CNMA_WITHIN)
            assert "AT+CNMA" not in modem.written
        assert sink.stored == [("CMT", -1, PDU_A)]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


NEW_ICCID = "89701010000000000025"
NEW_IMSI = "250019999999999"


def test_routed_sms_before_a_sim_event_is_stored_under_the_sim_it_came_to() -> None:
    """+CMT then a SIM event (the SIM swapped right after the SMS reached it): the SMS is the
    old SIM's, stored before the identity check; one routed after the event is the new SIM's."""

    async def main() -> None:
        model = ModemModel()
        sink = RecordingSink()
        port, modem = _port(model, sink)
        old_sim = model.iccid
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        written = len(modem.written)
        model.iccid, model.imsi = NEW_ICCID, NEW_IMSI
        modem.send(answer("+CMT: ,38", PDU_A) + answer("+CPIN: READY") + answer("+CMT: ,38", PDU_B))
        while len(sink.stored) < 2:
            await modem.next_command()
        assert [pdu for _, _, pdu in sink.stored] == [PDU_A, PDU_B]
        assert sink.sims == [old_sim, NEW_ICCID]
        # The first was stored before the ICCID was read again, the second after.
        assert any(c in ("AT+CCID",) for c in modem.written[written:])
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_a_loss_of_sync_makes_the_next_read_check_the_sim_first() -> None:
    """A SIM event thrown away while resynchronising (taken for a late answer) must not let the
    new SIM's SMS go out under the old SIM: after any loss of sync the ICCID is read again
    before the next read, however recent the last check."""

    async def main() -> None:
        model = ModemModel(storage={"SM": {}})
        sink = RecordingSink()
        port, modem = _port(model, sink)
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        # A stray final result (no command in flight): the session loses sync.
        epoch = port.session.epoch
        modem.send(answer("OK"))
        async with asyncio.timeout(AT_TIMEOUT):  # virtual time: the marker follows at once
            while port.session.epoch == epoch:
                await modem.next_command()
        # The SIM was swapped meanwhile, and nothing said so. A new SMS is announced at once.
        model.iccid, model.imsi = NEW_ICCID, NEW_IMSI
        model.storage["SM"][3] = PDU_A
        modem.send(answer('+CMTI: "SM",3'))
        while not sink.stored:
            await modem.next_command()
        assert sink.sims == [NEW_ICCID]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_routed_sms_that_came_before_a_sim_event_is_stored_under_the_old_sim() -> None:
    """A +CMT, then a SIM event before the loop could store it: the SMS came to the SIM that
    was in the modem when it arrived (the modem keeps its output in order), so it is stored
    under that SIM, not under the one identified after the event."""

    async def main() -> None:
        model = ModemModel()
        sims: list[tuple[str, str | None]] = []
        sink = RecordingSink()
        port, modem = _port(model, sink)

        def on_store() -> None:
            sims.append((sink.stored[-1][0], port.info.iccid))

        sink.on_store = on_store
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        old = port.info.iccid
        assert old == model.iccid
        # Both arrive before the receive loop runs again; then the SIM is another one.
        modem.send(answer("+CMT: ,38", PDU_A))
        modem.send(answer("+CPIN: NOT READY"))
        model.iccid, model.imsi = "89701010000000000025", "250019999999999"
        while not sink.stored:
            await modem.next_command()
        assert sims == [("CMT", old)]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_a_reopened_port_is_not_fooled_by_the_late_markers_of_the_session_before() -> None:
    """A session hung (its command and its markers unanswered) and the port was reopened at
    once. The first marker of the new session is the same query as the old session's first:
    the old one's late answer must not pass for the new one's, or every answer after it
    belongs to the command before, and a delete follows a read of another index."""

    async def main() -> None:
        model = ModemModel(storage={"SM": {1: PDU_A, 2: PDU_B}})
        old = ModemSession("ttyFAKE", on_urc=lambda _urc: None, synchronised=True)
        old_modem = FakeModem(old, model)
        old_modem.silent |= {"AT+CGSN", *(m for m, _ in MARKERS)}
        with pytest.raises(AtTimeoutError):
            await old.command("AT+CGSN")
        with pytest.raises(ModemHungError):
            await old.command("AT+CIMI")
        old_modem.abort()
        ports: list[ModemPort] = []
        # Reopened (as the fleet does): what the old session may still receive is passed on.
        new = ModemSession(
            "ttyFAKE", on_urc=lambda urc: ports[0].on_urc(urc), suspects=old.outstanding
        )
        sink = RecordingSink()
        port, modem = _port(model, sink, latency=0.05, session=new)
        ports.append(port)
        port._mem1 = "SM"
        # The module is still busy: the new marker's answer comes a second late, and the old
        # session's first marker is answered after the new one was written.
        for marker, _prefix in MARKERS:
            modem.slow[marker] = 1.0
        modem.slow["AT+CMGR=1"] = 0.5
        asyncio.get_running_loop().call_later(0.1, modem.send, answer("+CMEE: 1", "OK"))
        for index in (1, 2):
            with contextlib.suppress(AtTimeoutError):
                await port.read_index("SM", index)
        await asyncio.sleep(AT_TIMEOUT)
        _deleted_only_what_was_stored(model, sink)
        assert set(sink.stored) <= {("SM", 1, PDU_A), ("SM", 2, PDU_B)}

    run_virtual(main)


def test_routed_sms_of_a_sim_never_identified_is_left_to_the_network() -> None:
    """SIM event, +CMT, SIM event again before the SIM could be identified: the SMS came to a
    SIM muxd never saw. Under AT+CSMS=1 it is not acknowledged (the network delivers it again
    to that SIM's subscriber), never stored under the wrong number."""

    async def main() -> None:
        model = ModemModel()
        sink = RecordingSink()
        port, modem = _port(model, sink)
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        written = len(modem.written)
        model.iccid, model.imsi = NEW_ICCID, NEW_IMSI
        modem.send(answer("+CPIN: READY") + answer("+CMT: ,38", PDU_A) + answer("+CPIN: READY"))
        async with asyncio.timeout(60):  # virtual time
            while "AT+CCID" not in modem.written[written:]:
                await modem.next_command()
            while not port._identity_current():
                await modem.next_command()
        await modem.next_command()
        assert sink.stored == []
        assert "AT+CNMA" not in modem.written[written:]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_an_identification_that_fails_half_way_takes_in_nothing() -> None:
    """A SIM swap, and the new SIM's identification times out after its ICCID was read (a late
    AT+CNUM): the new ICCID must never go out with the old SIM's number. Nothing is read until
    the new SIM is identified whole; then its SMS carry its own number."""

    async def main() -> None:
        model = ModemModel()
        sink = RecordingSink()
        port, modem = _port(model, sink)
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        assert port.info.number == model.number
        model.iccid, model.imsi, model.number = NEW_ICCID, NEW_IMSI, "+79005550000"
        modem.slow["AT+CNUM"] = AT_TIMEOUT + 0.2  # the next identification fails half-way
        model.storage["SM"][3] = PDU_A
        modem.send(answer("+CPIN: READY") + answer('+CMTI: "SM",3'))
        async with asyncio.timeout(120):  # virtual time
            while not sink.stored:
                await modem.next_command()
        assert sink.sims == [NEW_ICCID]
        assert sink.numbers == ["+79005550000"]
        assert "AT+CNUM" in modem.written  # it did fail once on the way
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_a_late_answer_during_init_starts_init_over_on_the_same_port() -> None:
    """A busy module answers one init command late: init starts over after the resync instead
    of failing the port (a reopen, and the fleet's backoff growing with each failed start)."""

    async def main() -> None:
        model = ModemModel()
        sink = RecordingSink()
        port, modem = _port(model, sink)
        modem.slow["AT+CGMM"] = AT_TIMEOUT + 0.2
        task = asyncio.create_task(port.run())
        async with asyncio.timeout(120):  # virtual time
            await _until_command(modem, "AT+CMGL=4")
        assert port.info.status is PortStatus.READY
        assert modem.written.count("AT+CGMM") == 2
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)


def test_a_routed_sms_after_a_silent_swap_is_stored_under_the_new_sim() -> None:
    """The SIM was swapped while the modem hung (its URCs lost) and muxd sent nothing meanwhile:
    a routed SMS arriving later is not stored under the identity of minutes ago: the SIM is
    checked first, as before any read."""

    async def main() -> None:
        model = ModemModel()
        sink = RecordingSink()
        port, modem = _port(model, sink)
        task = asyncio.create_task(port.run())
        await _until_command(modem, "AT+CMGL=4")
        await asyncio.sleep(30.0)  # virtual time: the last identification is old now
        model.iccid, model.imsi, model.number = NEW_ICCID, NEW_IMSI, "+79005550000"
        modem.send(answer("+CMT: ,38", PDU_A))
        async with asyncio.timeout(60):
            while not sink.stored:
                await modem.next_command()
        assert sink.sims == [NEW_ICCID]
        assert sink.numbers == ["+79005550000"]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run_virtual(main)
