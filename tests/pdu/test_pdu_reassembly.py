"""reassemble, concat_key and place_part (the one reassembly rule)."""

from __future__ import annotations

import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_build import deliver_hex
from pdu_vectors import T11, T12, T20, V3, V11, V12, V19, V20, V28, V29, ts

from muxd.pdu import (
    PduError,
    Placement,
    SmsDeliver,
    WaitingPart,
    concat_key,
    decode_pdu,
    encode_deliver,
    place_part,
    reassemble,
)
from muxd.pdu.reassembly import MAX_GENERATIONS, READ_WINDOW, STAMP_WINDOW

T0 = ts(2024, 5, 6, 7, 8, 9, 3)


def d(pdu: str) -> SmsDeliver:
    sms = decode_pdu(pdu)
    assert isinstance(sms, SmsDeliver)
    return sms


def parts_of(text: str, originator: str = "+15550001111", ref: int = 1) -> list[SmsDeliver]:
    return [d(p.hex) for p in encode_deliver(originator, text, scts=T0, ref=ref)]


def ucs2_part(ud_hex: str, seq: int, total: int = 2, ref: int = 0x21) -> SmsDeliver:
    udh = bytes([0x00, 0x03, ref, total, seq])
    return d(deliver_hex(dcs=0x08, udh=udh, ud=bytes.fromhex(ud_hex)))


# --- reassemble -----------------------------------------------------------------------


def test_38_split_surrogate_joined_from_raw_octets() -> None:
    p1 = ucs2_part("D83DDE01D83D", 1)
    p2 = ucs2_part("DE01D83DDE01", 2)
    assert reassemble([p1, p2]) == "😁😁😁"
    assert reassemble([p2, p1, p2]) == "😁😁😁"


def test_38_lone_part_with_dangling_surrogate_raises() -> None:
    lone = ucs2_part("D83DDE01D83D", 1, total=1)
    with pytest.raises(PduError, match="dangling surrogate"):
        reassemble([lone])
    with pytest.raises(PduError, match="lacks parts"):
        reassemble([ucs2_part("D83DDE01D83D", 1)])


def test_missing_parts_named() -> None:
    parts = parts_of("x" * 700)
    assert len(parts) == 5
    with pytest.raises(PduError, match=r"lacks parts \[2, 4\]"):
        reassemble([parts[0], parts[2], parts[4]])


def test_parts_of_other_sets_rejected() -> None:
    a = parts_of("a" * 200, ref=1)
    b = parts_of("b" * 200, ref=2)
    with pytest.raises(PduError, match="does not belong"):
        reassemble([a[0], b[1]])
    with pytest.raises(PduError, match="no parts"):
        reassemble([])


def test_unconcatenated_message() -> None:
    sms = d(V3)
    assert reassemble([sms]) == "hellohello"
    assert reassemble([sms, sms]) == "hellohello"
    with pytest.raises(PduError):
        reassemble([sms, parts_of("a" * 200)[0]])


def test_mixed_encodings_are_joined_per_part() -> None:
    p1 = d(deliver_hex(udh=bytes([0, 3, 5, 2, 1]), septets=b"abc"))
    p2 = d(deliver_hex(dcs=0x08, udh=bytes([0, 3, 5, 2, 2]), ud="жж".encode("utf-16-be")))
    assert reassemble([p2, p1]) == "abcжж"


def test_eight_bit_sets_have_no_text() -> None:
    p1 = d(deliver_hex(dcs=0x04, udh=bytes([0, 3, 5, 2, 1]), ud=b"\x01"))
    p2 = d(deliver_hex(dcs=0x04, udh=bytes([0, 3, 5, 2, 2]), ud=b"\x02"))
    assert reassemble([p1, p2]) == ""


# --- concat_key -----------------------------------------------------------------------


def test_concat_key_ignores_smsc_and_time() -> None:
    p1, p2 = d(V11), d(V12)
    assert p1.smsc != p2.smsc
    assert p1.scts != p2.scts
    assert concat_key("iccid1", p1) == "iccid1|145|+16175046925|8:76|2"
    assert concat_key("iccid1", p1) == concat_key("iccid1", p2)
    assert concat_key("iccid2", p1) != concat_key("iccid1", p1)
    assert concat_key("iccid1", d(V3)) is None
    assert concat_key("iccid1", d(V19)) is None  # 1 of 1: a message on its own


def test_concat_key_separates_toa_and_reference_size() -> None:
    a = d(deliver_hex(oa="0B918100551512F2", udh=bytes([0, 3, 1, 2, 1]), septets=b"x"))
    b = d(deliver_hex(oa="0B818100551512F2", udh=bytes([0, 3, 1, 2, 1]), septets=b"x"))
    c = d(deliver_hex(oa="0B918100551512F2", udh=bytes([8, 4, 0, 1, 2, 1]), septets=b"x"))
    assert len({concat_key("s", a), concat_key("s", b), concat_key("s", c)}) == 3


# --- place_part: the one reassembly rule ---------------------------------------------


class Sets:
    """The SQL store's use of place_part, in memory: parts wait per key until complete."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[tuple[WaitingPart, SmsDeliver]]] = {}
        self.released: list[list[SmsDeliver]] = []

    def feed(self, sms: SmsDeliver, read_at: float, sim: str = "sim") -> str | None:
        key = concat_key(sim, sms)
        if key is None:
            return sms.text
        assert sms.concat is not None
        entries = self.waiting.setdefault(key, [])
        stamp = sms.scts.timestamp() if sms.scts is not None else None
        placed = place_part([w for w, _ in entries], sms.concat.seq, stamp, read_at)
        for gen in placed.release:
            self.released.append([p for w, p in entries if w.gen == gen])
            entries[:] = [e for e in entries if e[0].gen != gen]
        entries.append((WaitingPart(placed.gen, sms.concat.seq, stamp, read_at), sms))
        members = [p for w, p in entries if w.gen == placed.gen]
        if len(members) < sms.concat.total:
            return None
        entries[:] = [e for e in entries if e[0].gen != placed.gen]
        return reassemble(members, strict=False)

    def __len__(self) -> int:
        return len({(k, w.gen) for k, v in self.waiting.items() for w, _ in v})


def sent_at(
    text: str, when: datetime.datetime, ref: int = 7, sender: str = "Bank"
) -> list[SmsDeliver]:
    """The parts of one SMS as an SMSC stamps them: one second apart."""
    n = len(encode_deliver(sender, text, scts=when, ref=ref))
    return [
        d(encode_deliver(sender, text, scts=when + i * SECOND, ref=ref)[i].hex) for i in range(n)
    ]


SECOND = datetime.timedelta(seconds=1)
A_TEXT = "Code for A is 1111. " * 9  # 180 characters: two parts
B_TEXT = "Transfer 9000 to B. " * 9


@pytest.mark.parametrize("gap", [60, 170, 600, 3600])
def test_interleaved_reused_reference_is_not_mixed(gap: int) -> None:
    """A1, B1, B2, A2 from one sender with one reference: two messages, A and B."""
    a = sent_at(A_TEXT, T0)
    b = sent_at(B_TEXT, T0 + gap * SECOND)
    assert len(a) == len(b) == 2
    sets = Sets()
    done = [sets.feed(p, 1000.0 + i) for i, p in enumerate([a[0], b[0], b[1], a[1]])]
    assert [t for t in done if t is not None] == [B_TEXT, A_TEXT]
    assert len(sets) == 0


def test_a_part_far_in_time_never_fills_a_gap() -> None:
    a = sent_at(A_TEXT, T0)
    b = sent_at(B_TEXT, T0 + 3600 * SECOND)
    sets = Sets()
    assert sets.feed(a[0], 1.0) is None  # a[1] is lost
    assert sets.feed(b[1], 2.0) is None  # would complete a[0]'s set by number alone
    assert len(sets) == 2
    assert sets.feed(b[0], 3.0) == B_TEXT


def test_real_vectors_across_smscs_one_second_apart() -> None:
    sets = Sets()
    assert sets.feed(d(V12), 5.0) is None
    assert sets.feed(d(V11), 9.0) == T11 + T12


def test_reference_zero_and_one_of_one() -> None:
    sets = Sets()
    assert sets.feed(d(V29), 0.0) is None
    assert sets.feed(d(V28), 0.0) == "1" * 160 + "2" * 21
    assert sets.feed(d(V19), 0.0) is not None
    assert sets.feed(d(V3), 0.0) == "hellohello"


def test_unknown_stamps_fall_back_to_the_read_time() -> None:
    month_13 = "11310021436500"
    a = [
        d(deliver_hex(scts=month_13, udh=bytes([0, 3, 9, 2, seq]), septets=text))
        for seq, text in ((1, b"ab"), (2, b"cd"))
    ]
    assert all(p.scts is None for p in a)
    near = Sets()
    assert near.feed(a[0], 100.0) is None
    assert near.feed(a[1], 100.0 + READ_WINDOW) == "abcd"
    far = Sets()
    assert far.feed(a[0], 100.0) is None
    assert far.feed(a[1], 100.0 + READ_WINDOW + 1) is None
    assert len(far) == 2


def test_window_bounds_and_closest_set_wins() -> None:
    def w(gen: int, seq: int, stamp: float | None, read: float = 0.0) -> WaitingPart:
        return WaitingPart(gen, seq, stamp, read)

    assert place_part([], 1, 0.0, 0.0) == Placement(gen=0, new=True)
    assert place_part([w(0, 1, 0.0)], 2, STAMP_WINDOW, 0.0).gen == 0
    assert place_part([w(0, 1, 0.0)], 2, STAMP_WINDOW + 1, 0.0) == Placement(gen=1, new=True)
    assert place_part([w(0, 1, 0.0)], 1, 0.0, 0.0) == Placement(gen=1, new=True)  # seq taken
    # Every member must be close: a set spanning the window takes nothing beyond it.
    assert place_part([w(0, 1, 0.0), w(0, 2, 100.0)], 3, 200.0, 0.0).new
    # Of two sets that could take it, the closer one does.
    assert place_part([w(0, 1, 0.0), w(1, 1, 150.0)], 2, 151.0, 0.0).gen == 1
    assert place_part([w(3, 1, 0.0), w(5, 1, 150.0)], 2, 2.0, 0.0).gen == 3
    # A known stamp against an unknown one: by read time.
    assert place_part([w(0, 1, None, 10.0)], 2, 1e9, 10.0 + READ_WINDOW).gen == 0


def test_generations_per_key_are_capped_oldest_released() -> None:
    waiting = [WaitingPart(g, 1, g * 1000.0, 0.0) for g in range(MAX_GENERATIONS)]
    placed = place_part(waiting, 1, 1e6, 0.0)
    assert placed == Placement(gen=MAX_GENERATIONS, new=True, release=(0,))
    assert place_part(waiting[:-1], 1, 1e6, 0.0).release == ()
    # Through the in-memory store: the released set is handed back, not dropped.
    sets = Sets()
    for k in range(MAX_GENERATIONS + 3):
        assert sets.feed(sent_at(f"{k} " * 100, T0 + k * 3600 * SECOND)[0], float(k)) is None
    assert len(sets) == MAX_GENERATIONS
    assert [s[0].text[:3] for s in sets.released] == ["0 0", "1 1", "2 2"]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.text(min_size=161, max_size=460), min_size=1, max_size=5),
    st.integers(0, 2**32),
)
def test_shuffled_messages_sharing_one_reference(texts: list[str], seed: int) -> None:
    """Messages from one sender on one reference, sent further apart than the window (beyond
    the few seconds between their own parts): however
    their parts interleave, each comes out whole and unmixed."""
    rng = random.Random(seed)
    feeds = []
    for i, text in enumerate(texts):
        feeds += sent_at(text, T0 + i * int(STAMP_WINDOW + 30) * SECOND, ref=3)
    rng.shuffle(feeds)
    sets = Sets()
    done = [out for i, p in enumerate(feeds) if (out := sets.feed(p, float(i))) is not None]
    assert sorted(done) == sorted(texts)
    assert len(sets) == 0
    assert sets.released == []


def test_completed_set_with_bad_surrogate_still_delivers() -> None:
    sets = Sets()
    assert sets.feed(ucs2_part("0041D83D", 1), 0.0) is None
    assert sets.feed(ucs2_part("0042", 2), 0.0) == "A\ufffdB"
    broken = [ucs2_part("0041D83D", 1), ucs2_part("0042", 2)]
    with pytest.raises(PduError, match="unpaired surrogate"):
        reassemble(broken)
    assert reassemble(broken, strict=False) == "A\ufffdB"
    with pytest.raises(PduError, match="lacks parts"):
        reassemble(broken[:1], strict=False)


def test_megafon_part_one_waits() -> None:
    sets = Sets()
    sms = d(V20)
    assert sets.feed(sms, 0.0) is None
    assert sms.text == T20
    assert len(sets) == 1


def test_reassemble_takes_one_generation_first_part_per_seq_wins() -> None:
    """Documented contract: ``reassemble`` cannot tell two generations of a reused
    reference apart; the first part per seq wins (see also
    test_interleaved_reused_reference_is_not_mixed)."""
    first = parts_of("first " * 40, ref=7)
    second = parts_of("other " * 40, ref=7)
    mixed = [first[0], second[0], second[1], first[1]]
    assert reassemble(mixed) == ("first " * 40)[:153] + ("other " * 40)[153:]
    assert reassemble(first + second) == "first " * 40
    assert reassemble(second + first) == "other " * 40
