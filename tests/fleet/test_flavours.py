"""Every vendor flavour of the simulated modem, end to end over real ptys, no faults.

Per flavour: 4 ports of it, 12 SMS of the mix (6 stored before the daemon starts, in the
flavour's default memory; 6 after every port is ready). Every SMS comes out exactly once with the
right text and number, nothing is deleted before its commit, every memory ends empty.

The sweep interval is longer than the test: after the start-up sweep, SMS can only be found
through ``+CMTI``, so each flavour's notification set-up (``AT+CNMI``, Huawei ``AT^PORTSEL=1``)
is proven to work, not papered over by sweeps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from muxd_sim.modem_at import SET, CmsError
from muxd_sim.modem_commands import HANDLERS
from muxd_sim.modem_flavours import FLAVOURS
from muxd_sim.modem_state import SimModemState
from tests.fleet.harness import ALL_FLAVOURS, READY_TIMEOUT, FleetHarness

PORTS = 4
SMS_BEFORE = 6
SMS_AFTER = 6
NO_SWEEP = 120.0  # longer than the test: only the start-up sweep and +CMTI find SMS
HUAWEI_TICKS = 3  # silenced periodic-URC rounds observed per Huawei port after init


def _cnmi_lines(h: FleetHarness, index: int) -> list[str]:
    return [line for i, line in h.commands if i == index and line.upper().startswith("AT+CNMI")]


@pytest.mark.parametrize("flavour", ALL_FLAVOURS)
async def test_flavour_sms_exactly_once(flavour: str, tmp_path: Path) -> None:
    async with FleetHarness(
        tmp_path, PORTS, flavours=[flavour], sweep_interval=NO_SWEEP, autostart=False
    ) as h:
        before = h.inject_mix(SMS_BEFORE)
        default_mem = FLAVOURS[flavour].default_storage
        assert {r.mem for r in before} == {default_mem}
        h.start()
        await h.wait_ready()
        after = h.inject_mix(SMS_AFTER)
        assert {r.mem for r in after} == {"SM"}  # muxd's receive memory (mem3)
        await h.settle()

        # Every port got a +CNMI form accepted and announces new SMS now.
        for port in h.sim.ports:
            assert port.state.urcs_enabled, (port.name, port.state.cnmi)
            assert port.state.cnmi[:2] in ((2, 1), (1, 1)), port.state.cnmi
            assert _cnmi_lines(h, port.index), "no AT+CNMI sent"

        if flavour == "quectel":
            # Quectel stores in ME by default: the start-up sweep read (and emptied) ME.
            me = [d for d in h.deletes if d.mem in ("ME", "MT")]
            assert len(me) == sum(r.parts for r in before)
        if flavour == "huawei":
            await _check_huawei_silenced(h)
            # Index base 0: the first slot of every port was 0 and was read and deleted.
            assert {d.port for d in h.deletes if d.index == 0} == set(range(PORTS))
        if flavour == "telit":
            for port in h.sim.ports:
                assert port.state.qss == 1  # AT#QSS=1: SIM hot-swap reports on
                accepted = _cnmi_lines(h, port.index)[-1]
                # The first form muxd tries has <ds>=0, which Telit accepts: no fallback needed.
                assert accepted == "AT+CNMI=2,1,0,0,0", accepted
    assert h.journal_states() == {"delivered": len(h.injected)}


async def _check_huawei_silenced(h: FleetHarness) -> None:
    """AT^CURC=0 and AT^PORTSEL=1 on every port; afterwards no periodic URC is emitted."""
    for port in h.sim.ports:
        assert not port.state.curc, f"{port.name}: ^CURC still on"
        assert port.state.portsel == 1, f"{port.name}: +CMTI would go to the other port"

    def silenced_ticks(index: int) -> int:
        return sum(1 for t in h.ticks if t.port == index and t.after_silence)

    await h.until(
        lambda: all(silenced_ticks(i) >= HUAWEI_TICKS for i in range(PORTS)),
        timeout=READY_TIMEOUT,
        what=lambda: f"{HUAWEI_TICKS} URC rounds per port after ^CURC=0",
    )
    loud = [t for t in h.ticks if t.after_silence and t.emitted]
    assert not loud, f"^RSSI/^BOOT/^MODE still sent after AT^CURC=0: {loud[:3]}"


def _strict_cnmi(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """Firmware that takes only the short ``AT+CNMI=<mode>,<mt>`` form."""
    if form == SET and len(args) > 2:
        raise CmsError(303)
    return HANDLERS["+CNMI"](state, form, args)


async def test_cnmi_fallback_on_firmware_refusing_long_forms(tmp_path: Path) -> None:
    """The CNMI fallback chain itself: a Telit whose firmware refuses every form with more
    than two parameters ends up on ``AT+CNMI=2,1``, becomes ready and reports +CMTI."""
    telit = FLAVOURS["telit"]
    strict = replace(telit, handlers={**telit.handlers, "+CNMI": _strict_cnmi})
    async with FleetHarness(
        tmp_path, 2, flavours=["telit"], sweep_interval=NO_SWEEP, autostart=False
    ) as h:
        for port in h.sim.ports:
            port.state.flavour = strict
        h.start()
        await h.wait_ready()
        h.inject_mix(6)
        await h.settle()
        for port in h.sim.ports:
            sent = _cnmi_lines(h, port.index)
            assert sent[:3] == ["AT+CNMI=2,1,0,0,0", "AT+CNMI=2,1,0,0", "AT+CNMI=2,1"], sent
            assert port.state.cnmi[:2] == (2, 1)
