"""Every fault of the simulated modems, end to end over real ptys, on a fleet of every flavour.

8 ports, flavours cycling through all six. Each fault scenario injects SMS of the mix before,
during and after the fault and then requires: every SMS stored comes out exactly once with the
right text and number, nothing is deleted before its commit, every memory ends empty.

I/O faults (URCs inside responses, URCs/noise between a listing header and its PDU, output in
1-7 byte pieces, late answers, junk lines) are on every port for the whole first phase and
switched off for the last. Time-based faults hit ports 0-5 (one of each flavour) while ports 6
and 7 stay healthy: a hang in the middle of a command (the modem executes it, the answer never
comes), a USB re-enumeration, a full memory that refuses SMS until cleared. ``cnum_empty``
hides every own number from ``AT+CNUM``: the numbers file must provide them.

SMS that reach a hung or vanished modem are stored but never announced: they must still arrive
after the recovery (storage is the truth). Waits are on simulator events (``mute``, ``unmute``,
``vanish``, ``reappear``) and on the stand-in, never on sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from muxd_sim.modem import FaultPlan, Faults, SimPort
from tests.fleet.harness import READY_TIMEOUT, FleetHarness

PORTS = 8
FAULTY = range(6)  # one port of each flavour; 6 and 7 stay healthy
HANG_S = 1.0  # a hung modem answers nothing for this long (muxd's AT timeout is 5 s)
VANISH_S = 1.0  # a vanished port is back on a new pty after this long

IO_FAULTS: dict[str, FaultPlan] = {
    "urc_mid_response": FaultPlan(urc_mid_response=True),
    "mid_pdu": FaultPlan(urc_mid_response=True, mid_pdu=True, noise=0.05),
    "split_reads": FaultPlan(split_reads=True),
    "delay": FaultPlan(delay_s=0.05),
    "noise": FaultPlan(noise=0.1),
}


def _events(h: FleetHarness, event: str) -> set[int]:
    return {index for index, name in h.events if name == event}


async def _io_fault(tmp_path: Path, plan: FaultPlan) -> None:
    async with FleetHarness(tmp_path, PORTS, faults=plan, autostart=False) as h:
        assert h.sim.faulty == list(range(PORTS))
        h.inject_mix(PORTS)  # before the daemon: found by the start-up sweep
        h.start()
        await h.wait_ready()
        h.inject_mix(2 * PORTS)  # while the fault is on
        await h.settle()
        for port in h.sim.ports:
            port.faults = Faults()
        h.inject_mix(PORTS)  # after it
        await h.settle()


async def _hang(tmp_path: Path) -> None:
    async with FleetHarness(tmp_path, PORTS) as h:
        await h.wait_ready()
        armed = set(FAULTY)

        def hang_mid_command(port: SimPort, line: str) -> None:
            # The modem takes the command, then hangs: its answer is never sent.
            if port.index in armed and line.upper().startswith(("AT+CMGR", "AT+CMGD")):
                armed.discard(port.index)
                h.sim.mute_for(port.index, HANG_S)

        h.on_command(hang_mid_command)
        h.inject_mix(PORTS)  # muxd reads these: the first read hangs the modem
        await h.until(
            lambda: set(FAULTY) <= _events(h, "mute"),
            timeout=READY_TIMEOUT,
            what=lambda: f"ports {sorted(FAULTY)} hung (have {sorted(_events(h, 'mute'))})",
        )
        h.inject_mix(2 * PORTS)  # during the hang: no +CMTI from the hung ports
        await h.until(
            lambda: set(FAULTY) <= _events(h, "unmute"),
            timeout=READY_TIMEOUT,
            what="every hung port back",
        )
        h.inject_mix(PORTS)  # after it
        await h.settle()
        for index in FAULTY:
            info = h.info(index)
            session = h.daemon.fleet.sessions.get(info.path) if h.daemon.fleet else None
            timeouts = info.at_timeouts + (session.timeouts if session else 0)
            assert timeouts >= 1, f"port {index}: the hang never cost muxd a command"


async def _vanish(tmp_path: Path) -> None:
    async with FleetHarness(tmp_path, PORTS) as h:
        await h.wait_ready()
        h.inject_mix(PORTS)  # before: possibly still being read when the ports go
        for index in FAULTY:
            h.sim.vanish(index, VANISH_S)
        h.inject_mix(2 * PORTS)  # while gone: stored, never announced
        await h.until(
            lambda: set(FAULTY) <= _events(h, "reappear"),
            timeout=READY_TIMEOUT,
            what="every vanished port back",
        )
        h.inject_mix(PORTS)  # after it
        await h.settle()
        for index in FAULTY:
            assert h.sim.ports[index].power_ups == 2
        await h.until(
            lambda: all(h.ready(i) for i in range(PORTS)),
            timeout=READY_TIMEOUT,
            what="every port ready again",
        )


async def _storage_full(tmp_path: Path) -> None:
    async with FleetHarness(tmp_path, PORTS, autostart=False) as h:
        for index in FAULTY:
            h.sim.ports[index].faults.storage_full = True
        h.inject_mix(PORTS)  # before the daemon
        h.start()
        await h.wait_ready()
        h.inject_mix(2 * PORTS)  # while full: refused by ports 0-5
        await h.settle()
        refused = [r for r in h.injected if not r.complete]
        assert {r.port for r in refused} == set(FAULTY)
        assert len(refused) == h.sim.refused
        for index in FAULTY:
            h.sim.ports[index].faults.storage_full = False
        h.inject_mix(2 * PORTS)  # cleared: every port stores and reports again
        await h.settle()
        assert h.sim.refused == len(refused)


async def _cnum_empty(tmp_path: Path) -> None:
    plan = FaultPlan(cnum_empty=True)
    async with FleetHarness(tmp_path, PORTS, faults=plan, numbers="all", autostart=False) as h:
        h.inject_mix(PORTS)
        h.start()
        await h.wait_ready()  # every number listed: taken from the numbers file
        h.inject_mix(2 * PORTS)
        await h.settle()
        for port in h.sim.ports:
            info = h.info(port.index)
            assert (info.number, info.number_source) == (port.number, "file")


def _io(name: str) -> Callable[[Path], Awaitable[None]]:
    return lambda tmp_path: _io_fault(tmp_path, IO_FAULTS[name])


SCENARIOS: dict[str, Callable[[Path], Awaitable[None]]] = {
    **{name: _io(name) for name in IO_FAULTS},
    "hang": _hang,
    "vanish": _vanish,
    "storage_full": _storage_full,
    "cnum_empty": _cnum_empty,
}


@pytest.mark.parametrize("fault", SCENARIOS)
async def test_fault_sms_exactly_once(fault: str, tmp_path: Path) -> None:
    await SCENARIOS[fault](tmp_path)
