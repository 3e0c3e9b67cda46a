"""Time-based faults of the modem simulator and their scheduling: hangs, vanishings, swaps.

:class:`ModemChaos` is the part of :class:`~muxd_sim.modem.ModemSimulator` that hangs a
port for a while (``mute_for``), re-enumerates it on a new pty (``vanish``), puts a
different SIM into it (``swap_sim``), picks the seeded share of ports that get the
:class:`~muxd_sim.modem_faults.FaultPlan` and schedules the plan's hangs, vanishings and
SIM swaps on them at exponentially distributed intervals.
"""

from __future__ import annotations

import asyncio
import math
import random

from muxd_sim.modem_boot import ModemBoot
from muxd_sim.modem_faults import FaultPlan
from muxd_sim.modem_ident import ModemIdentity, make_identity
from muxd_sim.modem_inject import SmsInjector
from muxd_sim.modem_pty import SimPort

__all__ = ["ModemChaos"]


class ModemChaos(SmsInjector, ModemBoot):
    """Time-based faults of :class:`~muxd_sim.modem.ModemSimulator` (a mixin)."""

    n_ports: int
    seed: int
    first_number: str | None
    fault_plan: FaultPlan | None
    fault_share: float
    faulty: list[int]

    # ------------------------------------------------------------------ fault plan

    def _choose_faulty(self) -> list[int]:
        if self.fault_plan is None or self.fault_share <= 0:
            return []
        count = min(self.n_ports, math.ceil(self.fault_share * self.n_ports))
        chooser = random.Random(f"muxd-sim-faults:{self.seed}")
        return sorted(chooser.sample(range(self.n_ports), count))

    def _schedule_plan(self) -> None:
        """Schedule the fault plan's hangs, vanishings and SIM swaps on the faulty ports."""
        plan = self.fault_plan
        if plan is not None and plan.scheduled:
            for index in self.faulty:
                port = self.ports[index]
                for kind, mean in (
                    ("hang", plan.hang_every),
                    ("vanish", plan.vanish_every),
                    ("swap", plan.swap_every),
                ):
                    if mean > 0:
                        self._schedule_chaos(port, kind, mean)

    def _schedule_chaos(self, port: SimPort, kind: str, mean: float) -> None:
        self._sim_timer(
            port, port.rng.expovariate(1.0 / mean), lambda: self._chaos(port, kind, mean)
        )

    def _chaos(self, port: SimPort, kind: str, mean: float) -> None:
        plan = self.fault_plan
        assert plan is not None
        if kind == "hang":
            self.mute_for(port.index, plan.hang_s)
        elif kind == "vanish":
            if not port.vanished:
                self.vanish(port.index, plan.vanish_s)
        else:
            self.swap_sim(port.index)
        self._schedule_chaos(port, kind, mean)

    # ------------------------------------------------------------------ time-based faults

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._closed:
            raise RuntimeError("simulator not running")
        return self._loop

    def mute_for(self, port_index: int, seconds: float) -> None:
        """Hang port ``port_index`` for ``seconds``: input dropped, nothing sent, then back.

        Calling it again while hung restarts the countdown. ``port.faults.mute`` is the
        same switch without the timer.
        """
        self._started()
        port = self.ports[port_index]
        port.faults.mute = True
        if port._unmute is not None:
            port._unmute.cancel()

        def unmute() -> None:
            port._unmute = None
            port.faults.mute = False
            self._event(port, "unmute")
            self._deliver_routed(port)  # what the network kept for the hung modem

        port._unmute = self._sim_timer(port, seconds, unmute)
        self._event(port, "mute")

    def vanish(self, port_index: int, seconds: float) -> None:
        """USB re-enumeration: the port disappears for ``seconds``, then comes back anew.

        Now: the symlink is removed and both pty ends are closed (the host gets EIO /
        hangup); queued output and timers are dropped. After ``seconds``: a new pty
        (never the same ``/dev/pts/N``) behind the same symlink, a freshly booted modem
        (echo on, defaults, boot URCs) with the same IMEI, SIM and stored messages.
        SMS injected meanwhile are stored but not announced.
        """
        self._started()
        port = self.ports[port_index]
        if port.vanished:
            raise RuntimeError(f"{port.name} has already vanished")
        self._detach_pty(port)
        port.vanished = True
        self._event(port, "vanish")
        self._sim_timer(port, seconds, lambda: self._reappear(port))

    def _reappear(self, port: SimPort) -> None:
        self._attach_pty(port, avoid=port.tty_name)
        port.vanished = False
        self._power_up(port)
        self._event(port, "reappear")

    def swap_sim(
        self, port_index: int, new_identity: ModemIdentity | None = None, *, gap: float = 0.0
    ) -> ModemIdentity:
        """Put a different SIM into port ``port_index``; return its identity.

        The new IMSI/ICCID/number is ``new_identity`` or derived deterministically from
        ``(seed, index, swap count)``; the IMEI (the modem's) stays. The SIM memory
        (``SM``) is emptied; ``ME`` is modem memory and keeps its messages. The flavour's
        removal URCs are sent now, the insertion URCs after ``gap`` seconds (meanwhile
        SIM commands answer ``+CME ERROR: 10`` and SMS commands ``+CMS ERROR: 310``),
        then the ready URCs after the boot delay.
        """
        self._started()
        port = self.ports[port_index]
        port.sim_generation += 1
        if new_identity is None:
            new_identity = make_identity(
                self.seed,
                port_index + port.sim_generation * self.n_ports,
                first_number=self.first_number,
            )
        ident = new_identity
        self._emit(port, port.state.remove_sim())
        self._event(port, "sim-removed")
        if gap > 0:
            generation = port.sim_generation
            self._sim_timer(port, gap, lambda: self._insert_sim(port, ident, generation))
        else:
            self._insert_sim(port, ident, port.sim_generation)
        return ident

    def _insert_sim(self, port: SimPort, ident: ModemIdentity, generation: int) -> None:
        if generation != port.sim_generation:
            return  # swapped again during the gap: that SIM never made it in
        self._discard_sim_messages(port)
        delay = self._boot_delay(port)
        self._emit(
            port,
            port.state.insert_sim(
                imsi=ident.imsi,
                iccid=ident.iccid,
                number=ident.number if port.number_in_cnum else None,
                booting=delay > 0,
            ),
        )
        port.imsi, port.iccid, port.number = ident.imsi, ident.iccid, ident.number
        self._await_sms_ready(port, delay)
        self._event(port, "sim-inserted")
