"""One modem port: init script, identity, and the receive path.

Receive path (DESIGN.md §3): +CMTI is a hint, storage is the truth. Each PDU read from storage is
handed to the sink, which returns only once the part is durably journaled; only then is it
deleted from the SIM. A sink failure leaves the PDU on the SIM (it is read again later).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from muxd.at import Urc
from muxd.errors import AtCommandError, JournalError, PortClosedError
from muxd.modem.session import CMGL_TIMEOUT, ModemSession
from muxd.numbering import calling_code, normalise_number, operator_code

LOGGER = logging.getLogger(__name__)

# Health checks (signal, registration): every minute, jittered so 512 ports don't poll together.
HEALTH_INTERVAL = 60.0
# +CMS ERROR 321: invalid memory index (an empty slot); 314: SIM busy (try again later).
CMS_EMPTY_SLOT = 321
CMS_SIM_BUSY = 314

# The init script as data: (command, required). Optional commands may fail on some firmware.
INIT_SCRIPT: tuple[tuple[str, bool], ...] = (
    ("ATE0", True),
    ("AT+CMEE=1", False),
    ("AT+CMGF=0", True),
    ('AT+CPMS="SM","SM","SM"', True),
    ("AT+CNMI=2,1,0,0,0", False),
)


class PortStatus(enum.Enum):
    OPENING = "opening"
    INITIALIZING = "initializing"
    READY = "ready"
    BACKOFF = "backoff"
    GONE = "gone"


@dataclass
class PortInfo:
    """What the fleet knows about one port; owned and mutated by that port's supervisor only."""

    name: str
    path: str
    status: PortStatus = PortStatus.OPENING
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    number: str | None = None
    operator: int | None = None
    country_id: int | None = None
    registered: bool = False
    signal_dbm: int | None = None
    sms_received: int = 0
    last_sms_at: float | None = None
    since: float | None = None  # when this SIM came up in this port (date_start)
    at_timeouts: int = 0
    resyncs: int = 0
    last_error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def sim(self) -> str | None:
        """The SIM identity used to key stored parts."""
        return self.iccid or self.imsi

    @property
    def sellable(self) -> bool:
        return (
            self.status is PortStatus.READY
            and self.registered
            and self.number is not None
            and self.country_id is not None
        )


# sink(port, storage, index, pdu_hex, tpdu_length): returns once the part is durable.
PartSink = Callable[[PortInfo, str, int, str, int | None], Awaitable[None]]


def _args(line: str) -> list[str]:
    _, _, rest = line.partition(":")
    return [a.strip().strip('"') for a in rest.split(",")]


def _first_digits(resp_lines: list[str]) -> str | None:
    for line in resp_lines:
        text = line.split(":", 1)[-1].strip().strip('"')
        if text.isdigit():
            return text
    return None


def _swap_nibbles(hexstr: str) -> str:
    out = "".join(hexstr[i + 1] + hexstr[i] for i in range(0, len(hexstr) - 1, 2))
    return out.rstrip("Ff")


class ModemPort:
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
    ) -> None:
        # Cleared while the journal can't store: nothing is read, so nothing can be deleted.
        self._intake = intake or asyncio.Event()
        if intake is None:
            self._intake.set()
        self.info = info
        self.session = session
        self._sink = sink
        self._numbers = numbers
        self._sweep_interval = sweep_interval
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._hints: set[int] = set()
        self._sweep_due = True
        # A closed port must end the receive loop even while it waits for a hint.
        session.closed.add_done_callback(lambda _fut: self._wake.set())

    # -- URCs (called from data_received: must not raise, must not block) -----------------------

    def on_urc(self, urc: Urc) -> None:
        if urc.name in ("+CMTI", "+CDSI"):
            args = _args(urc.line)
            if len(args) >= 2 and args[1].lstrip("-").isdigit() and int(args[1]) >= 0:
                self._hints.add(int(args[1]))
            else:
                LOGGER.warning("%s: unusable %s, sweeping storage", self.info.name, urc.line)
                self._sweep_due = True
            self._wake.set()
        elif urc.name in ("RDY", "+QUSIM", "SMS Ready", "SMS DONE", "^SIMST", "+CPIN"):
            # The module or SIM (re)started: sweep storage; identity is re-read on reconnect.
            self._sweep_due = True
            self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.info.status = PortStatus.INITIALIZING
        await self.initialise()
        await self.identify()
        await self.check_health()
        self.info.status = PortStatus.READY
        self.info.since = self.info.since or time.time()
        self._on_change(self.info)
        LOGGER.info(
            "%s: ready imei=%s iccid=%s number=%s",
            self.info.name,
            self.info.imei,
            self.info.iccid,
            self.info.number,
        )
        await self.receive_loop()

    async def initialise(self) -> None:
        for command, required in INIT_SCRIPT:
            try:
                await self.session.command(command)
            except AtCommandError:
                if required:
                    raise
                LOGGER.info("%s: optional %s refused", self.info.name, command)

    async def identify(self) -> None:
        info = self.info
        resp = await self.session.command("AT+CGSN")
        info.imei = _first_digits([i.line for i in resp.lines])
        resp = await self.session.command("AT+CIMI")
        info.imsi = _first_digits([i.line for i in resp.lines])
        info.iccid = await self._read_iccid()
        if info.sim is None:
            raise AtCommandError("AT+CIMI", "ERROR", None, "no SIM identity")
        info.operator = operator_code(info.imsi) if info.imsi else None
        number = self._numbers.get(info.iccid or "") or self._numbers.get(info.imsi or "")
        if number is None:
            number = await self._read_cnum()
        info.number = number
        info.country_id = calling_code(number) if number else None

    async def _read_iccid(self) -> str | None:
        try:
            resp = await self.session.command("AT+CCID")
            iccid = _first_digits([i.line for i in resp.lines])
            if iccid:
                return iccid
        except AtCommandError:
            pass
        try:
            resp = await self.session.command("AT+CRSM=176,12258,0,0,10")
        except AtCommandError:
            return None
        args = resp.first("+CRSM")
        if args is None:
            return None
        parts = [a.strip().strip('"') for a in args.split(",")]
        if len(parts) >= 3 and parts[0] == "144":
            return _swap_nibbles(parts[2])
        return None

    async def _read_cnum(self) -> str | None:
        try:
            resp = await self.session.command("AT+CNUM")
        except AtCommandError:
            return None
        for line in resp.lines:
            args = _args(line.line)
            if len(args) >= 3:
                toa = int(args[2]) if args[2].isdigit() else None
                number = normalise_number(args[1], toa)
                if number:
                    return number
        return None

    async def check_health(self) -> None:
        resp = await self.session.command("AT+CSQ")
        csq = resp.first("+CSQ")
        if csq:
            rssi = csq.split(",")[0].strip()
            self.info.signal_dbm = (
                -113 + 2 * int(rssi) if rssi.isdigit() and int(rssi) <= 31 else None
            )
        resp = await self.session.command("AT+CREG?")
        creg = resp.first("+CREG")
        registered = False
        if creg:
            fields = [f.strip() for f in creg.split(",")]
            stat = fields[1] if len(fields) >= 2 else fields[0]
            registered = stat in ("1", "5")
        if registered != self.info.registered:
            self.info.registered = registered
            self._on_change(self.info)

    # -- receive --------------------------------------------------------------------------------

    async def receive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        next_health = loop.time() + HEALTH_INTERVAL * random.uniform(0.5, 1.0)
        while True:
            if not self.session.is_open:
                raise PortClosedError(f"{self.info.name}: port closed")
            if not self._intake.is_set():
                LOGGER.warning("%s: journal unavailable, intake paused", self.info.name)
                await self._intake.wait()
                self._sweep_due = True
            now = loop.time()
            try:
                if self._sweep_due or now >= next_sweep:
                    self._sweep_due = False
                    await self.sweep()
                    next_sweep = loop.time() + self._sweep_interval * random.uniform(0.8, 1.2)
                while self._hints:
                    index = min(self._hints)
                    self._hints.discard(index)
                    await self.read_index(index)
            except JournalError as exc:
                # Not stored, so not deleted: the PDU stays on the SIM for the next sweep.
                LOGGER.error("%s: %s", self.info.name, exc)
                self._sweep_due = True
                continue
            if loop.time() >= next_health:
                await self.check_health()
                next_health = loop.time() + HEALTH_INTERVAL * random.uniform(0.8, 1.2)
            if self._hints or self._sweep_due:
                continue
            self._wake.clear()
            wait = max(0.0, min(next_sweep, next_health) - loop.time())
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def read_index(self, index: int) -> None:
        try:
            resp = await self.session.command(f"AT+CMGR={index}")
        except AtCommandError as exc:
            if exc.code in (CMS_EMPTY_SLOT, CMS_SIM_BUSY):
                if exc.code == CMS_SIM_BUSY:
                    self._sweep_due = True
                return
            raise
        for line in resp.lines:
            if line.line.startswith("+CMGR") and line.pdu:
                fields = _args(line.line)
                length = int(fields[-1]) if fields and fields[-1].isdigit() else None
                await self._store_and_delete(index, line.pdu, length)

    async def sweep(self) -> None:
        resp = await self.session.command("AT+CMGL=4", timeout=CMGL_TIMEOUT)
        for line in resp.lines:
            if not line.line.startswith("+CMGL") or not line.pdu:
                continue
            fields = _args(line.line)
            if not fields or not fields[0].isdigit():
                continue
            length = int(fields[-1]) if fields[-1].isdigit() else None
            await self._store_and_delete(int(fields[0]), line.pdu, length)

    async def _store_and_delete(self, index: int, pdu: str, tpdu_length: int | None) -> None:
        # Durable first: the sink returns only after the journal committed the part.
        await self._sink(self.info, "SM", index, pdu, tpdu_length)
        await self.session.command(f"AT+CMGD={index}")
