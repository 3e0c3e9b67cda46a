"""SIM swaps, end to end over real ptys: the new SIM's number replaces the old one upstream, and
SMS received after the swap are forwarded with the new number.

``test_swapped_sim_number_is_republished``: 8 ports, flavours cycling through all six. The SIMs
of one port of every flavour that reports SIM changes by URC (``+CPIN``, ``+QUSIM``, ``#QSS``)
are swapped; the other ports keep theirs. Even ports' new SIMs reveal their number in
``AT+CNUM``; the odd ports' new SIMs are in the operator's numbers file (as a SIM bank's
inventory would be).

``test_huawei_swap_is_noticed_before_reading``: a Huawei modem reports nothing on a swap once
muxd sent ``AT^CURC=0`` (it silences ``^SIMST`` along with the ``^RSSI`` flood), so the ICCID
is the only witness. A swap a couple of seconds after muxd last read it (within
``muxd.modem.port.IDENTITY_FRESH``) must neither give the new SIM's SMS the old SIM's number nor
leave the old number for sale. (Fails today: pins the bug reported with this suite.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from muxd.modem.port import IDENTITY_FRESH
from muxd_sim.modem import SimPort
from muxd_sim.modem_ident import make_identity
from tests.fleet.harness import READY_TIMEOUT, FleetHarness, Injected

PORTS = 8
SWAPPED = (0, 1, 2, 3, 5)  # generic, quectel, simcom, sim800, telit (4 is the Huawei)
SEED = 0
GAP = 0.3  # seconds without a SIM between removal and insertion
HUAWEI_PORTS = 2
SLOW_ANSWER = 0.3  # seconds the modem takes to answer, so that the swap lands mid-read
SLOW_SWEEP = IDENTITY_FRESH + 3.0  # sweeps far enough apart that each finds the ICCID check old


def _future_sims() -> list[tuple[str, str]]:
    """(ICCID, number) of the SIMs swap_sim will insert into the odd swapped ports."""
    rows = []
    for index in SWAPPED:
        if index % 2:
            ident = make_identity(SEED, index + 1 * PORTS)  # first swap: generation 1
            rows.append((ident.iccid, ident.number))
    return rows


def _inserted(h: FleetHarness) -> int:
    return sum(1 for _, event in h.events if event == "sim-inserted")


async def test_swapped_sim_number_is_republished(tmp_path: Path) -> None:
    async with FleetHarness(tmp_path, PORTS, seed=SEED, extra_numbers=_future_sims()) as h:
        await h.wait_ready()
        old = {i: h.sim.ports[i].number for i in SWAPPED}
        h.inject_mix(PORTS)
        await h.settle()  # the old SIMs' memories are empty: nothing leaves with them

        inserted = _inserted(h)
        new = {i: h.swap_sim(i, gap=GAP).number for i in SWAPPED}
        assert all(new[i] != old[i] for i in SWAPPED)
        await h.until(
            lambda: _inserted(h) - inserted == len(SWAPPED),
            timeout=READY_TIMEOUT,
            what="every new SIM inserted",
        )
        # Right after the swap, before muxd republished: must go out under the NEW number.
        early = h.inject_mix(len(SWAPPED), ports=SWAPPED)
        assert all(r.number == new[r.port] for r in early)

        wanted = h.numbers_now()
        assert set(new.values()) <= wanted
        await h.stub.wait_until(
            lambda: set(h.stub.numbers) == wanted,
            timeout=READY_TIMEOUT,
            what=lambda: f"numbers {sorted(wanted)} listed (have {sorted(h.stub.numbers)})",
        )
        assert not set(old.values()) & set(h.stub.numbers)

        h.inject_mix(2 * PORTS)  # after the republication
        await h.settle()
        for index in SWAPPED:
            info = h.info(index)
            assert (info.iccid, info.number) == (h.sim.ports[index].iccid, new[index])


async def test_huawei_swap_is_noticed_before_reading(tmp_path: Path) -> None:
    # Port 1's new SIM has no number in AT+CNUM: the numbers file knows it (first swap:
    # generation 1, see ModemSimulator.swap_sim).
    new_1 = make_identity(SEED, 1 + 1 * HUAWEI_PORTS)
    async with FleetHarness(
        tmp_path,
        HUAWEI_PORTS,
        flavours=["huawei"],
        seed=SEED,
        extra_numbers=[(new_1.iccid, new_1.number)],
    ) as h:
        await h.wait_ready()  # well under a second after muxd read the ICCIDs
        old = {i: h.sim.ports[i].number for i in (0, 1)}
        new = {i: h.swap_sim(i).number for i in (0, 1)}
        assert new[1] == new_1.number
        # Port 0: an SMS reaches the new SIM at once. Port 1: nothing happens on it.
        sms = h.inject(0, "Telegram", "code 424242 for the new SIM")
        assert sms.number == new[0]

        await h.stub.wait_until(
            lambda: any(m.message == sms.text for m in h.stub.messages),
            timeout=READY_TIMEOUT,
            what=lambda: f"{sms.text!r} forwarded",
        )
        (got,) = [m.number for m in h.stub.messages if m.message == sms.text]
        assert got == sms.number, f"the new SIM's SMS went out under the old SIM's number {got}"
        await h.settle()
        # Neither old number may stay for sale: both swaps must be noticed.
        await h.stub.wait_until(
            lambda: set(h.stub.numbers) == set(new.values()),
            timeout=READY_TIMEOUT,
            what=lambda: (
                f"{sorted(new.values())} listed instead of {sorted(old.values())}"
                f" (have {sorted(h.stub.numbers)})"
            ),
        )


async def test_swap_while_an_sms_is_being_read(tmp_path: Path) -> None:
    """The SIM is swapped while muxd reads an SMS (the modem answers late) and an SMS reaches
    the new SIM at once, into the same storage index. The SMS read before the swap keeps the
    old number; the new SIM's goes out under the new number; nothing is deleted from the new
    SIM in the old SIM's name (the old index now holds the new SIM's SMS)."""
    async with FleetHarness(tmp_path, 1, seed=SEED) as h:
        await h.wait_ready()
        port = h.sim.ports[0]
        loop = asyncio.get_running_loop()
        after: list[Injected] = []

        def swap_and_inject() -> None:
            h.swap_sim(0)
            after.append(h.inject(0, "Bank", "code 777 for the new SIM"))

        def on_read(_port: SimPort, line: str) -> None:
            if not after and line.upper().startswith("AT+CMGR"):
                loop.call_soon(swap_and_inject)

        h.on_command(on_read)
        port.faults.delay_s = SLOW_ANSWER
        before = h.inject(0, "Bank", "code 111 for the old SIM")
        await h.until(lambda: bool(after), timeout=READY_TIMEOUT, what="the swap")
        (late,) = after
        assert late.number != before.number
        await h.settle()
        got = {m.message: m.number for m in h.stub.messages}
        assert got == {before.text: before.number, late.text: late.number}


async def test_swap_while_the_modem_hung_is_noticed_before_the_sweep(tmp_path: Path) -> None:
    """A modem that reports swaps by URC hangs; meanwhile its SIM is swapped and an SMS reaches
    the new SIM: the URCs and the +CMTI are lost with the hang. The next periodic sweep (longer
    after the last ICCID check than ``IDENTITY_FRESH``) finds the SMS; muxd must ask whose SIM
    it is first."""
    async with FleetHarness(tmp_path, 1, seed=SEED, sweep_interval=SLOW_SWEEP) as h:
        await h.wait_ready()
        port = h.sim.ports[0]

        def sweeps() -> int:
            return sum(1 for _, line in h.commands if line.upper().startswith("AT+CMGL"))

        swept = sweeps()
        await h.until(lambda: sweeps() > swept, timeout=READY_TIMEOUT, what="a sweep")
        port.faults.mute = True  # everything the modem says now is lost
        ready = sum(1 for _, event in h.events if event == "sms-ready")
        h.swap_sim(0)
        await h.until(
            lambda: sum(1 for _, event in h.events if event == "sms-ready") > ready,
            timeout=READY_TIMEOUT,
            what="the new SIM ready",
        )
        sms = h.inject(0, "Bank", "code 999 found by the sweep")
        port.faults.mute = False
        await h.settle()
        (got,) = [m.number for m in h.stub.messages if m.message == sms.text]
        assert got == sms.number, f"the new SIM's SMS went out under the old number {got}"
