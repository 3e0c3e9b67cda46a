"""GSM 7-bit alphabet, packing and national language shift tables (23.038)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_build import deliver_hex, pack

from muxd.pdu import SmsDeliver, decode_pdu, encode_deliver, reassemble
from muxd.pdu.gsm7 import (
    DEFAULT_EXTENSION,
    DEFAULT_LOCKING,
    decode_septets,
    encode_chars,
    is_gsm7,
    pack_septets,
    septet_count,
    unpack_septets,
)
from muxd.pdu.national import _LOCKING, _SHIFT, LANGUAGES, locking_table, single_shift_table

#: 23.038 §6.2.1, row by row (0x1B is the escape).
DEFAULT_ROWS = [
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
]
EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~"}
EXTENSION |= {0x3E: "]", 0x40: "|", 0x65: "€"}


def d(pdu: str) -> SmsDeliver:
    sms = decode_pdu(pdu)
    assert isinstance(sms, SmsDeliver)
    return sms


@pytest.mark.parametrize(
    ("code", "char"),
    [
        (0x00, "@"),
        (0x5F, "§"),
        (0x40, "¡"),
        (0x60, "¿"),
        (0x24, "¤"),
        (0x11, "_"),
        (0x02, "$"),
        (0x09, "Ç"),
        (0x1F, "É"),
        (0x7F, "à"),
        (0x10, "Δ"),
        (0x0B, "Ø"),
        (0x1E, "ß"),
    ],
)
def test_traps(code: int, char: str) -> None:
    assert DEFAULT_LOCKING[code] == char
    assert decode_septets(bytes([code])) == char


def test_default_alphabet_matches_23038_exactly() -> None:
    table = "".join(DEFAULT_ROWS)
    for code, char in enumerate(table):
        if code != 0x1B:
            assert DEFAULT_LOCKING[code] == char, hex(code)
    assert {i: c for i, c in enumerate(DEFAULT_EXTENSION) if c is not None} == EXTENSION


def test_every_character_round_trips() -> None:
    chars = [c for i, c in enumerate("".join(DEFAULT_ROWS)) if i != 0x1B] + list(EXTENSION.values())
    text = "".join(chars)
    assert is_gsm7(text)
    septets = bytes(s for pair in encode_chars(text) for s in pair)
    assert len(septets) == septet_count(text) == 127 + 2 * len(EXTENSION)
    assert decode_septets(septets) == text


def test_escape_edge_cases() -> None:
    assert decode_septets(b"a\x1b") == "a"  # trailing escape: half of a split pair
    assert decode_septets(b"\x1b\x1bx") == " x"  # ESC ESC: reserved -> space
    assert decode_septets(b"\x1ba") == "a"  # undefined extension code -> main table
    assert decode_septets(b"\x1b\x0d") == "\r"  # CR2 -> CR
    assert decode_septets(b"\x1b\x65\x1b\x3c") == "€["


def test_not_gsm7() -> None:
    assert not is_gsm7("привет")
    assert not is_gsm7("ç")  # only capital Ç is in the alphabet
    assert not is_gsm7("`")


def test_known_packing() -> None:
    assert pack_septets(b"hellohello").hex().upper() == "E8329BFD4697D9EC37"
    assert unpack_septets(bytes.fromhex("E8329BFD4697D9EC37"), 10) == b"hellohello"
    # 8 septets fill 7 octets exactly; the eighth is not an implicit "@".
    assert len(pack_septets(b"abcdefgh")) == 7
    assert unpack_septets(pack_septets(b"abcdefg"), 7) == b"abcdefg"


@given(st.lists(st.integers(0, 127), max_size=200), st.integers(0, 10))
def test_pack_matches_reference_packer(septets: list[int], hdr_len: int) -> None:
    hdr = bytes(range(1, hdr_len + 1))
    hdr_septets = (hdr_len * 8 + 6) // 7
    assert pack_septets(septets, hdr, hdr_septets) == pack(septets, hdr, hdr_septets)
    packed = pack(septets, hdr, hdr_septets)
    assert unpack_septets(packed, hdr_septets + len(septets), hdr_septets) == bytes(septets)


def test_all_national_tables_have_128_entries_and_an_escape() -> None:
    assert set(_LOCKING) == set(LANGUAGES) - {2}  # Spanish has no locking table
    assert set(_SHIFT) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert len(locking_table(lang)) == 128
        assert len(single_shift_table(lang)) == 128
        assert single_shift_table(lang)[0x1B] is None
    for table in _LOCKING.values():
        assert len(table) == 128
        assert table[0x1B] == "\uffff"
        assert table[0x0A] == "\n"
        assert table[0x0D] == "\r"
    assert locking_table(2) is DEFAULT_LOCKING
    assert locking_table(99) is DEFAULT_LOCKING
    assert single_shift_table(0) is DEFAULT_EXTENSION


@pytest.mark.parametrize(
    ("lang", "code", "char"),
    [
        (1, 0x07, "ı"),
        (1, 0x0B, "Ğ"),
        (1, 0x40, "İ"),
        (1, 0x60, "ç"),
        (1, 0x04, "€"),
        (3, 0x04, "ê"),
        (3, 0x10, "Δ"),
        (3, 0x12, "ª"),
        (3, 0x14, "À"),
        (3, 0x60, "~"),
        (13, 0x00, "ا"),
        (13, 0x03, "ٻ"),
        (13, 0x7F, "\u0670"),
        (6, 0x15, "क"),
    ],
)
def test_locking_entries(lang: int, code: int, char: str) -> None:
    assert locking_table(lang)[code] == char


@pytest.mark.parametrize(
    ("lang", "code", "char"),
    [
        (1, 0x47, "Ğ"),
        (1, 0x49, "İ"),
        (1, 0x63, "ç"),
        (1, 0x65, "€"),
        (2, 0x09, "ç"),
        (2, 0x41, "Á"),
        (2, 0x75, "ú"),
        (3, 0x05, "ê"),
        (3, 0x12, "Φ"),
        (3, 0x7F, "â"),
        (13, 0x2B, "؏"),
        (13, 0x28, "{"),
        (13, 0x41, "A"),
        (11, 0x24, "\u0bee"),  # corrected typo of 23.038 V9.1.1
        (12, 0x22, "\u0c6c"),
    ],
)
def test_single_shift_entries(lang: int, code: int, char: str) -> None:
    assert single_shift_table(lang)[code] == char


def test_38_urdu_locking_shift() -> None:
    pdu = deliver_hex(udh=bytes([0x25, 0x01, 13]), septets=b"hello \x03")
    sms = d(pdu)
    assert sms.text == "hello ٻ"
    assert sms.user_data == b"hello \x03"


def test_38_urdu_single_shift() -> None:
    pdu = deliver_hex(udh=bytes([0x24, 0x01, 13]), septets=b"hello \x1b\x2b")
    assert d(pdu).text == "hello ؏"


def test_locking_and_single_shift_together() -> None:
    udh = bytes([0x25, 0x01, 1, 0x24, 0x01, 2])  # Turkish locking + Spanish single shift
    pdu = deliver_hex(udh=udh, septets=b"\x07\x1b\x09\x1b\x65")
    assert d(pdu).text == "ıç€"


def test_undefined_single_shift_code_falls_back_to_locking_table() -> None:
    pdu = deliver_hex(udh=bytes([0x25, 0x01, 13, 0x24, 0x01, 13]), septets=b"\x1b\x03\x1b\x5c")
    # 0x03 is ¥ in the Urdu single shift table; 0x5C is undefined there -> Urdu locking 0x5C
    assert d(pdu).text == "¥\u064d"


def test_unknown_language_uses_default_tables() -> None:
    pdu = deliver_hex(udh=bytes([0x25, 0x01, 0x55, 0x24, 0x01, 0x66]), septets=b"\x00\x1b\x65")
    assert d(pdu).text == "@€"


def test_reassembly_uses_shift_tables_of_first_part() -> None:
    udh1 = bytes([0x00, 0x03, 0x07, 0x02, 0x01, 0x25, 0x01, 13])
    udh2 = bytes([0x00, 0x03, 0x07, 0x02, 0x02])
    p1 = d(deliver_hex(udh=udh1, septets=b"\x00\x02\x1b"))
    p2 = d(deliver_hex(udh=udh2, septets=b"\x2b\x03"))
    # The escape at the end of part 1 pairs with 0x2B at the start of part 2.
    # 0x2B is undefined in the default extension table -> Urdu locking 0x2B (ز).
    assert reassemble([p1, p2]) == "ابزٻ"


def test_escape_split_across_parts_joins() -> None:
    parts = [
        d(deliver_hex(udh=bytes([0, 3, 9, 2, 1]), septets=b"price \x1b")),
        d(deliver_hex(udh=bytes([0, 3, 9, 2, 2]), septets=b"\x655")),
    ]
    assert parts[0].text == "price "
    assert reassemble(parts) == "price €5"


def test_encoder_uses_default_alphabet_for_gsm_text() -> None:
    (pdu,) = encode_deliver("+1", "§¿@", scts=d(deliver_hex()).scts)
    sms = d(pdu.hex)
    assert sms.user_data == bytes([0x5F, 0x60, 0x00])


def reference_unpack(data: bytes, count: int, skip: int = 0) -> bytes:
    n = int.from_bytes(data, "little")
    return bytes((n >> (7 * i)) & 0x7F for i in range(skip, count))


def test_unpack_every_length_with_surplus_bits() -> None:
    rng = random.Random(7)
    for count in range(257):
        for surplus in (0, 1, 3):
            data = bytes(rng.randrange(256) for _ in range((count * 7 + 7) // 8 + surplus))
            for skip in {0, min(count, 7), count}:
                assert unpack_septets(data, count, skip) == reference_unpack(data, count, skip)


def reference_decode(
    septets: bytes,
    locking: str = DEFAULT_LOCKING,
    shift: tuple[str | None, ...] = DEFAULT_EXTENSION,
) -> str:
    out = []
    i = 0
    while i < len(septets):
        s = septets[i]
        i += 1
        if s != 0x1B:
            out.append(locking[s])
            continue
        if i == len(septets):
            break
        s = septets[i]
        i += 1
        ext = shift[s]
        out.append(" " if s == 0x1B else locking[s] if ext is None else ext)
    return "".join(out)


@given(st.lists(st.sampled_from([0x1B, 0x1B, 0x65, 0x28, 0x0D, 0x00, 0x41, 0x7F]), max_size=30))
def test_escape_decoding_matches_reference(septets: list[int]) -> None:
    assert decode_septets(bytes(septets)) == reference_decode(bytes(septets))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 0x7F) | st.just(0x1B), max_size=700),
    st.sampled_from([None, *LANGUAGES]),
    st.sampled_from([None, *LANGUAGES]),
    st.booleans(),
)
def test_escape_decoding_matches_reference_for_every_table(
    septets: list[int], lock: int | None, single: int | None, no_double_escape: bool
) -> None:
    """Both escape paths (with and without ESC ESC), every table pair, any length
    (reassembled texts exceed one part's 160 septets)."""
    data = bytes(septets)
    if no_double_escape:
        while b"\x1b\x1b" in data:
            data = data.replace(b"\x1b\x1b", b"\x1b")
    locking, shift = locking_table(lock), single_shift_table(single)
    assert decode_septets(data, locking, shift) == reference_decode(data, locking, shift)


@pytest.mark.parametrize("length", [159, 160, 255, 256, 257, 300, 1000, 40_000])
def test_escape_decoding_of_long_joined_septets(length: int) -> None:
    rng = random.Random(length)
    for lang in (None, 1, 13):
        locking, shift = locking_table(lang), single_shift_table(lang)
        data = bytes(
            rng.choice([0x1B, 0x00, 0x28, 0x41, 0x65, rng.randrange(128)]) for _ in range(length)
        )
        data = data.replace(b"\x1b\x1b", b"\x1b\x00")  # the fast path
        assert decode_septets(data, locking, shift) == reference_decode(data, locking, shift)
        data = data[:-1] + b"\x1b"  # trailing escape dropped
        assert decode_septets(data, locking, shift) == reference_decode(data, locking, shift)
