"""One modem port: init, identity, health and the receive path.

Receive path: +CMTI is a hint, storage is the truth. Every memory the modem offers (SM, ME)
is swept at start, periodically (jittered) and after storage-full or restart indications; how
a PDU is read, stored and deleted, and how routed SMS are taken, is in
:mod:`muxd.modem.reading`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

from muxd.at import (
    AtParseError,
    Urc,
    csq_to_dbm,
    parse_cmti,
    parse_cops,
    parse_creg,
    parse_csq,
)
from muxd.errors import (
    AtCommandError,
    AtTimeoutError,
    JournalError,
    PortClosedError,
)
from muxd.log import PortLog, mask_number
from muxd.modem.identity import (
    IccidCommand,
    own_number,
    read_iccid,
    read_mnc_length,
    read_plain,
)
from muxd.modem.profiles import BASE_INIT, SMS_INIT, Profile, select_profile
from muxd.modem.reading import StorageReader
from muxd.modem.session import ModemSession
from muxd.numbering import UssdQuery, calling_code, operator_code
from muxd.ports import PartSink, PortInfo, PortStatus

LOGGER = logging.getLogger(__name__)

# Health checks (signal, registration): every minute, jittered so 512 ports don't poll together.
HEALTH_INTERVAL = 60.0
# Re-read the ICCID this often to notice a SIM swapped without any URC.
IDENTITY_INTERVAL = 600.0
# Registration lost this long: toggle the radio (AT+CFUN=0 / 1), at most once per this period.
REGISTRATION_LOST_TOGGLE = 300.0
# This many command timeouts in a row: the modem is hung; close and reopen the port.
MAX_CONSECUTIVE_TIMEOUTS = 3
# Init (identity and health included) starts over on the same port after a timed-out command,
# this many times in all, before the port is closed and reopened.
INIT_ATTEMPTS = 3
# After a module restart SMS commands fail until its SMS stack is up (10-20 s on SIMCom).
SMS_READY_TIMEOUT = 60.0
SMS_READY_RETRY = 0.5
# Reading SMS is preceded by an ICCID check unless one was done this recently (a SIM swapped
# without any URC would otherwise have its SMS attributed to the previous SIM's number).
IDENTITY_FRESH = 5.0
# A radio toggle takes seconds on most modules; some need up to 15 s to answer AT+CFUN.
CFUN_TIMEOUT = 30.0
# After a SIM URC, give the SIM this long to become ready before re-identifying.
SIM_SETTLE = 2.0
# URCs saying storage is full: sweep now.
STORAGE_FULL_URCS = ("^SMSFULL", "+CIEV", "^SMMEMFULL", "+CMTI-FULL")
RESTART_URCS = ("RDY", "SMS Ready", "SMS DONE", "^BOOT")
# A part the journal refuses is retried after this delay, doubled per failure up to the cap
# (a part that always fails must not loop hot; intake pauses separately if the disk is gone).
JOURNAL_RETRY_MIN = 0.5
JOURNAL_RETRY_MAX = 30.0


class ModemPort(StorageReader):
    """Drives one opened session through init, identify and receive."""

    def __init__(
        self,
        info: PortInfo,
        session: ModemSession,
        sink: PartSink,
        *,
        numbers: Mapping[str, str],
        sweep_interval: float,
        on_change: Callable[[PortInfo], None],
        intake: asyncio.Event | None = None,
        ussd: Sequence[UssdQuery] = (),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.info = info
        self.log = PortLog(LOGGER, info)
        self.session = session
        self._sink = sink
        self._wall = wall
        self._numbers = numbers
        self._ussd = ussd
        self._sweep_interval = sweep_interval
        self._on_change = on_change
        # Cleared while the journal can't store: nothing is read, so nothing can be deleted.
        self._intake = intake or asyncio.Event()
        if intake is None:
            self._intake.set()
        self.profile: Profile = select_profile("", "")
        self.memories: list[str] = []
        self._mem1: str | None = None
        self._wake = asyncio.Event()
        self._hints: set[tuple[str, int]] = set()
        # Routed SMS not yet stored: (pdu, TPDU length, loop time of arrival).
        # Routed SMS not stored yet: (pdu, TPDU length, loop time it arrived, the event window it
        # arrived in: see _window). It belongs to the SIM identified in that same window.
        self._routed: list[tuple[str, int | None, float, tuple[int, int]]] = []
        self._sim_events = 0  # SIM URCs seen
        self._csms = False  # AT+CSMS=1 accepted: routed SMS wait for our AT+CNMA
        self._journal_backoff = 0.0
        self._retry_at: float | None = None  # a refused memory/index: sweep again then
        self._refusals: set[tuple[str, int | None]] = set()  # logged once each
        self._sweep_due = True
        self._identity_due = False
        self._identity_checked = 0.0  # loop time of the last ICCID check
        # The event window in which the SIM was last identified (None: not yet).
        self._identity_at: tuple[int, int] | None = None
        self._iccid_command: IccidCommand | None = None  # the one that worked, tried first
        self._timeouts_in_row = 0
        self._unregistered_since: float | None = None
        self._last_toggle = 0.0
        # A closed port must end the receive loop even while it waits for a hint.
        session.closed.add_done_callback(lambda _fut: self._wake.set())

    # -- URCs (called from data_received: must not raise, must not block) -----------------------

    def on_urc(self, urc: Urc) -> None:
        name = urc.name
        if name in ("+CMTI", "+CDSI"):
            try:
                self._hints.add(parse_cmti(urc.args))
            except AtParseError:
                self.log.warning("unusable %s, sweeping storage", urc.line)
                self._sweep_due = True
        elif name in ("+CMT", "+CDS") and urc.pdu:
            fields = urc.args.split(",")
            length = fields[-1].strip()
            arrived = asyncio.get_running_loop().time()
            if arrived - self._identity_checked > IDENTITY_FRESH:
                # An identity this old may be a swapped-out SIM's (a swap while the modem hung
                # loses its URCs): as for a read, whose SMS this is is checked first. A new
                # window: routed SMS that came before are stored under the old identity.
                self._sim_events += 1
            tpdu_length = int(length) if length.isdigit() else None
            self._routed.append((urc.pdu, tpdu_length, arrived, self._window()))
        elif name in ("+CREG", "+CEREG", "+CGREG"):
            try:
                _, stat = parse_creg(urc.line)
            except AtParseError:
                return
            self._set_registered(stat in (1, 5))
            return
        elif name in self.profile.sim_urcs and name not in RESTART_URCS:
            self._sim_events += 1
            self._identity_due = True
            # An answer in flight straddles the event: whose SIM it came from is unknown.
            self.session.flag_in_flight(name)
            self._sweep_due = True
        elif name in STORAGE_FULL_URCS or name in RESTART_URCS:
            self._sweep_due = True
        else:
            return
        self._wake.set()

    def _set_registered(self, registered: bool) -> None:
        if registered:
            self._unregistered_since = None
        elif self._unregistered_since is None:
            self._unregistered_since = time.monotonic()
        if registered != self.info.registered:
            self.info.unregistered_at = None if registered else time.monotonic()
            self.info.registered = registered
            self._on_change(self.info)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.info.status = PortStatus.INITIALIZING
        for attempt in range(1, INIT_ATTEMPTS + 1):
            try:
                await self.initialise()
                await self.identify()
                await self.check_health()
                break
            except AtTimeoutError as exc:
                # One late answer (a busy module) need not cost a reopen and the fleet's
                # growing backoff: the session resynchronises, init starts over on this port.
                # A modem that does not answer at all is hung (ModemHungError) and reopened.
                if attempt == INIT_ATTEMPTS:
                    raise
                self.log.info("init: %s; starting over (%d/%d)", exc, attempt, INIT_ATTEMPTS)
        self.info.status = PortStatus.READY
        self._on_change(self.info)
        self.log.info(
            "ready (%s) iccid=%s number=%s (%s)",
            self.profile.name,
            self.info.iccid,
            mask_number(self.info.number),
            self.info.number_source,
        )
        await self.receive_loop()

    async def _script(self, script: Sequence[tuple[str, bool]]) -> None:
        for command, required in script:
            try:
                await self.session.command(command)
            except AtCommandError:
                if required:
                    raise
                self.log.debug("optional %s refused", command)

    async def initialise(self) -> None:
        await self._script(BASE_INIT)
        manufacturer = model = ""
        try:
            manufacturer = " ".join(i.line for i in (await self.session.command("AT+CGMI")).lines)
            model = " ".join(i.line for i in (await self.session.command("AT+CGMM")).lines)
        except AtCommandError:
            pass
        self.profile = select_profile(manufacturer, model)
        self.info.model = f"{manufacturer} {model}".strip()[:60]
        await self._script(self.profile.init)
        await self._sms_init()
        self._csms = await self._sms_service()
        await self._setup_memories()
        await self._set_cnmi()

    async def _sms_init(self) -> None:
        """PDU mode, retried while the module is still booting (SIMCom answers +CMS ERROR 500
        until it prints SMS DONE / SMS Ready; Quectel until +QIND: SMS DONE)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SMS_READY_TIMEOUT
        while True:
            try:
                await self._script(SMS_INIT)
                return
            except AtCommandError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(SMS_READY_RETRY)

    async def _setup_memories(self) -> None:
        receive = self.profile.receive_memory
        self.memories = []
        for mem in self.profile.memories:
            try:
                # All three parameters explicitly: some firmware applies only the first.
                await self.session.command(f'AT+CPMS="{mem}","{mem}","{receive}"')
            except AtCommandError:
                continue
            self.memories.append(mem)
            self._mem1 = mem
        if not self.memories:
            raise AtCommandError("AT+CPMS", "ERROR", None, "no SMS memory accepted")

    async def identify(self) -> None:
        """Read the SIM's identity and own number. All of it is taken into ``info`` at once, at
        the end: a failure half-way (a late answer, a timeout) leaves the previous identity
        whole and the SIM unidentified in this window, so nothing is read until it succeeds
        (an ICCID taken in with the previous SIM's number would send the new SIM's SMS out
        under the old number)."""
        info = self.info
        session = self.session
        previous = info.sim
        window = self._window()
        imei = await read_plain(session, "AT+CGSN")
        imsi = await read_plain(session, "AT+CIMI")
        iccid, iccid_command = await read_iccid(session, self.profile.iccid)
        if (iccid or imsi) is None:
            raise AtCommandError("AT+CIMI", "ERROR", None, "no SIM identity (no SIM, or PIN?)")
        mnc_length = await read_mnc_length(session) if imsi else None
        operator = operator_code(imsi, mnc_length) if imsi else None
        number, number_source = await own_number(
            session,
            iccid=iccid,
            imsi=imsi,
            operator=operator,
            numbers=self._numbers,
            ussd=self._ussd,
        )
        info.imei, info.imsi, info.iccid = imei, imsi, iccid
        info.operator, info.number, info.number_source = operator, number, number_source
        info.country_id = calling_code(number) if number else None
        self._iccid_command = iccid_command
        self._identity_checked = asyncio.get_running_loop().time()
        self._identity_at = window
        if previous != info.sim or info.since is None:
            if previous is not None:
                self.log.warning("SIM changed %s -> %s", previous, info.sim)
            info.since = time.time()
        self._on_change(info)

    async def check_health(self) -> None:
        resp = await self.session.command("AT+CSQ")
        csq = resp.first("+CSQ")
        if csq is not None:
            try:
                self.info.signal_dbm = csq_to_dbm(parse_csq("+CSQ: " + csq)[0])
            except AtParseError:
                self.info.signal_dbm = None
        registered = False
        for command in ("AT+CREG?", "AT+CEREG?"):
            try:
                resp = await self.session.command(command)
            except AtCommandError:
                continue
            for line in resp.lines:
                try:
                    registered = registered or parse_creg(line.line)[1] in (1, 5)
                except AtParseError:
                    continue
            if registered:
                break
        self._set_registered(registered)
        try:
            resp = await self.session.command("AT+COPS?")
            self.info.network = parse_cops(resp.lines[0].line) if resp.lines else None
        except (AtCommandError, AtParseError):
            pass

    async def _maybe_toggle_radio(self) -> None:
        since = self._unregistered_since
        now = time.monotonic()
        if since is None or now - since < REGISTRATION_LOST_TOGGLE:
            return
        if now - self._last_toggle < REGISTRATION_LOST_TOGGLE:
            return
        self._last_toggle = now
        self.log.warning("not registered for %.0f s, toggling radio", now - since)
        try:
            await self.session.command("AT+CFUN=0", timeout=CFUN_TIMEOUT)
            await self.session.command("AT+CFUN=1", timeout=CFUN_TIMEOUT)
        except AtCommandError as exc:
            self.log.warning("radio toggle refused: %s", exc)

    # -- receive --------------------------------------------------------------------------------

    async def receive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        next_health = loop.time() + HEALTH_INTERVAL * random.uniform(0.5, 1.0)
        next_identity = loop.time() + IDENTITY_INTERVAL * random.uniform(0.5, 1.0)
        while True:
            if not self.session.is_open:
                raise PortClosedError(f"{self.info.name}: port closed")
            if not self._intake.is_set():
                self.log.warning("journal unavailable, intake paused")
                await self._intake.wait()
                self._sweep_due = True
            try:
                if self._routed:
                    # Top priority: a routed SMS exists only in memory until stored. Those that
                    # came before a pending SIM event are the current SIM's: stored before the
                    # check (the modem keeps its output in order); later ones wait for it.
                    await self._take_routed(before_check=True)
                # A periodic sweep reads too: a swap whose URCs were lost (a modem hung while
                # it happened) must be noticed before the new SIM's SMS are taken for the old.
                reading = bool(self._hints or self._routed or self._sweep_due)
                reading = reading or loop.time() >= next_sweep
                stale = loop.time() - self._identity_checked > IDENTITY_FRESH
                # A loss of sync since the last check: what was thrown away while resyncing may
                # have been the SIM event that says the SIM changed.
                stale = stale or not self._identity_current()
                if not self.profile.swap_urcs:
                    # Nothing tells us of a swap: ask before every read and every sweep (the
                    # sweeps also bound how long a swapped-out SIM's number stays published).
                    stale = True
                if self._identity_due or loop.time() >= next_identity or (reading and stale):
                    # Before reading, be sure whose SMS these are: a SIM swapped without a URC
                    # must not have its SMS attributed to the previous SIM's number.
                    await self._check_identity()
                    next_identity = loop.time() + IDENTITY_INTERVAL * random.uniform(0.8, 1.2)
                await self._take_routed()
                if self._sweep_due or loop.time() >= next_sweep:
                    self._sweep_due = False
                    await self.sweep()
                    next_sweep = loop.time() + self._sweep_interval * random.uniform(0.8, 1.2)
                if self._retry_at is not None:
                    next_sweep = min(next_sweep, self._retry_at)
                    self._retry_at = None
                while self._hints and not self._identity_due and self._identity_current():
                    # A SIM event stops the reading: hints that came after it may be the new
                    # SIM's, so the SIM is identified again first.
                    hint = min(self._hints)
                    self._hints.discard(hint)
                    await self.read_index(*hint)
                if loop.time() >= next_health:
                    await self.check_health()
                    await self._maybe_toggle_radio()
                    next_health = loop.time() + HEALTH_INTERVAL * random.uniform(0.8, 1.2)
                self._timeouts_in_row = 0
                if self._journal_backoff:
                    self.log.info("journal stores again")
                    self._journal_backoff = 0.0
            except JournalError as exc:
                # Not stored, so not deleted: the PDU stays on the SIM for the next sweep,
                # which waits a growing floor (a part that always fails must not loop hot).
                if not self._journal_backoff:
                    self.log.error("%s", exc)
                self._journal_backoff = min(
                    JOURNAL_RETRY_MAX, max(JOURNAL_RETRY_MIN, 2 * self._journal_backoff)
                )
                self._sweep_due = True
                await asyncio.sleep(self._journal_backoff)
                continue
            except AtTimeoutError:
                self._timeouts_in_row += 1
                if self._timeouts_in_row >= MAX_CONSECUTIVE_TIMEOUTS:
                    raise
                self._sweep_due = True
                continue
            if self._hints or self._sweep_due or self._routed or self._identity_due:
                continue
            self._wake.clear()
            # A timer that wakes the loop (cheaper per SMS than a timeout around the wait).
            alarm = loop.call_at(min(next_sweep, next_health, next_identity), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                alarm.cancel()

    def _window(self) -> tuple[int, int]:
        """The event window now: (SIM events seen, the session's sync epoch). A new window
        opens at each SIM event and at each loss of sync (what a resync throws away may have
        been a SIM event): the SIM in the slot can have changed only between windows."""
        return (self._sim_events, self.session.epoch)

    def _identity_current(self) -> bool:
        """The SIM was identified in the current window: it is the SIM in the slot."""
        return self._identity_at == self._window()

    async def _check_identity(self) -> None:
        if self._identity_due:
            self._identity_due = False
            await asyncio.sleep(SIM_SETTLE)
        before = (self.info.iccid, self.info.imsi)
        commands = self.profile.iccid
        if self._iccid_command is not None:
            commands = (self._iccid_command, *commands)
        window = self._window()
        iccid, used = await read_iccid(self.session, commands)
        if iccid == self.info.iccid and iccid is not None:
            self._identity_checked = asyncio.get_running_loop().time()
            self._identity_at = window
            self._iccid_command = used
            return
        if iccid is not None and self.info.number is not None:
            # Another SIM for sure: its number is not this one. Withdraw it now; the new
            # identity is taken in whole once identify() succeeds.
            self.info.number, self.info.country_id = None, None
            self._on_change(self.info)
        await self.identify()
        if (self.info.iccid, self.info.imsi) != before:
            self._sweep_due = True
