"""SMS content faults of the simulated modems: reused references and bad or absurd stamps.

Pure helpers used by :meth:`~muxd_sim.modem_inject.SmsInjector.inject`; no I/O.

**Reused concatenation references** (``faults.reused_refs``). An 8-bit reference wraps
every 256 messages, so a bank or a shop sending many long SMS to one number reuses it.
:func:`reused_ref_texts` turns one text into two different 2-part texts; the simulator
encodes both with the same reference and total, stores their parts interleaved
(A1, B1, B2, A2) and stamps them as two real messages would be:

* the parts of one message :data:`REUSED_PART_GAP_S` seconds apart (an SMSC stamps each
  part as it receives it from the sender);
* message A :data:`REUSED_MESSAGE_GAP_S` seconds older than message B (a modem that was
  out of coverage gets both when it is back: the first sent long before the second).

**Bad and absurd SMSC time stamps** (``faults.bad_scts`` / ``faults.absurd_scts``).
:func:`scts_bytes` builds the 7 TP-SCTS octets of one of :data:`BAD_SCTS` (month 13,
hour 25, a zone octet whose units nibble is not BCD: the decoder must refuse it) or
:data:`ABSURD_SCTS` (year 99, i.e. 2099; zone -17:30: valid octets, absurd values);
:func:`with_scts` puts them into an encoded SMS-DELIVER, whose text stays intact.
"""

from __future__ import annotations

import datetime

from muxd.pdu import EncodedPdu, encode_deliver
from muxd.pdu.scts import encode_scts

__all__ = [
    "ABSURD_SCTS",
    "BAD_SCTS",
    "REUSED_MESSAGE_GAP_S",
    "REUSED_PART_GAP_S",
    "interleaved",
    "reused_ref_stamps",
    "reused_ref_texts",
    "scts_bytes",
    "scts_offset",
    "with_scts",
]

REUSED_PART_GAP_S = 2.0  # seconds between the SMSC stamps of two parts of one message
REUSED_MESSAGE_GAP_S = 3600.0  # seconds between the stamps of two messages sharing a reference
BAD_SCTS = ("month13", "hour25", "zone_nibble")  # invalid: no decoder can read the date
ABSURD_SCTS = ("year2099", "zone-17:30")  # valid octets, values no real SMSC sends

_FILLERS = (
    " Transfer of 9000 RUB to card *4411 confirmed. Never tell this code to anyone: bank staff"
    " never ask for it. If it was not you, call 900 at once and block the card.",
    " Your balance is 12345 RUB after the last payment. Card *4411 is blocked after three wrong"
    " codes in a row; call 900 or open the app to unblock it. Have a nice day.",
)
_TARGET_LENGTHS = (200, 100, 90, 80)  # 2 parts in GSM 7-bit (<= 306), then in UCS-2 (<= 134)
_ZONE_17_30 = 0x0F  # 70 quarters, negative: swapped BCD "07" with the sign bit
_NOT_BCD = 0xA0  # a units nibble of 10 in the zone octet


def _two_parts(text: str, filler: str) -> str:
    for length in _TARGET_LENGTHS:
        candidate = (text + filler * 3)[: max(length, len(text) + 1)]
        parts = encode_deliver("+1", candidate, scts=datetime.datetime.now(datetime.UTC))
        if len(parts) == 2:
            return candidate
    raise ValueError(f"cannot make a 2-part text from {text!r}")


def reused_ref_texts(text: str) -> tuple[str, str]:
    """Two different 2-part texts, each starting with ``text`` (so each stays unique)."""
    return _two_parts(f"{text} (A)", _FILLERS[0]), _two_parts(f"{text} (B)", _FILLERS[1])


def reused_ref_stamps(
    newest: datetime.datetime, parts: int
) -> tuple[list[datetime.datetime], list[datetime.datetime]]:
    """Per-part stamps of messages A (older) and B, B's last part at ``newest``."""
    step = datetime.timedelta(seconds=REUSED_PART_GAP_S)
    first_b = newest - step * (parts - 1)
    first_a = first_b - datetime.timedelta(seconds=REUSED_MESSAGE_GAP_S)
    return [first_a + step * k for k in range(parts)], [first_b + step * k for k in range(parts)]


def interleaved(parts: int) -> list[tuple[int, int]]:
    """Storage order ``(message 0=A / 1=B, part index)``: A1, B1..Bn, A2..An."""
    return [(0, 0), *((1, k) for k in range(parts)), *((0, k) for k in range(1, parts))]


def scts_bytes(when: datetime.datetime, kind: str) -> bytes:
    """The 7 TP-SCTS octets of ``when`` spoiled as ``kind`` (one of BAD_SCTS / ABSURD_SCTS)."""
    raw = bytearray(encode_scts(when))
    if kind == "month13":
        raw[1] = 0x31  # swapped BCD "13"
    elif kind == "hour25":
        raw[3] = 0x52  # swapped BCD "25"
    elif kind == "zone_nibble":
        raw[6] = _NOT_BCD | (raw[6] & 0x0F)
    elif kind == "year2099":
        raw[0] = 0x99
    elif kind == "zone-17:30":
        raw[6] = _ZONE_17_30
    else:
        raise ValueError(f"unknown time stamp fault {kind!r}")
    return bytes(raw)


def scts_offset(pdu: bytes) -> int:
    """Where TP-SCTS starts in an SMS-DELIVER PDU with its SMSC prefix (as in ``+CMGR``)."""
    pos = 1 + pdu[0]  # SMSC length octet + SMSC
    pos += 1  # first octet
    digits = pdu[pos]
    return pos + 2 + (digits + 1) // 2 + 2  # OA length, TOA, OA, PID, DCS


def with_scts(pdu: EncodedPdu, raw: bytes) -> EncodedPdu:
    """``pdu`` with its 7 TP-SCTS octets replaced by ``raw`` (length unchanged)."""
    if len(raw) != 7:
        raise ValueError(f"a TP-SCTS is 7 octets, got {len(raw)}")
    data = bytearray(bytes.fromhex(pdu.hex))
    pos = scts_offset(bytes(data))
    data[pos : pos + 7] = raw
    return EncodedPdu(hex=data.hex().upper(), tpdu_length=pdu.tpdu_length)
