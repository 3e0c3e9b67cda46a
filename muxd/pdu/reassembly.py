"""Concatenated SMS: which waiting set a part joins, and joining a complete set's text.

Pure: no clock of its own; callers pass the times. This is the one reassembly rule of muxd (the
journal applies it to the sets it keeps in SQLite):

- The key is the SIM, the originator (TOA and address), the reference (with its size) and the
  total number of parts; never the SMSC (parts of one message can come through different SMSCs)
  nor the time stamp.
- Under one key, several *generations* may wait at once: 8-bit references wrap every 256
  messages, and banks and shops send many, so two messages from one sender can share a key.
  The parts of one message carry SMSC time stamps seconds apart. A part joins a waiting set
  only if that set lacks its sequence number and every part of the set is within
  :data:`STAMP_WINDOW` of it (by SMSC stamp; by the time muxd read them, within
  :data:`READ_WINDOW`, when either stamp is unknown); of such sets the closest wins. Otherwise
  the part starts a new generation: a reused reference starts a new set, it never fills a
  stranger's gap.
- At most :data:`MAX_GENERATIONS` wait per key; beyond, the oldest are released incomplete.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from muxd.pdu.dcs import GSM7, UCS2
from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import decode_septets
from muxd.pdu.national import locking_table, single_shift_table
from muxd.pdu.records import SmsDeliver, SmsSubmit
from muxd.pdu.ucs2 import decode_ucs2, decode_ucs2_strict
from muxd.pdu.udh import parse_udh

__all__ = [
    "MAX_GENERATIONS",
    "READ_WINDOW",
    "STAMP_WINDOW",
    "Placement",
    "WaitingPart",
    "concat_key",
    "place_part",
    "reassemble",
]

#: Seconds between the SMSC stamps of two parts of one message, at most. A sender submits the
#: parts back to back (real captures: 1 s apart); the margin covers parts stamped by two SMSCs
#: whose clocks disagree a little.
STAMP_WINDOW = 180.0
#: The same, by the time muxd read the parts, when a stamp is unknown: the network may deliver
#: the parts of one message some minutes apart (a retry), never near the reassembly timeout.
READ_WINDOW = 600.0
#: Incomplete sets waiting under one key at most; a new one beyond releases the oldest. Bounds
#: the work per part and the rows a lost part can pin when a sender reuses one reference.
MAX_GENERATIONS = 8

Part = SmsDeliver | SmsSubmit


def concat_key(sim: str, sms: SmsDeliver) -> str | None:
    """The reassembly key of a part of a concatenated message (None: a message on its own).

    "sim|originator TOA|originator|ref bits:ref|total". A 1-of-1 set is a message on its own.
    """
    c = sms.concat
    if c is None or c.total <= 1:
        return None
    return f"{sim}|{sms.originator_toa}|{sms.originator}|{c.ref_bits}:{c.ref}|{c.total}"


class WaitingPart(msgspec.Struct, frozen=True, array_like=True):
    """One part of a set still waiting under a key, as the store remembers it."""

    gen: int  # the set (generation) it belongs to
    seq: int
    stamp: float | None  # SMSC time stamp, Unix seconds; None when unknown
    read_at: float  # when muxd read it, Unix seconds


class Placement(msgspec.Struct, frozen=True):
    """Where a new part goes: ``gen`` (a waiting set, or a new one) and the sets to release
    incomplete now, oldest first, because the key holds too many."""

    gen: int
    new: bool
    release: tuple[int, ...] = ()


def _distance(a_stamp: float | None, a_read: float, b: WaitingPart) -> float | None:
    """How far apart two parts are, or None when too far to be one message."""
    if a_stamp is not None and b.stamp is not None:
        gap = abs(a_stamp - b.stamp)
        return gap if gap <= STAMP_WINDOW else None
    gap = abs(a_read - b.read_at)
    return gap if gap <= READ_WINDOW else None


def place_part(
    waiting: Iterable[WaitingPart], seq: int, stamp: float | None, read_at: float
) -> Placement:
    """The set a new part (``seq``, its SMSC ``stamp`` or None, read at ``read_at``) joins.

    ``waiting``: every part still waiting under the part's key. Generation numbers grow with
    age: a new set gets one above every waiting set's.
    """
    sets: dict[int, list[WaitingPart]] = {}
    for p in waiting:
        sets.setdefault(p.gen, []).append(p)
    best: tuple[float, int] | None = None
    for gen, members in sets.items():
        if any(m.seq == seq for m in members):
            continue  # a reused reference: this set has that part already
        worst = 0.0
        for m in members:
            d = _distance(stamp, read_at, m)
            if d is None:
                break
            worst = max(worst, d)
        else:
            if best is None or (worst, gen) < best:
                best = (worst, gen)
    if best is not None:
        return Placement(gen=best[1], new=False)
    gen = max(sets, default=-1) + 1
    over = len(sets) + 1 - MAX_GENERATIONS
    release = tuple(sorted(sets)[:over]) if over > 0 else ()
    return Placement(gen=gen, new=True, release=release)


def _ordered(parts: Sequence[Part]) -> list[Part]:
    if not parts:
        raise PduError("no parts to reassemble")
    first = parts[0]
    c0 = first.concat
    if c0 is None:
        if len(parts) > 1 and any(p != first for p in parts[1:]):
            raise PduError("parts without a concatenation header cannot be joined")
        return [first]
    by_seq: dict[int, Part] = {}
    for p in parts:
        c = p.concat
        if c is None or (c.ref, c.total, c.ref_bits) != (c0.ref, c0.total, c0.ref_bits):
            raise PduError(f"part {c} does not belong to the set of {c0}")
        by_seq.setdefault(c.seq, p)
    missing = [s for s in range(1, c0.total + 1) if s not in by_seq]
    if missing:
        raise PduError(f"concatenated set ref {c0.ref} of {c0.total} lacks parts {missing}")
    return [by_seq[s] for s in range(1, c0.total + 1)]


def _join(parts: Sequence[Part], strict: bool) -> str:
    ordered = _ordered(parts)
    first = ordered[0]
    enc = first.encoding
    if any(p.encoding != enc for p in ordered):
        # Mixed alphabets: each part stands alone.
        return "".join(p.text for p in ordered)
    if enc == UCS2:
        raw = b"".join(p.user_data for p in ordered)
        return decode_ucs2_strict(raw) if strict else decode_ucs2(raw)
    if enc == GSM7:
        septets = b"".join(p.user_data for p in ordered)
        if not first.udh:
            return decode_septets(septets)
        info = parse_udh(first.udh, 0)
        locking = locking_table(info.locking_shift)
        return decode_septets(septets, locking, single_shift_table(info.single_shift))
    return "".join(p.text for p in ordered)  # 8bit / compressed carry no text


def reassemble(parts: Sequence[SmsDeliver] | Sequence[SmsSubmit], *, strict: bool = True) -> str:
    """Join the parts of one concatenated message (any order, duplicates allowed).

    Raw user data is joined before decoding: UCS-2 octets (so a surrogate pair
    split across parts comes out right), GSM 7-bit septets (decoded with the
    shift tables of part 1). Duplicates are dropped by seq (the first one wins).

    Callers must pass parts of **one generation** of a set: a sender that reuses a
    reference for back-to-back messages produces parts with equal (ref, total,
    seq) but other content, and ``reassemble`` cannot tell them apart, so a
    mixed list silently yields the first-seen part per seq. Telling generations
    apart is :func:`place_part`'s job.
    Raises PduError when parts are missing or belong to different sets, and
    (``strict``, the default) when a UCS-2 surrogate dangles or is unpaired;
    with ``strict=False`` such a surrogate becomes U+FFFD instead. 8-bit data
    yields "".
    """
    return _join(parts, strict=strict)
