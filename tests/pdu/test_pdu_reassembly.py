"""reassemble, concat_key and the clock-free Reassembler."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_build import deliver_hex
from pdu_vectors import T11, T12, T20, V3, V11, V12, V19, V20, V28, V29, ts

from muxd.pdu import (
    PduError,
    Reassembler,
    SmsDeliver,
    concat_key,
    decode_pdu,
    encode_deliver,
    reassemble,
)

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
    assert concat_key("iccid1", p1) == ("iccid1", 0x91, "+16175046925", 0x4C, 2)
    assert concat_key("iccid1", p1) == concat_key("iccid1", p2)
    assert concat_key("iccid2", p1) != concat_key("iccid1", p1)
    assert concat_key("iccid1", d(V3)) is None


def test_concat_key_separates_toa() -> None:
    a = d(deliver_hex(oa="0B918100551512F2", udh=bytes([0, 3, 1, 2, 1]), septets=b"x"))
    b = d(deliver_hex(oa="0B818100551512F2", udh=bytes([0, 3, 1, 2, 1]), septets=b"x"))
    assert concat_key("s", a) != concat_key("s", b)


# --- Reassembler ----------------------------------------------------------------------


def test_feed_single_and_one_of_one() -> None:
    r = Reassembler()
    assert r.feed("s", d(V3), 0.0) == "hellohello"
    assert r.feed("s", d(V19), 0.0) is not None
    assert len(r) == 0


def test_feed_real_vectors_across_smscs() -> None:
    r = Reassembler()
    assert r.feed("sim", d(V12), 1.0) is None
    assert len(r) == 1
    assert r.oldest() == 1.0
    assert r.feed("sim", d(V12), 2.0) is None  # duplicate
    assert r.feed("sim", d(V11), 3.0) == T11 + T12
    assert len(r) == 0
    assert r.oldest() is None


def test_feed_reference_zero() -> None:
    r = Reassembler()
    assert r.feed("sim", d(V29), 0.0) is None
    assert r.feed("sim", d(V28), 0.0) == "1" * 160 + "2" * 21


def test_several_sets_at_once_and_per_sim() -> None:
    r = Reassembler()
    a = parts_of("A" * 300, originator="+1111", ref=9)
    b = parts_of("B" * 300, originator="+2222", ref=9)
    c = parts_of("C" * 300, originator="+1111", ref=9)  # same sender+ref, other SIM
    done = []
    for pa, pb, pc in zip(a, b, c, strict=True):
        for sim, p in (("s1", pa), ("s1", pb), ("s2", pc)):
            out = r.feed(sim, p, 0.0)
            if out is not None:
                done.append(out)
    assert sorted(done) == ["A" * 300, "B" * 300, "C" * 300]
    assert len(r) == 0


def test_reused_reference_with_other_content_opens_second_set() -> None:
    r = Reassembler()
    first = parts_of("first " * 40, ref=7)
    second = parts_of("other " * 40, ref=7)
    assert len(first) == len(second) == 2
    assert r.feed("s", first[0], 0.0) is None
    assert r.feed("s", second[0], 0.0) is None  # same seq, different data: not a duplicate
    assert len(r) == 2
    assert r.feed("s", first[1], 0.0) == "first " * 40
    assert r.feed("s", second[1], 0.0) == "other " * 40
    assert len(r) == 0


def test_expire_returns_only_old_incomplete_sets() -> None:
    r = Reassembler()
    old = parts_of("o" * 400, ref=1)
    young = parts_of("y" * 400, ref=2)
    r.feed("s", old[2], 10.0)
    r.feed("s", old[0], 50.0)
    r.feed("s", young[1], 100.0)
    assert r.expire(now=100.0, max_age=90.0) == []
    assert r.expire(now=100.0, max_age=90.0 - 1e-9) == [[old[0], old[2]]]
    assert len(r) == 1
    assert r.expire(now=1000.0, max_age=60.0) == [[young[1]]]
    assert len(r) == 0
    assert r.feed("s", old[1], 1001.0) is None  # a late part starts afresh


def test_completed_set_with_bad_surrogate_still_delivers() -> None:
    r = Reassembler()
    assert r.feed("s", ucs2_part("0041D83D", 1), 0.0) is None
    assert r.feed("s", ucs2_part("0042", 2), 0.0) == "A\ufffdB"
    broken = [ucs2_part("0041D83D", 1), ucs2_part("0042", 2)]
    with pytest.raises(PduError, match="unpaired surrogate"):
        reassemble(broken)
    assert reassemble(broken, strict=False) == "A\ufffdB"
    with pytest.raises(PduError, match="lacks parts"):
        reassemble(broken[:1], strict=False)


def test_megafon_part_one_waits() -> None:
    r = Reassembler()
    sms = d(V20)
    assert r.feed("s", sms, 0.0) is None
    assert sms.text == T20
    assert r.expire(1.0, 0.5) == [[sms]]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=500), min_size=1, max_size=4),
    st.integers(0, 2**32),
)
def test_shuffled_interleaved_with_duplicates(texts: list[str], seed: int) -> None:
    rng = random.Random(seed)
    feeds = []
    for i, text in enumerate(texts):
        parts = parts_of(text, originator=f"+1555000{i:04d}", ref=i)
        feeds += parts + rng.sample(parts, k=min(2, len(parts)))
    rng.shuffle(feeds)
    r = Reassembler()
    done = [out for p in feeds if (out := r.feed("sim", p, 0.0)) is not None]
    # Every message comes out. (A duplicate arriving after its set completed starts a
    # new set, which may complete again: de-duplicating re-read PDUs is the caller's job.)
    assert set(done) == set(texts)
    assert all(len(s) < s[0].concat.total for s in r.expire(1.0, 0.0) if s[0].concat)


def test_reassemble_takes_one_generation_first_part_per_seq_wins() -> None:
    """Documented contract: ``reassemble`` cannot tell two generations of a reused
    reference apart; the first part per seq wins (see also
    test_reused_reference_with_other_content_opens_second_set)."""
    first = parts_of("first " * 40, ref=7)
    second = parts_of("other " * 40, ref=7)
    mixed = [first[0], second[0], second[1], first[1]]
    assert reassemble(mixed) == ("first " * 40)[:153] + ("other " * 40)[153:]
    assert reassemble(first + second) == "first " * 40
    assert reassemble(second + first) == "other " * 40
