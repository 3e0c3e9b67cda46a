"""Concatenated SMS reassembly (pure: no clock of its own, callers pass ``now``)."""

from __future__ import annotations

from collections.abc import Sequence

from muxd.pdu.dcs import GSM7, UCS2
from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import decode_septets
from muxd.pdu.national import locking_table, single_shift_table
from muxd.pdu.records import SmsDeliver, SmsSubmit
from muxd.pdu.ucs2 import decode_ucs2, decode_ucs2_strict
from muxd.pdu.udh import parse_udh

__all__ = ["ConcatKey", "Reassembler", "concat_key", "reassemble"]

ConcatKey = tuple[str, int, str, int, int]
Part = SmsDeliver | SmsSubmit


def concat_key(sim: str, sms: SmsDeliver) -> ConcatKey | None:
    """(sim, originator TOA, originator, ref, total) for a concatenated part, else None.

    Neither SMSC nor timestamp is part of the key: parts of one message can
    arrive through different SMSCs (gateways.md §5 #11/#12).
    """
    c = sms.concat
    if c is None:
        return None
    return (sim, sms.originator_toa, sms.originator, c.ref, c.total)


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
    apart is :class:`Reassembler`'s job (it opens a second set when a seq repeats
    with different user data); pass ``reassemble`` one set it produced, or parts
    known to belong together.
    Raises PduError when parts are missing or belong to different sets, and
    (``strict``, the default) when a UCS-2 surrogate dangles or is unpaired;
    with ``strict=False`` such a surrogate becomes U+FFFD instead. 8-bit data
    yields "".
    """
    return _join(parts, strict=strict)


class _PendingSet:
    __slots__ = ("created", "parts")

    def __init__(self, created: float) -> None:
        self.created = created
        self.parts: dict[int, SmsDeliver] = {}


class Reassembler:
    """Collects parts per (SIM, originator, ref, total) until a set is complete.

    Pure: it never reads a clock; every method takes ``now`` (any monotonic
    float, e.g. ``loop.time()``). Several sets are tracked at once. A part whose
    seq is already present with identical user data is a duplicate and ignored;
    with *different* user data it opens a second set under the same key (senders
    that reuse one reference for back-to-back messages). Completed sets are not
    remembered, so a part re-read after its set completed starts a new set:
    de-duplicating re-listed PDUs (by SIM storage index / raw PDU) is the caller's
    job, and ``expire`` eventually hands such a stray part back.
    """

    def __init__(self) -> None:
        self._sets: dict[ConcatKey, list[_PendingSet]] = {}

    def __len__(self) -> int:
        """Number of incomplete sets held."""
        return sum(len(v) for v in self._sets.values())

    def oldest(self) -> float | None:
        """``now`` at which the oldest incomplete set started, or None."""
        return min((s.created for v in self._sets.values() for s in v), default=None)

    def feed(self, sim: str, sms: SmsDeliver, now: float) -> str | None:
        """Add one part; return the full text when this part completes its set.

        Unconcatenated messages and 1-of-1 sets return at once. A complete set
        is decoded leniently: an unpaired UCS-2 surrogate becomes U+FFFD rather
        than losing the message (``reassemble`` is the strict variant).
        """
        key = concat_key(sim, sms)
        if key is None:
            return sms.text
        seq = sms.concat.seq if sms.concat is not None else 0
        total = key[4]
        if total == 1:
            return _join([sms], strict=False)
        sets = self._sets.setdefault(key, [])
        for pending in sets:
            have = pending.parts.get(seq)
            if have is not None and have.user_data == sms.user_data:
                return None
        target = next((p for p in sets if seq not in p.parts), None)
        if target is None:
            target = _PendingSet(now)
            sets.append(target)
        target.parts[seq] = sms
        if len(target.parts) < total:
            return None
        sets.remove(target)
        if not sets:
            del self._sets[key]
        return _join(list(target.parts.values()), strict=False)

    def expire(self, now: float, max_age: float) -> list[list[SmsDeliver]]:
        """Remove and return incomplete sets whose first part is older than ``max_age``.

        Each set comes back as its parts in seq order.
        """
        out: list[list[SmsDeliver]] = []
        for key in list(self._sets):
            sets = self._sets[key]
            keep: list[_PendingSet] = []
            for pending in sets:
                if now - pending.created > max_age:
                    out.append([pending.parts[s] for s in sorted(pending.parts)])
                else:
                    keep.append(pending)
            if keep:
                self._sets[key] = keep
            else:
                del self._sets[key]
        return out
