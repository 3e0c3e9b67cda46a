"""One simulated modem's AT command interpreter: pure, synchronous, no I/O.

:class:`SimModemState` consumes the bytes a host writes (``feed``) and returns the
bytes the modem answers, framed like real modems (verbose result codes, ``V1``)::

    AT+CSQ<CR>  ->  AT+CSQ<CR><CR><LF>+CSQ: 20,99<CR><LF><CR><LF>OK<CR><LF>

(the leading ``AT+CSQ<CR>`` is the echo, on at power-up until ``ATE0``). Several
commands may share a line (``AT+CMEE=1;+CMGF=0``, ``ATE0V1``); the first failing
one ends the line with its error. SMS commands only work in PDU mode
(``AT+CMGF=0``) and only on the memories the flavour offers (generic: ``"SM"``).
``+CMS ERROR: <n>`` is returned for SMS commands whatever ``AT+CMEE`` says (27.005);
other errors follow ``AT+CMEE`` (``ERROR`` / ``+CME ERROR: <n>`` / ``+CME ERROR: <text>``).

Vendor behaviour comes from a :class:`~muxd_sim.modem_flavours.Flavour` (default
:data:`~muxd_sim.modem_flavours.GENERIC`), faults from
:class:`~muxd_sim.modem_faults.Faults`. The state is still sans-I/O: URCs it knows
about are returned as bytes (``boot_urcs``, ``sim_urcs``, ``storage_full_urc``…) and
the pty side decides when to send them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from muxd_sim.modem_at import (
    BASIC_RE,
    EXTENDED_PREFIXES,
    CmeError,
    CmsError,
    UnknownCommand,
    format_error,
    parse_extended,
    split_line,
)
from muxd_sim.modem_commands import STAT_READ, STAT_UNREAD
from muxd_sim.modem_faults import Faults
from muxd_sim.modem_flavours import GENERIC, SIM_COMMANDS, SMS_COMMANDS, Flavour
from muxd_sim.modem_ident import make_identity

__all__ = [
    "DEFAULT_CAPACITY",
    "STAT_READ",
    "STAT_UNREAD",
    "PduLike",
    "SimModemState",
    "SmsSlot",
    "storage_key",
]

LOGGER = logging.getLogger(__name__)

DEFAULT_CAPACITY = 30
DEFAULT_CNMI = (2, 1, 0, 0, 0)
MAX_LINE_LENGTH = 2048  # longer command lines are answered with an error
COMMAND_HISTORY = 1000  # command lines kept in SimModemState.commands
REGISTERED = (1, 5)  # +CREG stat: home, roaming
SIM_STORAGE = "SM"  # the memory that lives on the SIM (emptied by a SIM swap)

_BS = 0x08
_OK = b"\r\nOK\r\n"


def storage_key(mem: str) -> str:
    """The slot table behind a +CPMS memory name: ``MT`` (ME+SM) is served by ``ME``."""
    return "ME" if mem == "MT" else mem


def urc(line: str) -> bytes:
    """One unsolicited line framed like a response line: ``\\r\\n<line>\\r\\n``."""
    return f"\r\n{line}\r\n".encode()


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
    most modems; ``index_base=0`` for Huawei-like ones; None: the flavour's). Each
    memory (``SM``, and ``ME`` where the flavour has it) has its own ``capacity`` slots:
    ``slots`` is the table of mem1 (what ``AT+CMGR``/``+CMGL``/``+CMGD`` act on) and
    ``store_deliver`` fills mem3. ``number=None`` means the SIM stores no own number:
    ``AT+CNUM`` then answers a bare ``OK``.

    Fault knobs live in ``faults`` (:class:`~muxd_sim.modem_faults.Faults`); ``mute``
    and ``drop_urcs`` are kept as shortcuts to ``faults.mute`` / ``faults.drop_urcs``.

    Hooks: ``on_command(line)`` for every non-empty command line, before it runs;
    ``on_delete(index, pdu_hex)`` for every deleted message, inside ``AT+CMGD``
    handling, before the final ``OK`` is returned. A reset command (``AT+CFUN=1,1``,
    ``AT+CRESET``…) sets ``reboot_pending``; whoever drives the state then calls
    :meth:`power_up` after sending the answer.
    """

    def __init__(
        self,
        *,
        imei: str | None = None,
        imsi: str | None = None,
        iccid: str | None = None,
        number: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        index_base: int | None = None,
        rssi: int = 20,
        reg_stat: int = 1,
        manufacturer: str | None = None,
        model: str | None = None,
        revision: str | None = None,
        flavour: Flavour = GENERIC,
        faults: Faults | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if index_base is None:
            index_base = flavour.index_base
        if index_base not in (0, 1):
            raise ValueError(f"index_base must be 0 or 1, got {index_base}")
        default = make_identity(0, 0)
        self.flavour = flavour
        self.faults = faults if faults is not None else Faults()
        self.imei = imei if imei is not None else default.imei
        self.imsi = imsi if imsi is not None else default.imsi
        self.iccid = iccid if iccid is not None else default.iccid
        self.number = number
        self.capacity = capacity
        self.index_base = index_base
        self.rssi = rssi
        self.reg_stat = reg_stat
        self.manufacturer = manufacturer if manufacturer is not None else flavour.manufacturer
        self.model = model if model is not None else flavour.model
        self.revision = revision if revision is not None else flavour.revision

        self.on_command: Callable[[str], None] | None = None
        self.on_delete: Callable[[int, str], None] | None = None
        # AT+CNMA (True) / AT+CNMA=2 (False) for the routed SMS awaiting it
        self.on_cnma: Callable[[bool], None] | None = None
        self.awaiting_cnma = False  # a routed +CMT waits for AT+CNMA (set by the simulator)

        self.storages: dict[str, dict[int, SmsSlot]] = {
            key: {} for key in dict.fromkeys(storage_key(mem) for mem in flavour.storages)
        }
        self.deleted: list[tuple[int, str]] = []
        self.commands: deque[str] = deque(maxlen=COMMAND_HISTORY)
        self.sim_present = True
        self.booting = False  # SMS subsystem not ready yet: SMS commands are refused
        self.reboot_pending = False
        self._line = bytearray()
        self._overflow = False
        self._full_announced = False
        self.cpms = [flavour.default_storage] * 3
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cnmi = DEFAULT_CNMI
        self.reg_report: dict[str, int] = {}  # +CREG/+CGREG/+CEREG -> n
        self.cops_format = 2
        self.cscs = "IRA"
        self.cfun = 1
        self.curc = True  # Huawei ^CURC: periodic/"^" URCs on
        self.portsel = 0  # Huawei ^PORTSEL: 0 = URCs go to the other port
        self.qss = 0  # Telit #QSS mode
        self.csms = 0  # AT+CSMS service: 1 = routed SMS need AT+CNMA
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

    def power_up(self, *, booting: bool = False) -> bytes:
        """A (re)boot: profile, memories and vendor settings back to defaults; return boot URCs.

        Storage, identity and the SIM stay. ``booting`` True keeps SMS commands refused
        until :meth:`sms_ready` (the caller's boot delay).
        """
        self.reset()
        self.cpms = [self.flavour.default_storage] * 3
        self.cfun = 1
        self.curc = True
        self.portsel = 0
        self.qss = 0
        self.csms = 0
        self.reboot_pending = False
        self.booting = booting
        self._line.clear()
        self._overflow = False
        return self.urcs(self.flavour.boot_urcs)

    def sms_ready(self) -> bytes:
        """End of the boot delay: SMS commands work; return the flavour's ready URCs."""
        self.booting = False
        return self.urcs(self.flavour.ready_urcs)

    def request_reboot(self) -> None:
        """Called by reset commands: the driver reboots the modem after the answer."""
        self.reboot_pending = True

    # ------------------------------------------------------------------ faults

    @property
    def mute(self) -> bool:
        """A hung modem (``faults.mute``): input swallowed, nothing answered, no URCs."""
        return self.faults.mute

    @mute.setter
    def mute(self, value: bool) -> None:
        self.faults.mute = value

    @property
    def drop_urcs(self) -> bool:
        """``faults.drop_urcs``: ``+CMTI`` is never sent; storage is the only truth."""
        return self.faults.drop_urcs

    @drop_urcs.setter
    def drop_urcs(self, value: bool) -> None:
        self.faults.drop_urcs = value

    # ------------------------------------------------------------------ SIM

    def remove_sim(self) -> bytes:
        """The SIM is pulled: SIM commands fail until :meth:`insert_sim`; return the URCs."""
        out = self.urcs(self.flavour.sim_removed_urcs)
        self.sim_present = False
        return out

    def insert_sim(
        self, *, imsi: str, iccid: str, number: str | None, booting: bool = False
    ) -> bytes:
        """A (different) SIM is inserted: new identity, empty SIM memory; return the URCs."""
        self.imsi, self.iccid, self.number = imsi, iccid, number
        self.storages[SIM_STORAGE].clear()
        self.sim_present = True
        self.booting = booting
        self._full_announced = False
        return self.urcs(self.flavour.sim_inserted_urcs)

    # ------------------------------------------------------------------ URCs

    def urc_allowed(self, line: str) -> bool:
        """Vendor gating of one URC line: Huawei ``^CURC=0``, Telit ``#QSS`` mode, mute."""
        if self.faults.mute:
            return False
        if self.flavour.curc and not self.curc and line.startswith("^"):
            return False
        return not (self.flavour.qss and line.startswith("#QSS") and self.qss == 0)

    def urcs(self, lines: tuple[str, ...] | list[str]) -> bytes:
        """The framed URCs among ``lines`` that this modem would send now."""
        return b"".join(
            urc(line.format(rssi=self.rssi)) for line in lines if self.urc_allowed(line)
        )

    def periodic_urcs(self) -> bytes:
        """The flavour's periodic unsolicited reports (Huawei until ``AT^CURC=0``)."""
        return self.urcs(self.flavour.periodic_urcs)

    def idle_urc(self) -> bytes:
        """A harmless URC of this flavour (``+CREG: 1``, ``^RSSI:n``), ungated."""
        return urc(self.flavour.idle_urc.format(rssi=self.rssi))

    def storage_full_urc(self) -> bytes:
        """The memory-full URC, once per episode of a full receive memory (else ``b""``)."""
        full = self.faults.storage_full or len(self.receive_storage) >= self.capacity
        if not full:
            self._full_announced = False
            return b""
        if self._full_announced or self.flavour.smsfull_urc is None:
            return b""
        self._full_announced = True
        return self.urcs([self.flavour.smsfull_urc.replace("{mem}", self.receive_mem)])

    # ------------------------------------------------------------------ storage

    @property
    def indices(self) -> range:
        """Every valid storage index."""
        return range(self.index_base, self.index_base + self.capacity)

    def storage(self, mem: str) -> dict[int, SmsSlot]:
        """The slot table of memory ``mem`` (``SM``, ``ME``, ``MT``)."""
        return self.storages[storage_key(mem)]

    def used_in(self, mem: str) -> int:
        """How many slots of memory ``mem`` hold a message."""
        return len(self.storage(mem))

    @property
    def slots(self) -> dict[int, SmsSlot]:
        """mem1's slots: what ``AT+CMGR``, ``+CMGL`` and ``+CMGD`` read and delete."""
        return self.storages[storage_key(self.cpms[0])]

    @property
    def receive_mem(self) -> str:
        """Where new messages go (mem3, as the real memory: ``MT`` -> ``ME``)."""
        return storage_key(self.cpms[2])

    @property
    def receive_storage(self) -> dict[int, SmsSlot]:
        """mem3's slots."""
        return self.storages[self.receive_mem]

    @property
    def used(self) -> int:
        """How many slots hold a message, over every memory."""
        return sum(len(table) for table in self.storages.values())

    def store_deliver(self, pdu: PduLike) -> int | None:
        """Store one received PDU, unread, in mem3's first free slot; None when refused.

        Refused when that memory is full, when ``faults.storage_full`` is set, or when
        there is no SIM (the network cannot deliver).
        """
        if self.faults.storage_full or not self.sim_present:
            return None
        table = self.receive_storage
        for index in self.indices:
            if index not in table:
                table[index] = SmsSlot(STAT_UNREAD, pdu.hex, pdu.tpdu_length)
                return index
        return None

    def urc_cmti(self, index: int, mem: str | None = None) -> bytes:
        """The new-message indication for ``index``: ``\\r\\n+CMTI: "SM",<i>\\r\\n``."""
        return f'\r\n+CMTI: "{mem or self.receive_mem}",{index}\r\n'.encode("ascii")

    @property
    def urcs_enabled(self) -> bool:
        """True when a stored message would be announced now (+CNMI, ^PORTSEL, faults)."""
        if self.faults.mute or self.faults.drop_urcs or self.cnmi[0] == 0 or self.cnmi[1] == 0:
            return False
        return not (self.flavour.cmti_needs_portsel and self.portsel != 1)

    @property
    def routes_new_sms(self) -> bool:
        """True when ``AT+CNMI`` routes new SMS to the host as ``+CMT`` (mt=2)."""
        return self.cnmi[1] == 2

    def urc_cmt(self, pdu: PduLike) -> bytes:
        """A routed SMS in PDU mode: ``\r\n+CMT: ,<length>\r\n<pdu>\r\n``."""
        return f"\r\n+CMT: ,{pdu.tpdu_length}\r\n{pdu.hex}\r\n".encode("ascii")

    def cmti_if_enabled(self, index: int, mem: str | None = None) -> bytes:
        """``urc_cmti(index)`` when URCs are enabled, else ``b""``."""
        return self.urc_cmti(index, mem) if self.urcs_enabled else b""

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> bytes:
        """Consume host bytes; return the modem's answer (echo, responses, result codes)."""
        return b"".join(chunk for _, chunk in self.feed_chunks(data))

    def feed_chunks(self, data: bytes) -> list[tuple[bool, bytes]]:
        """Like :meth:`feed`, as ``(is_echo, bytes)`` pieces: echoes and whole line responses."""
        if self.faults.mute:
            return []
        out: list[tuple[bool, bytes]] = []
        start = 0
        while True:
            end = data.find(b"\r", start)
            chunk = data[start:] if end < 0 else data[start : end + 1]
            if self.echo and chunk:
                out.append((True, chunk))
            if end < 0:
                self._append(chunk)
                return out
            self._append(chunk[:-1])
            line = self._line.decode("latin-1")
            overflow = self._overflow
            self._line.clear()
            self._overflow = False
            response = self._run_line(line, overflow=overflow)
            if response:
                out.append((False, response))
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
            return self._frame(format_error(CmeError(100), self.cmee))
        out = bytearray()
        for command in commands:
            try:
                lines = self._run_command(command)
            except UnknownCommand as exc:
                reply = self.flavour.unknown_reply
                final = f"\r\n{reply}\r\n".encode() if reply else format_error(exc, self.cmee)
                return self._frame(bytes(out) + final)
            except (CmeError, CmsError) as exc:
                return self._frame(bytes(out) + format_error(exc, self.cmee))
            if lines:
                out += ("\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")
        return self._frame(bytes(out) + _OK)

    def _frame(self, response: bytes) -> bytes:
        return b"\r\n" + response + b"\r\n" if self.flavour.blank_lines else response

    def _run_command(self, command: str) -> list[str]:
        if command[0] not in EXTENDED_PREFIXES:
            return self._run_basic(command)
        name, form, args = parse_extended(command)
        handler = self.flavour.handler(name)
        if handler is None:
            raise UnknownCommand
        if not self.sim_present:
            if name in SMS_COMMANDS:
                raise CmsError(310)
            if name in SIM_COMMANDS:
                raise CmeError(10)
        elif self.booting and name in SMS_COMMANDS:
            raise CmsError(self.flavour.boot_sms_error)
        return handler(self, form, args)

    def _run_basic(self, command: str) -> list[str]:
        match = BASIC_RE.fullmatch(command)
        if match is None:
            raise UnknownCommand
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
            raise UnknownCommand
        return []

    def delete(self, index: int) -> None:
        """Delete the message in mem1's ``index`` (must exist): record it, call ``on_delete``."""
        slot = self.slots.pop(index)
        self._full_announced = False  # a later full memory is a new episode
        self.deleted.append((index, slot.pdu_hex))
        if self.on_delete is not None:
            self.on_delete(index, slot.pdu_hex)

    @property
    def registered(self) -> bool:
        """True when registered (home or roaming)."""
        return self.reg_stat in REGISTERED
