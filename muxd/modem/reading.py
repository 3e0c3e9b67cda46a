"""Taking SMS from a modem: storage (listing, reading, deleting) and routed SMS (+CMT).

Every PDU read is handed to the sink as a :class:`~muxd.ports.PartRead` in the name of the
SIM identified in the slot; the sink returns only once the part is durably journaled;
only then is it deleted (AT+CMGD), and only if no timeout came between the read and the
delete (the session's sync epoch did not move): otherwise the delete might act on an index
whose PDU was never read. A part the sink could not decode is read again once and deleted only
if the second read is byte-identical. A read that a SIM event straddles is neither stored nor
deleted. A +CMS ERROR from one memory or index skips it until a later sweep.

Routed SMS (+CMT): where the modem accepts AT+CSMS=1 it waits for our AT+CNMA, which is sent
only after the sink stored the SMS; where it refuses, indications stay in "store and notify"
mode (+CMTI) and a +CMT that comes anyway is stored at once (the modem acknowledged it itself).

The port counts its own SMS: when the sink says a part completed a message, the port's record
(``sms_received``, ``last_sms_at``) is updated here, by the port's own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from muxd.at import AtParseError, parse_cmgl_header
from muxd.errors import AtCommandError, SyncLostError
from muxd.log import PortLog
from muxd.modem.profiles import CNMI_FALLBACKS, Profile
from muxd.modem.session import CMGL_TIMEOUT, ModemSession, Response
from muxd.ports import PartRead, PartSink, PortInfo

# +CMS ERROR codes: 321 invalid memory index (an empty slot); 314 SIM busy; 302/303 operation
# not allowed/supported (a memory the modem won't use).
CMS_EMPTY_SLOT = 321
CMS_SIM_BUSY = 314
# A +CMS ERROR from one memory or index: skip it, and sweep again after this floor (not at once:
# a memory that always refuses must not be asked in a loop).
CMS_RETRY_FLOOR = 30.0
# A routed SMS (+CMT under AT+CSMS=1) must be acknowledged before the network's relay timer
# (TR2M, 12-20 s in 3GPP TS 24.011) runs out, or the modem reports the failure to the network
# (which delivers it again later) and turns routing off. Store and acknowledge within this.
CNMA_WITHIN = 10.0


class StorageReader:
    """The receive side of :class:`~muxd.modem.port.ModemPort` (which owns the state)."""

    info: PortInfo
    log: PortLog
    session: ModemSession
    profile: Profile
    memories: list[str]
    _sink: PartSink
    _wall: Callable[[], float]  # the wall clock: when a part was read
    _mem1: str | None
    _identity_due: bool
    _sweep_due: bool
    _routed: list[tuple[str, int | None, float, tuple[int, int]]]
    _identity_at: tuple[int, int] | None

    def _identity_current(self) -> bool:
        raise NotImplementedError

    def _window(self) -> tuple[int, int]:
        raise NotImplementedError

    _csms: bool
    _retry_at: float | None
    _refusals: set[tuple[str, int | None]]

    async def _set_cnmi(self) -> None:
        # Every form has mt=1: new SMS are stored and announced with +CMTI, never routed.
        for command in CNMI_FALLBACKS:
            try:
                await self.session.command(command)
                return
            except AtCommandError:
                continue
        self.log.warning("no +CNMI form accepted; relying on sweeps")

    async def _sms_service(self) -> bool:
        """AT+CSMS=1: a routed SMS is then acknowledged by us (AT+CNMA) after it is stored,
        not by the modem on arrival. True where the modem accepts it."""
        try:
            resp = await self.session.command("AT+CSMS=1")
        except AtCommandError:
            self.log.info("AT+CSMS=1 refused: SMS are stored by the modem, never routed")
            return False
        mt = (resp.first("+CSMS") or "").split(",")[0].strip()
        return mt == "1"

    async def _select(self, mem: str) -> None:
        if self._mem1 != mem:
            receive = self.profile.receive_memory
            self._mem1 = None  # unknown until answered (a timeout may still apply it)
            await self.session.command(f'AT+CPMS="{mem}","{mem}","{receive}"')
            self._mem1 = mem

    def _refused(self, what: str, exc: AtCommandError) -> None:
        """A +CMS ERROR from one memory or index: log it once, sweep again after a floor."""
        key = (what, exc.code)
        if key not in self._refusals:
            self._refusals.add(key)
            self.log.warning("%s refused (%s): skipped, retried by a later sweep", what, exc)
        retry = asyncio.get_running_loop().time() + CMS_RETRY_FLOOR
        self._retry_at = retry if self._retry_at is None else min(self._retry_at, retry)

    async def read_index(self, mem: str, index: int) -> None:
        if mem not in self.memories:
            # A memory we don't sweep (e.g. SR for status reports): trust storage, sweep all.
            self._sweep_due = True
            return
        try:
            await self._select(mem)
            resp = await self.session.command(f"AT+CMGR={index}")
        except AtCommandError as exc:
            if exc.code == CMS_SIM_BUSY:
                self._sweep_due = True
            elif exc.code != CMS_EMPTY_SLOT:
                self._refused(f"{mem} index {index}", exc)
            return
        if resp.interrupted_by is not None:
            self._straddled(resp)
            return
        for line in resp.lines:
            if line.line.startswith("+CMGR") and line.pdu:
                await self._store_and_delete(
                    mem, index, line.pdu, _cmgr_length(line.line), resp.epoch
                )

    def _straddled(self, resp: Response) -> None:
        # A SIM event came while the answer was on its way: it may be either SIM's, so it is
        # neither attributed (stored) nor deleted; storage is swept once the SIM is known.
        self.log.info("%s straddled %s: not stored, swept again", resp.command, resp.interrupted_by)
        self._sweep_due = True

    async def sweep(self) -> None:
        for mem in self.memories:
            if not self._identity_current():
                # Sync was lost since the SIM was identified: identify it again first.
                self._sweep_due = True
                return
            try:
                await self._select(mem)
                resp = await self.session.command("AT+CMGL=4", timeout=CMGL_TIMEOUT)
            except AtCommandError as exc:
                self._refused(f"{mem} listing", exc)
                continue
            if resp.interrupted_by is not None:
                self._straddled(resp)
                return
            for line in resp.lines:
                if not line.line.startswith("+CMGL") or not line.pdu:
                    continue
                try:
                    index, _stat, length = parse_cmgl_header(line.line)
                except AtParseError:
                    self.log.warning("bad listing line %r", line.line)
                    continue
                await self._store_and_delete(mem, index, line.pdu, length, resp.epoch)
                if self._routed:
                    await self._take_routed(before_check=True)

    async def _take_routed(self, *, before_check: bool = False) -> None:
        """Routed SMS (+CMT/+CDS): store, then acknowledge (AT+CNMA) where AT+CSMS=1 asked
        the modem to wait for us. Not stored (JournalError): not acknowledged either.

        A routed SMS has no storage to travel with: it is the SIM's that was in the slot when
        it arrived, i.e. the SIM identified in the event window it arrived in (see
        ``ModemPort._window``). Those that came in the window of the last identification are
        stored under it at once (before any check that may follow). One that came in a later
        window waits for a check in that window (``before_check``: return, the loop checks).
        One whose window closed before any check in it (a SIM event or a loss of sync came
        before its SIM was identified) belongs to a SIM muxd never identified: under
        AT+CSMS=1 it is not acknowledged, so the network delivers it again; without, the
        modem already acknowledged it and it is stored under the SIM identified last, with a
        warning (the only other choice is losing it)."""
        loop = asyncio.get_running_loop()
        while self._routed:
            pdu, length, arrived, window = self._routed[0]
            if window != self._identity_at:
                if window == self._window() and before_check:
                    return  # the loop identifies the SIM in this window first
                if window == self._window() and not self._identity_current():
                    return
                if self._csms and window != self._window():
                    self._routed.pop(0)
                    self.log.info("routed SMS of an unidentified SIM not acknowledged: resent")
                    continue
                if window != self._window():
                    self.log.warning(
                        "routed SMS of an unidentified SIM stored under %s", self.info.sim
                    )
            await self._store("CMT", -1, pdu, length)
            self._routed.pop(0)
            if not self._csms:
                continue  # the modem acknowledged it on arrival: storing it is all we can do
            late = loop.time() - arrived > CNMA_WITHIN
            try:
                await self.session.command("AT+CNMA")
            except AtCommandError as exc:
                # Past the network's timer the modem turned routing off (and the network will
                # deliver the SMS again: the journal knows it): set the indications again.
                self.log.warning(
                    "AT+CNMA refused (%s)%s; setting +CNMI again",
                    exc,
                    " after the network's timer" if late else "",
                )
                await self._set_cnmi()

    async def _store_and_delete(
        self, mem: str, index: int, pdu: str, tpdu_length: int | None, epoch: int
    ) -> None:
        # Durable first: the sink returns only after the journal committed the part.
        decodable = await self._store(mem, index, pdu, tpdu_length)
        if self._identity_due:
            # A SIM event came after this PDU was read: it is the old SIM's (the modem keeps
            # its output in order) and stored as such, but the index may now be the new SIM's.
            self.log.info("SIM event while reading: %s index %d stored, not deleted", mem, index)
            return
        try:
            if not decodable and not await self._same_again(mem, index, pdu, epoch):
                return
            # Tied to the read's epoch: not sent if any timeout came in between.
            await self.session.command(f"AT+CMGD={index}", epoch=epoch)
        except SyncLostError:
            self.log.info("sync lost since %s index %d was read: not deleted", mem, index)
            self._sweep_due = True
        except AtCommandError as exc:
            self._refused(f"{mem} index {index} delete", exc)

    async def _same_again(self, mem: str, index: int, pdu: str, epoch: int) -> bool:
        """An undecodable part is read a second time: True if byte-identical (a bad PDU, not a
        bad read); otherwise the second read is stored too and the index left for a sweep."""
        try:
            resp = await self.session.command(f"AT+CMGR={index}", epoch=epoch)
        except AtCommandError as exc:
            if exc.code != CMS_EMPTY_SLOT:
                self._refused(f"{mem} index {index}", exc)
            return False
        if resp.interrupted_by is not None:
            self._straddled(resp)
            return False
        again = next((i for i in resp.lines if i.line.startswith("+CMGR") and i.pdu), None)
        if again is None or again.pdu is None:
            return False
        if again.pdu == pdu:
            return True
        self.log.warning("%s index %d read differently twice: both kept, left", mem, index)
        await self._store(mem, index, again.pdu, _cmgr_length(again.line))
        return False

    async def _store(self, storage: str, index: int, pdu: str, tpdu_length: int | None) -> bool:
        """Hand one PDU to the sink in the name of the SIM identified now; returns once it is
        durable. True: it decodes (or was held already); False: read it again before deleting.
        A part that completes a message counts on this port."""
        info = self.info
        sim = info.sim
        # Reading starts only once a SIM is identified, and an identity is never unset.
        assert sim is not None
        part = PartRead(
            sim=sim,
            port=info.name,
            number=info.number,
            storage=storage,
            index=index,
            pdu=pdu,
            tpdu_length=tpdu_length,
            received_at=self._wall(),
        )
        stored = await self._sink(part)
        if stored.completed:
            info.sms_received += 1
            info.last_sms_at = part.received_at
        return stored.decodable


def _cmgr_length(line: str) -> int | None:
    """The TPDU length, the last field of a ``+CMGR: <stat>,[<alpha>],<length>`` header."""
    fields = line.rsplit(",", 1)
    length = fields[-1].strip() if len(fields) == 2 else ""
    return int(length) if length.isdigit() else None
