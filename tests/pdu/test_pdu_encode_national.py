"""encode_deliver / encode_submit with national language tables (23.038 §6.2.1.2.4, A.2/A.3)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_vectors import ts

from muxd.pdu import (
    EncodedPdu,
    PduError,
    SmsDeliver,
    SmsSubmit,
    decode_pdu,
    encode_deliver,
    encode_submit,
    reassemble,
)
from muxd.pdu.encode import national_alphabet
from muxd.pdu.gsm7 import ESC
from muxd.pdu.national import LANGUAGES, locking_table, single_shift_table

T0 = ts(2024, 5, 6, 7, 8, 9, 3)
URDU, TURKISH, SPANISH, PORTUGUESE, HINDI = 13, 1, 2, 3, 6

#: Every valid (language, shift) choice.
CHOICES = [
    (lang, shift)
    for lang in sorted(LANGUAGES)
    for shift in (None, "single", "locking", "both")
    if not (lang == SPANISH and shift in ("locking", "both"))
]


def ies(lang: int, shift: str | None) -> bytes:
    lock = shift in ("locking", "both") or (shift is None and lang != SPANISH)
    single = shift in ("single", "both", None)
    return (bytes([0x25, 1, lang]) if lock else b"") + (bytes([0x24, 1, lang]) if single else b"")


def decode_all(pdus: list[EncodedPdu]) -> list[SmsDeliver]:
    out = []
    for p in pdus:
        sms = decode_pdu(p.hex, tpdu_length=p.tpdu_length)
        assert isinstance(sms, SmsDeliver)
        assert decode_pdu(p.hex) == sms
        out.append(sms)
    return out


def check(text: str, lang: int, shift: str | None, ref: int = 5, ref_bits: int = 8) -> None:
    pdus = encode_deliver(
        "+15550001111", text, scts=T0, language=lang, shift=shift, ref=ref, ref_bits=ref_bits
    )
    parts = decode_all(pdus)
    want = ies(lang, shift)
    for i, p in enumerate(parts):
        assert p.encoding == "gsm7"
        assert want in p.udh  # every part announces its tables
        assert len(p.user_data) + (len(p.udh) * 8 + 14) // 7 <= 160
        if i < len(parts) - 1:
            assert p.user_data[-1:] != bytes([ESC])  # an escape pair is never split
    if len(parts) == 1:
        assert parts[0].concat is None
        assert parts[0].udh == want
    else:
        assert [p.concat.seq for p in parts if p.concat] == list(range(1, len(parts) + 1))
        assert all(p.concat and (p.concat.ref, p.concat.ref_bits) == (ref, ref_bits) for p in parts)
    # each part decodes on its own (nothing split), and the set reassembles
    assert "".join(p.text for p in parts) == text
    assert reassemble(parts) == text
    assert reassemble(parts[::-1]) == text


# --- known answers (vector 38 of the public test suites, Urdu) -----------------------


def test_38_urdu_locking_shift_known_answer() -> None:
    (sms,) = decode_all(encode_deliver("+1", "hello ٻ", scts=T0, language=URDU, shift="locking"))
    assert sms.udh == bytes([0x25, 0x01, 13])
    assert sms.user_data == b"hello \x03"
    assert sms.text == "hello ٻ"


def test_38_urdu_single_shift_known_answer() -> None:
    (sms,) = decode_all(encode_deliver("+1", "hello ؏", scts=T0, language=URDU, shift="single"))
    assert sms.udh == bytes([0x24, 0x01, 13])
    assert sms.user_data == b"hello \x1b\x2b"
    assert sms.text == "hello ؏"


def test_turkish_both_tables() -> None:
    (sms,) = decode_all(encode_deliver("Bank", "ıŞ ç€", scts=T0, language=TURKISH))
    assert sms.udh == bytes([0x25, 1, 1, 0x24, 1, 1])
    assert sms.user_data == bytes([0x07, 0x1C, 0x20, 0x60, 0x04])  # all in the locking table
    assert sms.originator == "Bank"


def test_spanish_default_is_single_shift_only() -> None:
    (sms,) = decode_all(encode_deliver("+1", "Años: ÁÍÓÚ", scts=T0, language=SPANISH))
    assert sms.udh == bytes([0x24, 1, 2])
    assert sms.text == "Años: ÁÍÓÚ"
    assert sms.user_data[:4] == bytes([0x41, 0x7D, 0x6F, 0x73])  # default locking table
    with pytest.raises(PduError, match="no locking shift table"):
        encode_deliver("+1", "x", scts=T0, language=SPANISH, shift="locking")


def test_default_tables_need_no_language_elements() -> None:
    (sms,) = decode_all(encode_deliver("+1", "plain", scts=T0))
    assert sms.udh == b""


# --- capacity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "shift", "ref_bits", "single_max", "per_part"),
    [
        (TURKISH, "both", 8, 152, 146),  # UDH 7 octets -> 8 septets; 12 -> 14
        (TURKISH, "both", 16, 152, 145),  # 13 octets -> 15 septets
        (TURKISH, "locking", 8, 155, 149),  # 4 octets -> 5 septets; 9 -> 11
        (SPANISH, None, 16, 155, 148),  # 10 octets -> 12 septets
    ],
)
def test_capacity(lang: int, shift: str, ref_bits: int, single_max: int, per_part: int) -> None:
    def encode(text: str) -> list[SmsDeliver]:
        return decode_all(
            encode_deliver("1", text, scts=T0, language=lang, shift=shift, ref_bits=ref_bits)
        )

    assert len(encode("a" * single_max)) == 1
    parts = encode("a" * (single_max + 1))
    assert [len(p.user_data) for p in parts] == [per_part, single_max + 1 - per_part]
    assert len(encode("a" * per_part * 3)) == 3
    assert len(encode("a" * (per_part * 3 + 1))) == 4


def test_escape_pair_not_split_with_national_header() -> None:
    text = "a" * 145 + "{" + "b" * 10  # '{' is ESC 0x28: it would straddle septets 146/147
    parts = decode_all(encode_deliver("1", text, scts=T0, language=TURKISH))
    assert [p.text for p in parts] == ["a" * 145, "{" + "b" * 10]
    assert parts[1].user_data[:2] == bytes([ESC, 0x28])
    check(text, TURKISH, None)


# --- choice of alphabet and argument errors -------------------------------------------


def test_text_outside_the_national_alphabet_falls_back_to_ucs2() -> None:
    (sms,) = decode_all(encode_deliver("+1", "ıж", scts=T0, language=TURKISH))
    assert (sms.encoding, sms.udh, sms.text) == ("ucs2", b"", "ıж")
    with pytest.raises(PduError, match="GSM 7-bit"):
        encode_deliver("+1", "ıж", scts=T0, language=TURKISH, encoding="gsm7")


def test_forced_ucs2_carries_no_language_elements() -> None:
    (sms,) = decode_all(encode_deliver("+1", "ı", scts=T0, language=TURKISH, encoding="ucs2"))
    assert (sms.encoding, sms.udh) == ("ucs2", b"")


def test_national_text_needs_its_language() -> None:
    (sms,) = decode_all(encode_deliver("+1", "ı", scts=T0))
    assert sms.encoding == "ucs2"


@pytest.mark.parametrize(
    ("language", "shift", "match"),
    [
        (0, None, "language"),
        (14, None, "language"),
        (-1, "both", "language"),
        (None, "both", "without a language"),
        (TURKISH, "lock", "shift"),
        (SPANISH, "both", "no locking"),
    ],
)
def test_bad_language_arguments(language: int | None, shift: str | None, match: str) -> None:
    with pytest.raises(PduError, match=match):
        encode_deliver("+1", "x", scts=T0, language=language, shift=shift)


def test_national_alphabet() -> None:
    alpha = national_alphabet(URDU, "both")
    assert {"ٻ", "؏", "{", "a", " ", "\n", "\r"} <= alpha
    assert "@" not in national_alphabet(URDU, "locking")  # Urdu locking replaces @ with ا
    assert "@" in national_alphabet(URDU, "single")  # via the Urdu single shift table
    assert national_alphabet(None) == national_alphabet(None, None)
    assert "€" in national_alphabet(None)
    for lang, shift in CHOICES:
        locking = locking_table(lang) if shift != "single" and lang != SPANISH else None
        if locking is not None:  # every defined locking character is reachable
            assert {c for i, c in enumerate(locking) if c != " " and i != ESC} <= (
                national_alphabet(lang, shift)
            )


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "shift"), CHOICES)
def test_whole_alphabet_round_trips(lang: int, shift: str | None) -> None:
    """Every character of every table choice, in one message (several parts) and alone."""
    alpha = sorted(national_alphabet(lang, shift))
    check("".join(alpha) * 3, lang, shift)
    check("".join(alpha)[::-1] * 2, lang, shift, ref=0xBEEF, ref_bits=16)
    shift_table = single_shift_table(lang) if shift != "locking" else None
    if shift_table is not None:  # a message made only of escapes
        escaped = [c for c in shift_table if c is not None and c in alpha]
        check("".join(escaped) * 20, lang, shift)


refs = st.one_of(
    st.tuples(st.integers(0, 255), st.just(8)), st.tuples(st.integers(0, 65535), st.just(16))
)
zones = st.integers(-79, 79).map(lambda q: datetime.timezone(datetime.timedelta(minutes=15 * q)))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CHOICES), st.data(), refs, zones)
def test_round_trip_national(
    choice: tuple[int, str | None],
    data: st.DataObject,
    ref: tuple[int, int],
    zone: datetime.timezone,
) -> None:
    lang, shift = choice
    text = data.draw(st.text(st.sampled_from(sorted(national_alphabet(lang, shift))), max_size=600))
    check(text, lang, shift, ref=ref[0], ref_bits=ref[1])
    when = T0.replace(tzinfo=zone)
    for sms in decode_all(encode_deliver("Alpha", text, scts=when, language=lang, shift=shift)):
        assert sms.scts == when
        assert sms.scts.utcoffset() == zone.utcoffset(None)
        assert sms.originator == "Alpha"


def test_submit_with_language() -> None:
    text = "नमस्ते " * 30
    pdus = encode_submit("+919999999999", text, language=HINDI)
    subs = [decode_pdu(p.hex, tpdu_length=p.tpdu_length) for p in pdus]
    assert all(isinstance(s, SmsSubmit) and s.encoding == "gsm7" for s in subs)
    assert all(isinstance(s, SmsSubmit) and ies(HINDI, None) in s.udh for s in subs)
    assert reassemble(subs) == text  # type: ignore[arg-type]


def test_portuguese_locking_greek_via_single_shift() -> None:
    text = "Ação: ΦΓΩ €5"
    check(text, PORTUGUESE, None)
    (sms,) = decode_all(encode_deliver("1", text, scts=T0, language=PORTUGUESE))
    assert sms.encoding == "gsm7"
