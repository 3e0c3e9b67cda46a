"""Boot sequence of the simulated modems, the timers that drive it and the event hook.

:class:`ModemBoot` is the part of :class:`~muxd_sim.modem.ModemSimulator` that powers a
modem up (defaults and boot URCs, ``SMS ready`` after the boot delay, periodic URCs for
flavours that send them), runs callbacks later on per-port timers (cancelled when the
port reboots, vanishes or closes) or simulator-wide timers (cancelled on close), and
reports simulator events to the ``on_event`` hook.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from muxd_sim.modem_pty import PtyIO, SimPort

__all__ = ["ModemBoot"]

LOGGER = logging.getLogger("muxd_sim.modem")  # the whole simulator logs under one name


class ModemBoot(PtyIO):
    """Boot, timers and events of :class:`~muxd_sim.modem.ModemSimulator` (a mixin)."""

    boot_delay: float | None
    urc_interval: float | None
    on_event: Callable[[SimPort, str], None] | None
    _timers: set[asyncio.TimerHandle]

    # ------------------------------------------------------------------ timers, events

    def _port_timer(self, port: SimPort, delay: float, callback: Callable[[], None]) -> None:
        """``callback`` after ``delay`` s unless the port reboots, vanishes or closes first."""
        assert self._loop is not None

        def fire() -> None:
            port._timers.discard(handle)
            self._guarded(port, callback)

        handle = self._loop.call_later(delay, fire)
        port._timers.add(handle)

    def _sim_timer(
        self, port: SimPort, delay: float, callback: Callable[[], None]
    ) -> asyncio.TimerHandle:
        """``callback`` after ``delay`` s unless the simulator closes first."""
        assert self._loop is not None

        def fire() -> None:
            self._timers.discard(handle)
            self._guarded(port, callback)

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)
        return handle

    def _guarded(self, port: SimPort, callback: Callable[[], None]) -> None:
        if self._closed:
            return
        try:
            callback()
        except Exception as exc:
            LOGGER.exception("simulator callback failed on %s", port.name)
            self.errors.append(exc)

    def _event(self, port: SimPort, event: str) -> None:
        LOGGER.debug("%s: %s", port.name, event)
        if self.on_event is None:
            return
        try:
            self.on_event(port, event)
        except Exception as exc:
            LOGGER.exception("on_event hook failed on %s", port.name)
            self.errors.append(exc)

    # ------------------------------------------------------------------ boot

    def _boot_delay(self, port: SimPort) -> float:
        return self.boot_delay if self.boot_delay is not None else port.flavour.boot_delay

    def _power_up(self, port: SimPort) -> None:
        """Boot ``port``'s modem: defaults, boot URCs, SMS ready after the boot delay."""
        self._cancel_port_timers(port)
        port.power_ups += 1
        delay = self._boot_delay(port)
        self._emit(port, port.state.power_up(booting=delay > 0))
        self._await_sms_ready(port, delay)
        interval = self.urc_interval if self.urc_interval is not None else port.flavour.urc_interval
        if interval > 0 and port.flavour.periodic_urcs:
            # staggered so that hundreds of ports do not report in the same iteration
            self._port_timer(port, interval * port.rng.random(), lambda: self._tick(port, interval))
        self._event(port, "power-up")

    def _await_sms_ready(self, port: SimPort, delay: float) -> None:
        if delay > 0:
            self._port_timer(port, delay, lambda: self._sms_ready(port))
        else:
            self._sms_ready(port)

    def _sms_ready(self, port: SimPort) -> None:
        self._emit(port, port.state.sms_ready())
        self._event(port, "sms-ready")

    def _tick(self, port: SimPort, interval: float) -> None:
        port.urc_ticks += 1
        self._emit(port, port.state.periodic_urcs())
        self._event(port, "urc-tick")
        self._port_timer(port, interval, lambda: self._tick(port, interval))
