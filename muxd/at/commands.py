"""AT command builders and parsers for the information lines muxd needs.

Conventions:

* Builders return the command line without CR (what :meth:`AtParser.command_sent` takes)
  and raise plain :class:`ValueError` for arguments that are out of range (a muxd bug).
* Parsers accept either the whole line (``+CSQ: 21,99``) or just its arguments (``21,99``,
  i.e. :attr:`Urc.args`) and raise :class:`AtParseError` when the modem sent something
  malformed. They return None only where "nothing" is a legitimate answer: no operator
  (``+COPS: 0``), no own number, or an unknown signal level (``csq_to_dbm(99)``).
"""

from __future__ import annotations

import functools
import re

import msgspec

__all__ = [
    "AtParseError",
    "MemoryUsage",
    "cmgd",
    "cmgl",
    "cmgr",
    "cmgs",
    "cnmi",
    "cpms",
    "csq_to_dbm",
    "expected_prefix",
    "parse_cmgl_header",
    "parse_cmgr_header",
    "parse_cmgs",
    "parse_cmti",
    "parse_cnum",
    "parse_cops",
    "parse_cpms",
    "parse_creg",
    "parse_csq",
]


class AtParseError(ValueError):
    """The modem sent an information line muxd cannot parse (the modem's fault)."""


class MemoryUsage(msgspec.Struct, frozen=True, gc=False):
    """One storage of a ``+CPMS`` answer; ``mem`` is None in the answer to the set form."""

    mem: str | None
    used: int
    total: int


# --- expected response prefix -------------------------------------------------------------

_EXTENDED = re.compile(r"\s*AT([+^#$%!*][A-Z0-9]+)(=\?|\?)?", re.IGNORECASE)
# Commands whose "+X:" line is the network's asynchronous answer, sent after OK: it is a URC,
# not an Info (AT+CUSD=1,"*100#",15 -> OK ... +CUSD: 0,"Balance ...",15). Their read and
# test forms (AT+CUSD?, AT+CUSD=?) still answer with an Info.
_ASYNC_ANSWER = frozenset({"+CUSD"})


@functools.lru_cache(maxsize=1024)
def expected_prefix(command: str) -> str | None:
    """The prefix of the information lines answering ``command``, upper-cased.

    ``AT+CMGR=3`` -> ``+CMGR``; ``AT+CREG?`` -> ``+CREG``; ``AT^ICCID?`` -> ``^ICCID``;
    ``AT+CSQ`` -> ``+CSQ``; basic commands (``ATE0``, ``ATI``, ``AT``) -> None; the set form of
    ``AT+CUSD`` -> None (its answer is a URC). Only the first command of a ``;`` chain counts.
    """
    match = _EXTENDED.match(command)
    if match is None:
        return None
    name = match.group(1).upper()
    if name in _ASYNC_ANSWER and match.group(2) is None:
        return None
    return name


# --- builders -------------------------------------------------------------------------------

_MEMORY = re.compile(r"[A-Z]{2}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")


def cmgr(index: int) -> str:
    """``AT+CMGR=<index>``: read one message (PDU mode)."""
    _check_range("index", index, 0, 65535)
    return f"AT+CMGR={index}"


def cmgd(index: int, delflag: int | None = None) -> str:
    """``AT+CMGD=<index>[,<delflag>]``: delete one message (delflag 1-4 deletes in bulk)."""
    _check_range("index", index, 0, 65535)
    if delflag is None:
        return f"AT+CMGD={index}"
    _check_range("delflag", delflag, 0, 4)
    return f"AT+CMGD={index},{delflag}"


def cmgl(stat: int = 4) -> str:
    """``AT+CMGL=<stat>``: list messages; 0 unread, 1 read, 2 unsent, 3 sent, 4 all."""
    _check_range("stat", stat, 0, 4)
    return f"AT+CMGL={stat}"


def cmgs(length: int) -> str:
    """``AT+CMGS=<length>``: send; ``length`` is the TPDU octet count without the SMSC part."""
    _check_range("length", length, 1, 255)
    return f"AT+CMGS={length}"


def cpms(mem1: str, mem2: str | None = None, mem3: str | None = None) -> str:
    """``AT+CPMS="<mem1>","<mem2>","<mem3>"``; mem2/mem3 default to mem1.

    All three are always sent: some modems (Dell T77W968) apply only the parameters given.
    """
    mems = [mem1, mem1 if mem2 is None else mem2, mem1 if mem3 is None else mem3]
    for mem in mems:
        if not _MEMORY.fullmatch(mem):
            raise ValueError(f"memory must be two capital letters like SM/ME/MT/SR, got {mem!r}")
    return "AT+CPMS=" + ",".join(f'"{mem}"' for mem in mems)


def cnmi(mode: int = 2, mt: int = 1, bm: int = 0, ds: int = 0, bfr: int = 0) -> str:
    """``AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>``.

    The defaults buffer URCs while a command is in flight (mode 2), store each SMS and announce
    it with ``+CMTI`` (mt 1), and disable broadcasts and status reports. Qualcomm modules that
    advertise ``<ds>=1`` reject it: use ``ds=2`` for status reports stored + ``+CDSI``.
    """
    _check_range("mode", mode, 0, 3)
    _check_range("mt", mt, 0, 3)
    _check_range("bm", bm, 0, 3)
    _check_range("ds", ds, 0, 2)
    _check_range("bfr", bfr, 0, 1)
    return f"AT+CNMI={mode},{mt},{bm},{ds},{bfr}"


# --- field helpers --------------------------------------------------------------------------

_FIELD = re.compile(r'\s*("[^"]*"|[^,"]*)\s*')


def _args(line: str, *names: str) -> str:
    """The arguments of ``line``: the text after ``NAME:`` if it starts with one of ``names``."""
    text = line.strip()
    for name in names:
        if text[: len(name)].upper() == name:
            rest = text[len(name) :].lstrip()
            if rest.startswith(":"):
                return rest[1:].strip()
    if text[:1] in ("+", "^", "#", "!", "$", "%", "*") and ":" in text:
        raise AtParseError(f"expected {'/'.join(names)}, got {line!r}")
    return text


def _fields(args: str) -> list[str]:
    """Split at commas outside double quotes; quotes are kept (see :func:`_unquote`)."""
    fields: list[str] = []
    pos = 0
    size = len(args)
    while True:
        match = _FIELD.match(args, pos)
        assert match is not None  # the pattern matches the empty string
        fields.append(match.group(1))
        pos = match.end()
        if pos >= size:
            return fields
        if args[pos] != ",":
            raise AtParseError(f"malformed fields (unbalanced quote?) in {args!r}")
        pos += 1


def _quoted(field: str) -> bool:
    return len(field) >= 2 and field[0] == '"' and field[-1] == '"'


def _unquote(field: str) -> str:
    return field[1:-1] if _quoted(field) else field


def _uint(field: str, what: str) -> int:
    text = _unquote(field).strip()
    if not (text.isascii() and text.isdigit()):
        raise AtParseError(f"{what} must be a non-negative integer, got {field!r}")
    return int(text)


def _need(fields: list[str], count: int, what: str) -> None:
    if len(fields) < count:
        raise AtParseError(f"{what} needs at least {count} fields, got {fields!r}")


# --- parsers --------------------------------------------------------------------------------


def parse_cmti(args: str) -> tuple[str, int]:
    """``"SM",3`` (from ``+CMTI:`` or ``+CDSI:``) -> ``("SM", 3)``.

    Raises AtParseError for ``,-1`` (SIM7000G announcing neither memory nor index) and any
    other line without a memory name and a non-negative index.
    """
    fields = _fields(_args(args, "+CMTI", "+CDSI"))
    _need(fields, 2, "+CMTI")
    mem = _unquote(fields[0]).strip()
    if not mem:
        raise AtParseError(f"+CMTI without memory: {args!r}")
    return mem, _uint(fields[1], "+CMTI index")


def parse_cmgr_header(line: str) -> tuple[int, int]:
    """``+CMGR: <stat>,[<alpha>],<length>`` -> ``(stat, length)`` (PDU mode)."""
    fields = _fields(_args(line, "+CMGR"))
    _need(fields, 2, "+CMGR")
    return _uint(fields[0], "+CMGR stat"), _uint(fields[-1], "+CMGR length")


def parse_cmgl_header(line: str) -> tuple[int, int, int]:
    """``+CMGL: <index>,<stat>,[<alpha>],<length>`` -> ``(index, stat, length)`` (PDU mode)."""
    fields = _fields(_args(line, "+CMGL"))
    _need(fields, 3, "+CMGL")
    return (
        _uint(fields[0], "+CMGL index"),
        _uint(fields[1], "+CMGL stat"),
        _uint(fields[-1], "+CMGL length"),
    )


def parse_cmgs(line: str) -> int:
    """``+CMGS: <mr>[,<scts>]`` -> the message reference."""
    fields = _fields(_args(line, "+CMGS"))
    return _uint(fields[0], "+CMGS message reference")


def parse_csq(line: str) -> tuple[int, int]:
    """``+CSQ: <rssi>,<ber>`` -> ``(rssi, ber)``; convert rssi with :func:`csq_to_dbm`."""
    fields = _fields(_args(line, "+CSQ"))
    if len(fields) != 2:
        raise AtParseError(f"+CSQ needs 2 fields, got {line!r}")
    return _uint(fields[0], "+CSQ rssi"), _uint(fields[1], "+CSQ ber")


def csq_to_dbm(rssi: int) -> int | None:
    """The ``+CSQ`` rssi in dBm (0 -> -113 .. 31 -> -51, TD-SCDMA 100 -> -116 .. 191 -> -25).

    None for 99 / 199 (not known or not detectable) and values outside 27.007's ranges.
    """
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    if 100 <= rssi <= 191:
        return -216 + rssi
    return None


def parse_creg(line: str) -> tuple[int | None, int]:
    """``+CREG``/``+CGREG``/``+CEREG``/``+C5GREG`` -> ``(n, stat)``.

    The answer to ``AT+CREG?`` is ``<n>,<stat>[,<lac>,<ci>[,<AcT>]]``; the URC is
    ``<stat>[,<lac>,<ci>[,<AcT>]]`` and gives ``n=None``. The two differ in the second field:
    a bare integer in the answer, a quoted location area code (or nothing) in the URC.
    """
    fields = _fields(_args(line, "+CREG", "+CGREG", "+CEREG", "+C5GREG"))
    if len(fields) == 1 or _quoted(fields[1]) or not fields[1]:
        return None, _uint(fields[0], "+CREG stat")
    return _uint(fields[0], "+CREG n"), _uint(fields[1], "+CREG stat")


def parse_cops(line: str) -> str | None:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]`` -> the operator (name or MCCMNC) or None."""
    fields = _fields(_args(line, "+COPS"))
    _uint(fields[0], "+COPS mode")
    if len(fields) < 3:
        return None
    return _unquote(fields[2]).strip() or None


def parse_cnum(line: str) -> str | None:
    """``+CNUM: [<alpha>],<number>,<type>`` -> the number, with ``+`` if type is 145.

    None if the line carries no number (some SIMs answer ``+CNUM: ,"",129``).
    """
    fields = _fields(_args(line, "+CNUM"))
    _need(fields, 2, "+CNUM")
    number = _unquote(fields[1]).strip()
    if not number:
        return None
    international = len(fields) >= 3 and fields[2] and _uint(fields[2], "+CNUM type") == 145
    if international and not number.startswith("+"):
        return "+" + number
    return number


def parse_cpms(line: str) -> tuple[MemoryUsage, ...]:
    """The storages of a ``+CPMS`` answer, in order (mem1 read/delete, mem2 write, mem3 receive).

    Read form ``"SM",3,30,"SM",3,30,...`` gives named storages; the answer to the set form
    ``3,30,3,30,...`` gives ``mem=None``.
    """
    fields = _fields(_args(line, "+CPMS"))
    named = _quoted(fields[0])
    step = 3 if named else 2
    if len(fields) % step or not fields[0]:
        raise AtParseError(f"malformed +CPMS: {line!r}")
    usage: list[MemoryUsage] = []
    for i in range(0, len(fields), step):
        mem = _unquote(fields[i]).strip() if named else None
        if named and not mem:
            raise AtParseError(f"+CPMS without memory name: {line!r}")
        used = _uint(fields[i + step - 2], "+CPMS used")
        total = _uint(fields[i + step - 1], "+CPMS total")
        usage.append(MemoryUsage(mem, used, total))
    return tuple(usage)
