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
import re
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from muxd.sim.modem_ident import MCC_MNC, iccid_ef_hex, make_identity

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
COMMAND_HISTORY = 1000
STAT_UNREAD = 0
STAT_READ = 1
STAT_ALL = 4
STORAGE = "SM"
SMSC_NUMBER = "+79168999100"  # MTS Moscow SMSC
EF_ICCID = 12258  # 0x2FE2
CRSM_READ_BINARY = 176
OPERATOR_NAMES = {MCC_MNC: ("MTS RUS", "MTS")}
ACT_EUTRAN = 7
LAC = "1B2C"
CELL_ID = "0A3F51"

_CR = 0x0D
_BS = 0x08
_OK = b"\r\nOK\r\n"
_EXTENDED_RE = re.compile(r"([+^$%][A-Za-z0-9]+)(=\?|\?|=(.*))?", re.DOTALL)
_BASIC_RE = re.compile(r"(&?[A-Za-z])(\d*)(=\d*|\?)?")

_CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    21: "invalid index",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown",
}
_CMS_TEXT = {
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    321: "invalid memory index",
    500: "unknown error",
}


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


class _CmeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _CmsError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_Handler = Callable[["SimModemState", str, list[str]], list[str]]
_EXEC, _READ, _TEST, _SET = "exec", "read", "test", "set"


def _split_args(raw: str) -> list[str]:
    """Split ``1,"SM",,2`` into ``["1", "SM", "", "2"]`` (quotes removed, commas inside kept)."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    args.append("".join(current).strip())
    return args


def _split_line(body: str) -> list[str] | None:
    """Split what follows ``AT`` into single commands; None on a syntax error."""
    commands: list[str] = []
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char in " ;":
            pos += 1
        elif char in "+^$%":
            end, quoted = pos, False
            while end < len(body) and (quoted or body[end] != ";"):
                if body[end] == '"':
                    quoted = not quoted
                end += 1
            commands.append(body[pos:end])
            pos = end + 1
        else:
            match = _BASIC_RE.match(body, pos)
            if match is None:
                return None
            commands.append(match.group(0))
            pos = match.end()
    return commands


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
        self.creg_n = 0
        self.cgreg_n = 0
        self.cereg_n = 0
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
        self.creg_n = 0
        self.cgreg_n = 0
        self.cereg_n = 0
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
        commands = _split_line(line[2:])
        if overflow or commands is None:
            return self._error(_CmeError(100))
        out = bytearray()
        for command in commands:
            try:
                lines = self._run_command(command)
            except (_CmeError, _CmsError) as exc:
                return bytes(out) + self._error(exc)
            if lines:
                out += ("\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")
        return bytes(out) + _OK

    def _error(self, exc: _CmeError | _CmsError) -> bytes:
        if isinstance(exc, _CmsError):
            text = _CMS_TEXT.get(exc.code) if self.cmee == 2 else None
            return f"\r\n+CMS ERROR: {text or exc.code}\r\n".encode("ascii")
        if self.cmee == 0:
            return b"\r\nERROR\r\n"
        if self.cmee == 2:
            return f"\r\n+CME ERROR: {_CME_TEXT.get(exc.code, exc.code)}\r\n".encode("ascii")
        return f"\r\n+CME ERROR: {exc.code}\r\n".encode("ascii")

    def _run_command(self, command: str) -> list[str]:
        if command[0] not in "+^$%":
            return self._run_basic(command)
        match = _EXTENDED_RE.fullmatch(command)
        if match is None:
            raise _CmeError(100)
        name, suffix, raw_args = match.group(1).upper(), match.group(2), match.group(3)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise _CmeError(100)
        if suffix is None:
            return handler(self, _EXEC, [])
        if suffix == "?":
            return handler(self, _READ, [])
        if suffix == "=?":
            return handler(self, _TEST, [])
        return handler(self, _SET, _split_args(raw_args or ""))

    def _run_basic(self, command: str) -> list[str]:
        match = _BASIC_RE.fullmatch(command)
        if match is None:
            raise _CmeError(100)
        letter, digits, _ = match.group(1).upper(), match.group(2), match.group(3)
        value = int(digits) if digits else 0
        if letter == "E" and value in (0, 1):
            self.echo = value == 1
        elif letter in ("Z", "&F") and value == 0:
            self.reset()
        elif (letter, value) in (("V", 1), ("Q", 0)):
            pass
        elif letter in ("&W", "&D", "&C", "S", "X"):
            pass
        elif letter == "I" and value == 0:
            return [self.manufacturer, self.model, f"Revision: {self.revision}"]
        else:
            raise _CmeError(100)
        return []

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _int(args: list[str], pos: int, low: int, high: int, default: int | None = None) -> int:
        raw = args[pos] if pos < len(args) else ""
        if raw == "":
            if default is None:
                raise _CmeError(50)
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _CmeError(50) from None
        if not low <= value <= high:
            raise _CmeError(50)
        return value

    def _sms_index(self, args: list[str]) -> int:
        try:
            index = self._int(args, 0, self.index_base, self.index_base + self.capacity - 1)
        except _CmeError:
            raise _CmsError(321) from None
        return index

    def _require_pdu_mode(self) -> None:
        if self.cmgf != 0:
            raise _CmsError(302)

    def _delete(self, index: int) -> None:
        slot = self.slots.pop(index)
        self.deleted.append((index, slot.pdu_hex))
        if self.on_delete is not None:
            self.on_delete(index, slot.pdu_hex)

    def _registered(self) -> bool:
        return self.reg_stat in (1, 5)

    # ------------------------------------------------------------------ handlers

    def _h_cmee(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            self.cmee = self._int(args, 0, 0, 2, default=0)
            return []
        if form == _READ:
            return [f"+CMEE: {self.cmee}"]
        if form == _TEST:
            return ["+CMEE: (0-2)"]
        raise _CmeError(50)

    def _h_cmgf(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            self.cmgf = self._int(args, 0, 0, 1, default=0)
            return []
        if form == _READ:
            return [f"+CMGF: {self.cmgf}"]
        if form == _TEST:
            return ["+CMGF: (0,1)"]
        raise _CmeError(50)

    def _cpms_counts(self) -> str:
        return ",".join(f"{self.used},{self.capacity}" for _ in range(3))

    def _h_cpms(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            if not 1 <= len(args) <= 3:
                raise _CmsError(302)
            mems = [arg.upper() for arg in args]
            if any(mem != STORAGE for mem in mems):
                raise _CmsError(302)
            self.cpms[: len(mems)] = mems
            return [f"+CPMS: {self._cpms_counts()}"]
        if form == _READ:
            parts = [f'"{mem}",{self.used},{self.capacity}' for mem in self.cpms]
            return ["+CPMS: " + ",".join(parts)]
        if form == _TEST:
            return ['+CPMS: ("SM"),("SM"),("SM")']
        raise _CmsError(302)

    def _h_cnmi(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            if len(args) > 5:
                raise _CmeError(50)
            limits = ((0, 3), (0, 3), (0, 3), (0, 2), (0, 1))
            values = [
                self._int(args, pos, low, high, default=self.cnmi[pos])
                for pos, (low, high) in enumerate(limits)
            ]
            self.cnmi = (values[0], values[1], values[2], values[3], values[4])
            return []
        if form == _READ:
            return ["+CNMI: " + ",".join(str(v) for v in self.cnmi)]
        if form == _TEST:
            return ["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"]
        raise _CmeError(50)

    def _h_cgsn(self, form: str, args: list[str]) -> list[str]:
        if form == _EXEC:
            return [self.imei]
        if form == _TEST:
            return []
        raise _CmeError(50)

    def _h_cimi(self, form: str, args: list[str]) -> list[str]:
        if form == _EXEC:
            return [self.imsi]
        if form == _TEST:
            return []
        raise _CmeError(50)

    def _h_ccid(self, form: str, args: list[str]) -> list[str]:
        if form in (_EXEC, _READ):
            return [f"+CCID: {self.iccid}"]
        if form == _TEST:
            return []
        raise _CmeError(50)

    def _h_crsm(self, form: str, args: list[str]) -> list[str]:
        if form == _TEST:
            return []
        if form != _SET:
            raise _CmeError(50)
        command = self._int(args, 0, 0, 255)
        file_id = self._int(args, 1, 0, 0xFFFF, default=0)
        p3 = self._int(args, 4, 0, 255, default=0)
        if command != CRSM_READ_BINARY or file_id != EF_ICCID:
            return ["+CRSM: 106,130"]  # SW 6A82: file not found
        content = iccid_ef_hex(self.iccid)
        size = len(content) // 2
        if p3 > size:
            return [f"+CRSM: 108,{size}"]  # SW 6Cxx: wrong Le, xx is the right one
        length = p3 or size
        return [f'+CRSM: 144,0,"{content[: 2 * length]}"']

    def _h_cnum(self, form: str, args: list[str]) -> list[str]:
        if form == _EXEC:
            if self.number is None:
                return []
            toa = 145 if self.number.startswith("+") else 129
            return [f'+CNUM: "","{self.number}",{toa}']
        if form == _TEST:
            return []
        raise _CmeError(50)

    def _h_csq(self, form: str, args: list[str]) -> list[str]:
        if form == _EXEC:
            return [f"+CSQ: {self.rssi},99"]
        if form == _TEST:
            return ["+CSQ: (0-31,99),(0-7,99)"]
        raise _CmeError(50)

    def _registration(self, name: str, attr: str, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            setattr(self, attr, self._int(args, 0, 0, 2, default=0))
            return []
        if form == _READ:
            n: int = getattr(self, attr)
            extra = f',"{LAC}","{CELL_ID}",{ACT_EUTRAN}' if n == 2 and self._registered() else ""
            return [f"{name}: {n},{self.reg_stat}{extra}"]
        if form == _TEST:
            return [f"{name}: (0-2)"]
        raise _CmeError(50)

    def _h_creg(self, form: str, args: list[str]) -> list[str]:
        return self._registration("+CREG", "creg_n", form, args)

    def _h_cgreg(self, form: str, args: list[str]) -> list[str]:
        return self._registration("+CGREG", "cgreg_n", form, args)

    def _h_cereg(self, form: str, args: list[str]) -> list[str]:
        return self._registration("+CEREG", "cereg_n", form, args)

    def _h_cops(self, form: str, args: list[str]) -> list[str]:
        operator = self.imsi[:5]
        long_name, short_name = OPERATOR_NAMES.get(operator, (operator, operator))
        if form == _READ:
            if not self._registered():
                return ["+COPS: 0"]
            name = (long_name, short_name, operator)[self.cops_format]
            return [f'+COPS: 0,{self.cops_format},"{name}",{ACT_EUTRAN}']
        if form == _SET:
            mode = self._int(args, 0, 0, 4)
            if mode == 3:
                self.cops_format = self._int(args, 1, 0, 2)
            elif mode != 0:
                raise _CmeError(3)
            return []
        if form == _TEST:
            return [
                f'+COPS: (2,"{long_name}","{short_name}","{operator}",{ACT_EUTRAN}),,(0-4),(0-2)'
            ]
        raise _CmeError(50)

    def _ident(self, value: str, form: str) -> list[str]:
        if form == _EXEC:
            return [value]
        if form == _TEST:
            return []
        raise _CmeError(50)

    def _h_cgmi(self, form: str, args: list[str]) -> list[str]:
        return self._ident(self.manufacturer, form)

    def _h_cgmm(self, form: str, args: list[str]) -> list[str]:
        return self._ident(self.model, form)

    def _h_cgmr(self, form: str, args: list[str]) -> list[str]:
        return self._ident(f"Revision: {self.revision}", form)

    def _h_cpin(self, form: str, args: list[str]) -> list[str]:
        if form == _READ:
            return ["+CPIN: READY"]
        if form == _TEST:
            return []
        raise _CmeError(3)

    def _h_cfun(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            self.cfun = self._int(args, 0, 0, 4)
            return []
        if form == _READ:
            return [f"+CFUN: {self.cfun}"]
        if form == _TEST:
            return ["+CFUN: (0,1,4),(0,1)"]
        raise _CmeError(50)

    def _h_cscs(self, form: str, args: list[str]) -> list[str]:
        charsets = ("GSM", "IRA", "UCS2")
        if form == _SET:
            charset = args[0].upper() if args else ""
            if charset not in charsets:
                raise _CmeError(50)
            self.cscs = charset
            return []
        if form == _READ:
            return [f'+CSCS: "{self.cscs}"']
        if form == _TEST:
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in charsets) + ")"]
        raise _CmeError(50)

    def _h_csca(self, form: str, args: list[str]) -> list[str]:
        if form == _READ:
            return [f'+CSCA: "{SMSC_NUMBER}",145']
        if form in (_SET, _TEST):
            return []
        raise _CmeError(50)

    def _h_csms(self, form: str, args: list[str]) -> list[str]:
        if form == _SET:
            self._int(args, 0, 0, 1)
            return ["+CSMS: 1,1,1"]
        if form == _READ:
            return ["+CSMS: 0,1,1,1"]
        if form == _TEST:
            return ["+CSMS: (0,1)"]
        raise _CmeError(50)

    def _h_cmgr(self, form: str, args: list[str]) -> list[str]:
        if form == _TEST:
            return []
        if form != _SET:
            raise _CmsError(302)
        self._require_pdu_mode()
        index = self._sms_index(args)
        slot = self.slots.get(index)
        if slot is None:
            raise _CmsError(321)
        if slot.stat == STAT_UNREAD:
            self.slots[index] = slot._replace(stat=STAT_READ)
        return [f"+CMGR: {slot.stat},,{slot.tpdu_length}", slot.pdu_hex]

    def _h_cmgl(self, form: str, args: list[str]) -> list[str]:
        if form == _TEST:
            return ["+CMGL: (0-4)"]
        if form not in (_EXEC, _SET):
            raise _CmsError(302)
        self._require_pdu_mode()
        try:
            wanted = self._int(args, 0, 0, STAT_ALL, default=STAT_UNREAD)
        except _CmeError:
            raise _CmsError(304) from None
        lines: list[str] = []
        for index in sorted(self.slots):
            slot = self.slots[index]
            if wanted != STAT_ALL and slot.stat != wanted:
                continue
            lines += [f"+CMGL: {index},{slot.stat},,{slot.tpdu_length}", slot.pdu_hex]
            if slot.stat == STAT_UNREAD:
                self.slots[index] = slot._replace(stat=STAT_READ)
        return lines

    def _h_cmgd(self, form: str, args: list[str]) -> list[str]:
        if form == _TEST:
            used = ",".join(str(index) for index in sorted(self.slots))
            return [f"+CMGD: ({used}),(0-4)"]
        if form != _SET:
            raise _CmsError(302)
        index = self._sms_index(args)
        try:
            flag = self._int(args, 1, 0, 4, default=0)
        except _CmeError:
            raise _CmsError(304) from None
        if flag == 0:
            if index in self.slots:
                self._delete(index)
            return []
        kept = {1: (0, 2, 3), 2: (0, 2), 3: (0,), 4: ()}[flag]  # stats that survive
        for stored in sorted(self.slots):
            if self.slots[stored].stat not in kept:
                self._delete(stored)
        return []


_HANDLERS: dict[str, _Handler] = {
    "+CMEE": SimModemState._h_cmee,
    "+CMGF": SimModemState._h_cmgf,
    "+CPMS": SimModemState._h_cpms,
    "+CNMI": SimModemState._h_cnmi,
    "+CGSN": SimModemState._h_cgsn,
    "+GSN": SimModemState._h_cgsn,
    "+CIMI": SimModemState._h_cimi,
    "+CCID": SimModemState._h_ccid,
    "+CRSM": SimModemState._h_crsm,
    "+CNUM": SimModemState._h_cnum,
    "+CSQ": SimModemState._h_csq,
    "+CREG": SimModemState._h_creg,
    "+CGREG": SimModemState._h_cgreg,
    "+CEREG": SimModemState._h_cereg,
    "+COPS": SimModemState._h_cops,
    "+CGMI": SimModemState._h_cgmi,
    "+GMI": SimModemState._h_cgmi,
    "+CGMM": SimModemState._h_cgmm,
    "+GMM": SimModemState._h_cgmm,
    "+CGMR": SimModemState._h_cgmr,
    "+GMR": SimModemState._h_cgmr,
    "+CPIN": SimModemState._h_cpin,
    "+CFUN": SimModemState._h_cfun,
    "+CSCS": SimModemState._h_cscs,
    "+CSCA": SimModemState._h_csca,
    "+CSMS": SimModemState._h_csms,
    "+CMGR": SimModemState._h_cmgr,
    "+CMGL": SimModemState._h_cmgl,
    "+CMGD": SimModemState._h_cmgd,
}
