"""One simulated modem's AT command interpreter: pure, synchronous, no I/O.

:class:`SimModemState` consumes the bytes a host writes (``feed``) and returns the
bytes the modem answers, framed like real modems (verbose result codes, ``V1``)::

    AT+CSQ<CR>  ->  AT+CSQ<CR><CR><LF>+CSQ: 20,99<CR><LF><CR><LF>OK<CR><LF>

(the leading ``AT+CSQ<CR>`` is the echo, on at power-up until ``ATE0``). Several
commands may share a line (``AT+CMEE=1;+CMGF=0``, ``ATE0V1``); the first failing
one ends the line with its error. SMS commands only work in PDU mode
(``AT+CMGF=0``) and only on ``"SM"`` storage. ``+CMS ERROR: <n>`` is returned for
SMS commands whatever ``AT+CMEE`` says (27.005); other errors follow ``AT+CMEE``
(``ERROR`` / ``+CME ERROR: <n>`` / ``+CME ERROR: <text>``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from muxd.sim.modem_at import (
    BASIC_RE,
    EXTENDED_PREFIXES,
    CmeError,
    CmsError,
    format_error,
    parse_extended,
    split_line,
)
from muxd.sim.modem_commands import HANDLERS, STAT_READ, STAT_UNREAD, STORAGE
from muxd.sim.modem_ident import make_identity

__all__ = [
    "DEFAULT_CAPACITY",
    "STAT_READ",
    "STAT_UNREAD",
    "PduLike",
    "SimModemState",
    "SmsSlot",
]

LOGGER = logging.getLogger(__name__)

DEFAULT_CAPACITY = 30
DEFAULT_CNMI = (2, 1, 0, 0, 0)
MAX_LINE_LENGTH = 2048  # longer command lines are answered with an error
COMMAND_HISTORY = 1000  # command lines kept in SimModemState.commands
REGISTERED = (1, 5)  # +CREG stat: home, roaming

_BS = 0x08
_OK = b"\r\nOK\r\n"


class PduLike(Protocol):
    """What :meth:`SimModemState.store_deliver` needs (``muxd.pdu.EncodedPdu`` fits)."""

    @property
    def hex(self) -> str: ...

    @property
    def tpdu_length(self) -> int: ...


class SmsSlot(NamedTuple):
    """One occupied storage slot: 27.005 stat (0 unread, 1 read), PDU as in +CMGR, TPDU length."""

    stat: int
    pdu_hex: str
    tpdu_length: int


class SimModemState:
    """AT command interpreter and SMS storage of one simulated modem (see module docstring).

    Storage slots are numbered ``index_base .. index_base + capacity - 1`` (1-based like
    most modems; ``index_base=0`` for Huawei-like ones). ``number=None`` means the SIM
    stores no own number: ``AT+CNUM`` then answers a bare ``OK``.

    Fault knobs: ``mute`` (a hung modem: input swallowed, nothing answered, no URCs)
    and ``drop_urcs`` (``+CMTI`` never sent; storage is the only truth).

    Hooks: ``on_command(line)`` for every non-empty command line, before it runs;
    ``on_delete(index, pdu_hex)`` for every deleted message, inside ``AT+CMGD``
    handling, before the final ``OK`` is returned.
    """

    def __init__(
        self,
        *,
        imei: str | None = None,
        imsi: str | None = None,
        iccid: str | None = None,
        number: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        index_base: int = 1,
        rssi: int = 20,
        reg_stat: int = 1,
        manufacturer: str = "Quectel",
        model: str = "EC25",
        revision: str = "EC25EFAR06A06M4G",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if index_base not in (0, 1):
            raise ValueError(f"index_base must be 0 or 1, got {index_base}")
        default = make_identity(0, 0)
        self.imei = imei if imei is not None else default.imei
        self.imsi = imsi if imsi is not None else default.imsi
        self.iccid = iccid if iccid is not None else default.iccid
        self.number = number
        self.capacity = capacity
        self.index_base = index_base
        self.rssi = rssi
        self.reg_stat = reg_stat
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision

        self.mute = False
        self.drop_urcs = False
        self.on_command: Callable[[str], None] | None = None
        self.on_delete: Callable[[int, str], None] | None = None

        self.slots: dict[int, SmsSlot] = {}
        self.deleted: list[tuple[int, str]] = []
        self.commands: deque[str] = deque(maxlen=COMMAND_HISTORY)
        self.cpms = [STORAGE, STORAGE, STORAGE]
        self._line = bytearray()
        self._overflow = False
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cnmi = DEFAULT_CNMI
        self.reg_report: dict[str, int] = {}  # +CREG/+CGREG/+CEREG -> n
        self.cops_format = 2
        self.cscs = "IRA"
        self.cfun = 1
        self.reset()

    # ------------------------------------------------------------------ profile

    def reset(self) -> None:
        """Restore the power-up profile (``ATZ``, ``AT&F``); storage and identity stay."""
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cnmi = DEFAULT_CNMI
        self.reg_report = {}
        self.cops_format = 2
        self.cscs = "IRA"

    # ------------------------------------------------------------------ storage

    @property
    def indices(self) -> range:
        """Every valid storage index."""
        return range(self.index_base, self.index_base + self.capacity)

    @property
    def used(self) -> int:
        """How many slots hold a message."""
        return len(self.slots)

    def store_deliver(self, pdu: PduLike) -> int | None:
        """Store one received PDU, unread, in the first free slot; None when storage is full."""
        for index in self.indices:
            if index not in self.slots:
                self.slots[index] = SmsSlot(STAT_UNREAD, pdu.hex, pdu.tpdu_length)
                return index
        return None

    def urc_cmti(self, index: int) -> bytes:
        """The new-message indication for ``index``: ``\\r\\n+CMTI: "SM",<i>\\r\\n``."""
        return f'\r\n+CMTI: "{self.cpms[2]}",{index}\r\n'.encode("ascii")

    @property
    def urcs_enabled(self) -> bool:
        """True when a stored message would be announced now (+CNMI mode/mt, faults)."""
        return not self.mute and not self.drop_urcs and self.cnmi[0] != 0 and self.cnmi[1] != 0

    def cmti_if_enabled(self, index: int) -> bytes:
        """``urc_cmti(index)`` when URCs are enabled, else ``b""``."""
        return self.urc_cmti(index) if self.urcs_enabled else b""

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> bytes:
        """Consume host bytes; return the modem's answer (echo, responses, result codes)."""
        if self.mute:
            return b""
        out = bytearray()
        start = 0
        while True:
            end = data.find(b"\r", start)
            chunk = data[start:] if end < 0 else data[start : end + 1]
            if self.echo:
                out += chunk
            if end < 0:
                self._append(chunk)
                return bytes(out)
            self._append(chunk[:-1])
            line = self._line.decode("latin-1")
            overflow = self._overflow
            self._line.clear()
            self._overflow = False
            out += self._run_line(line, overflow=overflow)
            start = end + 1

    def _append(self, chunk: bytes) -> None:
        chunk = chunk.replace(b"\n", b"")
        if _BS in chunk:
            for byte in chunk:
                if byte == _BS:
                    if self._line:
                        del self._line[-1]
                else:
                    self._line.append(byte)
        else:
            self._line += chunk
        if len(self._line) > MAX_LINE_LENGTH:
            self._overflow = True
            del self._line[MAX_LINE_LENGTH:]

    def _run_line(self, raw: str, *, overflow: bool) -> bytes:
        line = raw.strip()
        if not line:
            return b""
        self.commands.append(line)
        if self.on_command is not None:
            self.on_command(line)
        if line[:2].upper() != "AT":
            LOGGER.debug("ignoring non-AT line %r", line)
            return b""
        commands = split_line(line[2:])
        if overflow or commands is None:
            return format_error(CmeError(100), self.cmee)
        out = bytearray()
        for command in commands:
            try:
                lines = self._run_command(command)
            except (CmeError, CmsError) as exc:
                return bytes(out) + format_error(exc, self.cmee)
            if lines:
                out += ("\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")
        return bytes(out) + _OK

    def _run_command(self, command: str) -> list[str]:
        if command[0] not in EXTENDED_PREFIXES:
            return self._run_basic(command)
        name, form, args = parse_extended(command)
        handler = HANDLERS.get(name)
        if handler is None:
            raise CmeError(100)
        return handler(self, form, args)

    def _run_basic(self, command: str) -> list[str]:
        match = BASIC_RE.fullmatch(command)
        if match is None:
            raise CmeError(100)
        letter, digits, _ = match.group(1).upper(), match.group(2), match.group(3)
        value = int(digits) if digits else 0
        if letter == "E" and value in (0, 1):
            self.echo = value == 1
        elif letter in ("Z", "&F") and value == 0:
            self.reset()
        elif (letter, value) in (("V", 1), ("Q", 0)) or letter in ("&W", "&D", "&C", "S", "X"):
            pass  # accepted, no effect on the simulation
        elif letter == "I" and value == 0:
            return [self.manufacturer, self.model, f"Revision: {self.revision}"]
        else:
            raise CmeError(100)
        return []

    def delete(self, index: int) -> None:
        """Delete the message in ``index`` (must exist): record it, call ``on_delete``."""
        slot = self.slots.pop(index)
        self.deleted.append((index, slot.pdu_hex))
        if self.on_delete is not None:
            self.on_delete(index, slot.pdu_hex)

    @property
    def registered(self) -> bool:
        """True when registered (home or roaming)."""
        return self.reg_stat in REGISTERED
