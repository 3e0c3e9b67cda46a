"""Events produced by :class:`muxd.at.AtParser`.

All events are frozen msgspec Structs that hold only scalars, so they compare by value,
hash, and are created without GC tracking (``gc=False``). They are tagged with their class
name, so a list of :data:`Event` round-trips through ``msgspec.json`` (``/debug/ports``).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec

FinalKind: TypeAlias = Literal[
    "OK",
    "ERROR",
    "CME",
    "CMS",
    "NO CARRIER",
    "BUSY",
    "NO ANSWER",
    "NO DIALTONE",
    "NOT SUPPORTED",
]

GarbageReason: TypeAlias = Literal[
    "line too long",
    "control bytes",
    "invalid utf-8",
    "expected pdu",
    "incomplete response",
]

#: A line longer than ``max_line`` (or the bytes dropped while resyncing after one).
LINE_TOO_LONG: GarbageReason = "line too long"
#: Non-printable bytes stripped from a line; the cleaned line is still parsed.
CONTROL_BYTES: GarbageReason = "control bytes"
#: A line that is not valid UTF-8; it is still parsed, decoded with U+FFFD replacements.
INVALID_UTF8: GarbageReason = "invalid utf-8"
#: A line after a two-line header that is neither hex nor any line the parser knows.
EXPECTED_PDU: GarbageReason = "expected pdu"
#: A two-line header whose PDU never came before ``command_done()``/``command_sent()``.
INCOMPLETE_RESPONSE: GarbageReason = "incomplete response"


class Echo(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The modem echoing the command line in flight (echo is on until ``ATE0``)."""

    line: str


class Info(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An information line that belongs to the command in flight.

    For ``+CMGR:`` / ``+CMGL:`` headers the following PDU line (hex) is attached as ``pdu``;
    ``pdu`` is None for every other line, and for a header whose PDU line never came.
    """

    line: str
    pdu: str | None = None


class Final(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A final result code; it ends the command in flight.

    ``code`` is the numeric value of ``+CME ERROR: n`` / ``+CMS ERROR: n``; None for every
    other kind and for verbose forms (``+CME ERROR: SIM not inserted``).
    """

    kind: FinalKind
    code: int | None
    line: str

    @property
    def ok(self) -> bool:
        return self.kind == "OK"


class Urc(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An unsolicited result code, or any line that arrived with no command in flight.

    ``name`` is the text before the first ``:`` (``+CMTI``, ``^RSSI``) or the whole line
    (``RING``, ``SMS Ready``); ``args`` is the stripped text after the ``:`` ("" if none).
    Two-line URCs (``+CMT``, ``+CDS``, ``+CBM``) carry the following hex line as ``pdu``.
    """

    name: str
    args: str
    pdu: str | None
    line: str


class Prompt(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The ``> `` prompt of ``AT+CMGS`` / ``AT+CMGW``: write the PDU and Ctrl-Z now."""


class Garbage(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Bytes the parser dropped or repaired while resyncing; the caller counts and logs them."""

    data: bytes
    reason: GarbageReason


Event: TypeAlias = Echo | Info | Final | Urc | Prompt | Garbage
