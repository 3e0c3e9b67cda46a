"""encode_deliver / encode_submit: known answers, splitting rules, round trips."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_vectors import V2, V3, V16, V25, ts

from muxd.pdu import (
    Concat,
    EncodedPdu,
    PduError,
    SmsDeliver,
    SmsSubmit,
    decode_pdu,
    encode_deliver,
    encode_submit,
    reassemble,
)
from muxd.pdu.gsm7 import DEFAULT_EXTENSION, DEFAULT_LOCKING

T0 = ts(2024, 5, 6, 7, 8, 9, 3)
GSM_CHARS = [c for i, c in enumerate(DEFAULT_LOCKING) if i != 0x1B] + [
    c for c in DEFAULT_EXTENSION if c is not None
]


def decode_all(pdus: list[EncodedPdu]) -> list[SmsDeliver]:
    out = []
    for p in pdus:
        sms = decode_pdu(p.hex, tpdu_length=p.tpdu_length)
        assert isinstance(sms, SmsDeliver)
        assert decode_pdu(p.hex) == sms
        out.append(sms)
    return out


def septets_of(sms: SmsDeliver) -> int:
    return len(sms.user_data)


# --- known answers ---------------------------------------------------------------------


def test_known_answer_gsm7() -> None:
    (pdu,) = encode_deliver(
        "+18005551212", "hellohello", scts=ts(2011, 1, 1, 12, 34, 56, 0), smsc="+12345678901"
    )
    assert pdu.hex == V3
    assert pdu.tpdu_length == len(V3) // 2 - 8


def test_known_answer_short_smsc() -> None:
    (pdu,) = encode_deliver(
        "+27821234567", "Test2", scts=ts(2013, 3, 8, 15, 2, 16, 2), smsc="+2782913593"
    )
    assert pdu.hex == V16


def test_known_answer_alphanumeric_ucs2() -> None:
    (pdu,) = encode_deliver(
        "InternetSMS", "тест", scts=ts(2011, 3, 29, 19, 20, 4, 4), smsc="+79037011111"
    )
    assert pdu.hex == V2


def test_known_answer_android() -> None:
    (pdu,) = encode_deliver(
        "+16505551111", "Test", scts=ts(2006, 6, 6, 15, 3, 3, -7), smsc="+14155551212"
    )
    assert pdu.hex == V25.upper()


def test_output_shape() -> None:
    (pdu,) = encode_deliver("123", "x", scts=T0, smsc=None)
    assert pdu.hex.startswith("00")
    assert pdu.hex == pdu.hex.upper()
    assert pdu.tpdu_length == len(pdu.hex) // 2 - 1


@pytest.mark.parametrize(
    ("originator", "toa", "shown"),
    [
        ("+79991234567", 0x91, "+79991234567"),
        ("900", 0x81, "900"),
        ("Megafon", 0xD0, "Megafon"),
        ("Bank-{X}", 0xD0, "Bank-{X}"),
        ("VeryLongNam", 0xD0, "VeryLongNam"),
        ("a@b", 0xD0, "a@b"),
        ("@@@@@@@", 0xD0, "@@@@@@@"),
    ],
)
def test_originator_forms(originator: str, toa: int, shown: str) -> None:
    (sms,) = decode_all(encode_deliver(originator, "hi", scts=T0))
    assert (sms.originator_toa, sms.originator) == (toa, shown)


def test_alphanumeric_length_is_in_semi_octets() -> None:
    (pdu,) = encode_deliver("Megafon", "x", scts=T0, smsc=None)
    assert pdu.hex[4:8] == "0DD0"


@pytest.mark.parametrize("bad", ["", "TwelveChars!", "Привет", "+", "Bank{{{{{{"])
def test_bad_originators(bad: str) -> None:
    if bad == "+":
        (sms,) = decode_all(encode_deliver(bad, "x", scts=T0))
        assert sms.originator == "+"  # "+" alone is a (silly) alphanumeric sender
        return
    with pytest.raises(PduError):
        encode_deliver(bad, "x", scts=T0)


def test_argument_errors() -> None:
    with pytest.raises(PduError, match="GSM 7-bit"):
        encode_deliver("1", "привет", scts=T0, encoding="gsm7")
    with pytest.raises(PduError, match="encoding"):
        encode_deliver("1", "x", scts=T0, encoding="8bit")
    with pytest.raises(PduError, match="aware"):
        encode_deliver("1", "x", scts=datetime.datetime(2024, 1, 1))
    with pytest.raises(PduError, match="quarter"):
        encode_deliver("1", "x", scts=ts(2024, 1, 1, 0, 0, 0, 0.1))
    with pytest.raises(PduError, match="year"):
        encode_deliver("1", "x", scts=ts(1999, 1, 1, 0, 0, 0, 0))
    with pytest.raises(PduError, match="ref"):
        encode_deliver("1", "x", scts=T0, ref=256)
    with pytest.raises(PduError, match="ref_bits"):
        encode_deliver("1", "x", scts=T0, ref_bits=12)
    with pytest.raises(PduError, match="pid"):
        encode_deliver("1", "x", scts=T0, pid=300)
    with pytest.raises(PduError, match="SMSC"):
        encode_deliver("1", "x", scts=T0, smsc="SMSC")
    with pytest.raises(PduError, match="parts"):
        encode_deliver("1", "x" * 153 * 256, scts=T0)
    with pytest.raises(PduError, match="surrogate"):
        encode_deliver("1", "\ud83d", scts=T0)


# --- splitting ------------------------------------------------------------------------


def test_gsm7_boundaries() -> None:
    assert len(encode_deliver("1", "a" * 160, scts=T0)) == 1
    parts = decode_all(encode_deliver("1", "a" * 161, scts=T0))
    assert [septets_of(p) for p in parts] == [153, 8]
    assert [p.concat for p in parts] == [Concat(0, 2, 1, 8), Concat(0, 2, 2, 8)]
    # extension characters count twice
    assert len(encode_deliver("1", "€" * 80, scts=T0)) == 1
    assert len(encode_deliver("1", "€" * 80 + "a", scts=T0)) == 2


def test_escape_pair_is_never_split() -> None:
    parts = decode_all(encode_deliver("1", "a" * 152 + "€" + "b" * 10, scts=T0))
    assert septets_of(parts[0]) == 152
    assert parts[0].text == "a" * 152
    assert parts[1].text == "€" + "b" * 10


def test_sixteen_bit_reference() -> None:
    parts = decode_all(encode_deliver("1", "a" * 400, scts=T0, ref=0xBEEF, ref_bits=16))
    assert [septets_of(p) for p in parts] == [152, 152, 96]
    assert parts[0].udh == bytes([0x08, 0x04, 0xBE, 0xEF, 0x03, 0x01])
    assert all(p.concat is not None and p.concat.ref == 0xBEEF for p in parts)
    assert reassemble(parts) == "a" * 400


def test_ucs2_boundaries() -> None:
    assert len(encode_deliver("1", "ж" * 70, scts=T0)) == 1
    parts = decode_all(encode_deliver("1", "ж" * 71, scts=T0))
    assert [len(p.user_data) for p in parts] == [134, 8]
    parts16 = decode_all(encode_deliver("1", "ж" * 140, scts=T0, ref_bits=16, ref=7))
    assert [len(p.user_data) for p in parts16] == [132, 132, 16]


def test_surrogate_pair_split_across_parts() -> None:
    text = "ж" * 66 + "😁" + "end"  # the pair straddles octets 132..135
    pdus = encode_deliver("+1", text, scts=T0)
    parts = decode_all(pdus)
    assert len(parts) == 2
    assert parts[0].user_data[-2:] == "😁".encode("utf-16-be")[:2]
    assert parts[0].text == "ж" * 66  # dangling high half left out of this part's text
    assert parts[1].text == "end"  # leading low half left out
    assert reassemble(parts) == text
    assert reassemble(parts[::-1]) == text


def test_forced_ucs2_for_gsm_text() -> None:
    (sms,) = decode_all(encode_deliver("1", "abc", scts=T0, encoding="ucs2"))
    assert (sms.encoding, sms.dcs, sms.text) == ("ucs2", 0x08, "abc")


def test_pid_and_flags() -> None:
    (sms,) = decode_all(encode_deliver("1", "abc", scts=T0, pid=0x39))
    assert sms.pid == 0x39
    assert not sms.more_messages
    assert sms.message_class is None


# --- SMS-SUBMIT -----------------------------------------------------------------------


def test_submit_round_trip() -> None:
    pdus = encode_submit("+79991234567", "Привет " * 19, message_ref=9, validity=0xA7)
    assert len(pdus) == 2
    subs = [decode_pdu(p.hex, tpdu_length=p.tpdu_length) for p in pdus]
    assert all(isinstance(s, SmsSubmit) for s in subs)
    first = subs[0]
    assert isinstance(first, SmsSubmit)
    assert first.destination == "+79991234567"
    assert first.destination_toa == 0x91
    assert first.message_ref == 9
    assert [s.message_ref for s in subs] == [9, 10]
    assert first.smsc is None
    assert reassemble(subs) == "Привет " * 19  # type: ignore[arg-type]


def test_submit_simple_hex() -> None:
    (pdu,) = encode_submit("900", "hello", status_report=True)
    assert pdu.hex == "002100038109F0000005E8329BFD06"
    assert pdu.tpdu_length == 14


def test_submit_rejects_alphanumeric_destination() -> None:
    with pytest.raises(PduError):
        encode_submit("Megafon", "x")


# --- property tests -------------------------------------------------------------------

originators = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{3,14}", fullmatch=True),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefxyz0123456789 -.@"), min_size=1)
    .filter(lambda s: len(s) <= 11 and not s.isdigit() and not s.startswith("+"))
    .filter(lambda s: not (s[0] == "+" and s[1:].isdigit())),
)
refs = st.one_of(
    st.tuples(st.integers(0, 255), st.just(8)), st.tuples(st.integers(0, 65535), st.just(16))
)
zones = st.integers(-79, 79).map(lambda q: datetime.timezone(datetime.timedelta(minutes=15 * q)))
times = st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz),
    st.datetimes(datetime.datetime(2000, 1, 1), datetime.datetime(2099, 12, 31, 23, 59, 59)),
    zones,
).map(lambda t: t.replace(microsecond=0))


def check_round_trip(originator: str, text: str, ref: tuple[int, int], when: datetime.datetime,
                     encoding: str) -> None:  # fmt: skip
    pdus = encode_deliver(originator, text, scts=when, ref=ref[0], ref_bits=ref[1])
    parts = decode_all(pdus)
    assert all(p.encoding == encoding for p in parts)
    assert all(p.originator == originator for p in parts)
    assert all(p.scts == when and p.scts.utcoffset() == when.utcoffset() for p in parts)
    if len(parts) == 1:
        assert parts[0].concat is None
        assert parts[0].text == text
    else:
        assert {p.concat.seq for p in parts if p.concat} == set(range(1, len(parts) + 1))
        assert all(p.concat and p.concat.ref == ref[0] for p in parts)
        assert all(len(bytes.fromhex(p.hex)) - 12 <= 164 for p in pdus)
    assert reassemble(parts) == text
    assert reassemble(parts[::-1] + parts[:1]) == text


@settings(max_examples=150, deadline=None)
@given(originators, st.text(st.sampled_from(GSM_CHARS), max_size=700), refs, times)
def test_round_trip_gsm_alphabet(
    originator: str, text: str, ref: tuple[int, int], when: datetime.datetime
) -> None:
    check_round_trip(originator, text, ref, when, "gsm7")


@settings(max_examples=150, deadline=None)
@given(originators, st.text(max_size=400), refs, times)
def test_round_trip_any_unicode(
    originator: str, text: str, ref: tuple[int, int], when: datetime.datetime
) -> None:
    from muxd.pdu.gsm7 import is_gsm7

    check_round_trip(originator, text, ref, when, "gsm7" if is_gsm7(text) else "ucs2")


@settings(max_examples=60, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), min_size=1, max_size=200)
)
def test_round_trip_astral(text: str) -> None:
    check_round_trip("+15551234567", text, (42, 8), T0, "ucs2")
