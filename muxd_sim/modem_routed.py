"""Routed SMS delivery of the simulated modems: ``+CMT``, ``AT+CSMS`` and ``AT+CNMA``.

:class:`RoutedDelivery` is the part of :class:`~muxd_sim.modem.ModemSimulator` that plays
the network side of a modem that routes new SMS to the host instead of storing them
(``AT+CNMI=…,2,…``), or routes some of them whatever mt says (the ``routed`` /
``routed_nocsms`` faults: that share of the injected SMS is routed, class 0 style).

Each injected part joins the port's network queue (``SimPort._network``) and is delivered
one at a time while the modem can receive (not hung, not gone, SIM in, SMS ready):

* routing on, ``AT+CSMS=0`` (the power-up default; always with ``routed_nocsms``, whose
  modem refuses ``AT+CSMS=1``): ``+CMT: ,LEN`` + PDU is written and the modem acknowledges
  the SMS to the network itself: it exists only in that URC. The ``routed`` fault routes
  only once the host asked for acknowledged delivery (``AT+CSMS=1``); before that its SMS
  are stored (a modem that routes unacknowledged SMS loses them while no host reads the
  port, after a reboot or during a reopen: ``routed_nocsms`` shows that, and is not in
  the ``all`` preset);
* routing on, ``AT+CSMS=1``: ``+CMT`` is written and the next part waits until the host
  answers ``AT+CNMA`` within ``faults.cnma_timeout_s``. ``AT+CNMA=2`` (a refusal), no
  answer in time, a reboot or a vanishing port with the answer due: the modem reports a
  failure to the network and, as 27.005 prescribes, turns routing off (``+CNMI`` mt and ds
  set to 0); the network delivers the SMS again :attr:`~RoutedDelivery.redelivery_s`
  seconds later (:data:`REDELIVERY_S` by default), routed again if routing is on then
  (or the fault routes it), else stored like any new SMS (announced per ``+CNMI``: with
  mt=0, silently);
* routing off: the part is stored (``+CMTI`` per ``+CNMI``); a full memory makes the
  network try again :attr:`~RoutedDelivery.redelivery_s` seconds later.

Parts still with the network when their SIM is swapped out are logged as discarded.
"""

from __future__ import annotations

import logging
import time
from typing import IO

import orjson

from muxd_sim.modem_boot import ModemBoot
from muxd_sim.modem_pty import NetworkSms, SimPort

__all__ = ["REDELIVERY_S", "RoutedDelivery"]

LOGGER = logging.getLogger("muxd_sim.modem")  # the whole simulator logs under one name

REDELIVERY_S = 30.0  # seconds before the network retries an SMS the modem did not take


class RoutedDelivery(ModemBoot):
    """Routed SMS of :class:`~muxd_sim.modem.ModemSimulator` (a mixin, see the module doc)."""

    _slot_ids: dict[tuple[int, str, int], str]
    _log: IO[str] | None
    discarded: int
    redelivery_s: float = REDELIVERY_S

    def _send_to_network(self, port: SimPort, parts: list[NetworkSms]) -> None:
        port._network.extend(parts)
        self._deliver_routed(port)

    def _can_receive(self, port: SimPort) -> bool:
        state = port.state
        return not (
            port.master_fd < 0
            or port.vanished
            or state.faults.mute
            or not state.sim_present
            or state.booting
            or port._awaiting is not None
        )

    def _deliver_routed(self, port: SimPort) -> None:
        """Hand the network's queued parts to the modem while it can take them."""
        state = port.state
        while port._network and self._can_receive(port):
            sms = port._network.popleft()
            if sms.sim_generation != port.sim_generation:
                self._log_discarded(port, sms.sms_id, "sim-swap")
                continue
            # The routed fault routes only acknowledged delivery (after AT+CSMS=1): routing with
            # the power-up AT+CSMS=0 loses SMS whenever no host reads the port (a reboot, a port
            # reopening), which no daemon can prevent: that is routed_nocsms, kept apart.
            forced = sms.forced and (state.csms == 1 or state.faults.routed_nocsms > 0)
            if not (forced or state.routes_new_sms):
                if not self._store_from_network(port, sms):
                    return
                continue
            port.routed_sent += 1
            self._emit(port, state.urc_cmt(sms))
            if state.csms == 1:
                assert self._loop is not None
                port._awaiting = sms
                state.awaiting_cnma = True
                port._cnma_timer = self._loop.call_later(
                    state.faults.cnma_timeout_s, self._cnma_timeout, port
                )

    def _store_from_network(self, port: SimPort, sms: NetworkSms) -> bool:
        state = port.state
        slot = state.store_deliver(sms)
        if slot is None:  # memory full: the network tries again later (one retry at a time)
            port._network.appendleft(sms)
            if not port._network_retry:
                port._network_retry = True
                self._sim_timer(port, self.redelivery_s, lambda: self._retry_store(port))
            self._emit(port, state.storage_full_urc())
            return False
        mem = state.receive_mem
        self._slot_ids[(port.index, mem, slot)] = sms.sms_id
        self._emit(port, state.cmti_if_enabled(slot, mem) + state.storage_full_urc())
        return True

    def _retry_store(self, port: SimPort) -> None:
        port._network_retry = False
        self._deliver_routed(port)

    def _on_cnma(self, port: SimPort, accepted: bool) -> None:
        """``AT+CNMA`` (accepted) or ``AT+CNMA=2`` for the routed part awaiting it."""
        sms = port._awaiting
        if sms is None:
            return
        self._stop_cnma_timer(port)
        port._awaiting = None
        if accepted:
            port.cnma_acks += 1
            assert self._loop is not None
            self._loop.call_soon(self._deliver_routed, port)  # after the OK of AT+CNMA
        else:
            self._failed_delivery(port, sms, disable_routing=False)

    def _cnma_timeout(self, port: SimPort) -> None:
        port._cnma_timer = None
        sms = port._awaiting
        if sms is None:
            return
        port._awaiting = None
        port.state.awaiting_cnma = False
        port.cnma_timeouts += 1
        self._event(port, "cnma-timeout")
        wait = port.state.faults.cnma_timeout_s
        LOGGER.info("%s: no AT+CNMA in %.1f s, routing off", port.name, wait)
        self._failed_delivery(port, sms, disable_routing=True)

    def _failed_delivery(self, port: SimPort, sms: NetworkSms, *, disable_routing: bool) -> None:
        state = port.state
        if disable_routing:
            mode, _mt, bm, _ds, bfr = state.cnmi
            state.cnmi = (mode, 0, bm, 0, bfr)  # 27.005: the ME stops routing to the TE

        def again() -> None:
            port._network.appendleft(sms)
            self._event(port, "network-retry")
            self._deliver_routed(port)

        if not self._closed:
            self._sim_timer(port, self.redelivery_s, again)

    def _stop_cnma_timer(self, port: SimPort) -> None:
        if port._cnma_timer is not None:
            port._cnma_timer.cancel()
            port._cnma_timer = None

    def _abandon_ack(self, port: SimPort) -> None:
        """The modem reboots or goes away with an acknowledgement due: the network retries."""
        sms = port._awaiting
        self._stop_cnma_timer(port)
        port._awaiting = None
        port.state.awaiting_cnma = False
        if sms is not None:
            self._failed_delivery(port, sms, disable_routing=False)

    def _log_discarded(self, port: SimPort, sms_id: str, reason: str) -> None:
        self.discarded += 1
        if self._log is None:
            return
        record = {
            "event": "discarded",
            "id": sms_id,
            "t": time.time(),
            "port": port.name,
            "reason": reason,
            "parts": 1,
        }
        self._log.write(orjson.dumps(record).decode() + "\n")
        self._log.flush()

    # ------------------------------------------------------------------ lifecycle hooks

    def _power_up(self, port: SimPort) -> None:
        self._abandon_ack(port)
        super()._power_up(port)

    def _detach_pty(self, port: SimPort) -> None:
        self._abandon_ack(port)
        super()._detach_pty(port)

    def _sms_ready(self, port: SimPort) -> None:
        super()._sms_ready(port)
        self._deliver_routed(port)
