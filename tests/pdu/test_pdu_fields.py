"""Field-level decoding: DCS groups, UDH elements, SCTS, addresses, TPDU types."""

from __future__ import annotations

import datetime

import pytest
from pdu_build import OA, SMSC, deliver_hex
from pdu_vectors import V3, V14, ts

from muxd.pdu import (
    Concat,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode_pdu,
)
from muxd.pdu.dcs import parse_dcs
from muxd.pdu.ucs2 import decode_ucs2, decode_ucs2_strict


def d(pdu: str) -> SmsDeliver:
    sms = decode_pdu(pdu)
    assert isinstance(sms, SmsDeliver)
    return sms


# --- TP-DCS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dcs", "encoding", "cls"),
    [
        (0x00, "gsm7", None),
        (0x03, "gsm7", None),  # class bits without bit 4: no class
        (0x04, "8bit", None),
        (0x08, "ucs2", None),
        (0x0C, "gsm7", None),  # reserved alphabet -> GSM 7-bit
        (0x10, "gsm7", 0),
        (0x11, "gsm7", 1),
        (0x16, "8bit", 2),
        (0x1B, "ucs2", 3),
        (0x20, "compressed", None),
        (0x3A, "compressed", 2),
        (0x40, "gsm7", None),  # 01xx: marked for automatic deletion, same layout
        (0x48, "ucs2", None),
        (0x59, "ucs2", 1),
        (0x64, "compressed", None),
        (0x80, "gsm7", None),  # 1000..1011 reserved groups
        (0xBF, "gsm7", None),
        (0xC0, "gsm7", None),  # MWI discard
        (0xD8, "gsm7", None),  # MWI store
        (0xE0, "ucs2", None),  # MWI store, UCS-2
        (0xEB, "ucs2", None),
        (0xF0, "gsm7", 0),
        (0xF1, "gsm7", 1),
        (0xF3, "gsm7", 3),
        (0xF4, "8bit", 0),
        (0xF7, "8bit", 3),
    ],
)
def test_dcs_groups(dcs: int, encoding: str, cls: int | None) -> None:
    assert parse_dcs(dcs) == (encoding, cls)


def test_every_dcs_decodes_something() -> None:
    for dcs in range(256):
        enc, cls = parse_dcs(dcs)
        assert enc in ("gsm7", "ucs2", "8bit", "compressed")
        assert cls in (None, 0, 1, 2, 3)


def test_mwi_ucs2_group_decodes_text() -> None:
    sms = d(deliver_hex(dcs=0xE0, ud="hi".encode("utf-16-be")))
    assert (sms.encoding, sms.text) == ("ucs2", "hi")


def test_compressed_keeps_raw_octets_and_counts_udl_in_octets() -> None:
    sms = d(deliver_hex(dcs=0x20, ud=b"\x01\x02\x03"))
    assert sms.encoding == "compressed"
    assert sms.text == ""
    assert sms.user_data == b"\x01\x02\x03"


def test_eight_bit_with_udh_and_ports() -> None:
    udh = bytes([0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0])  # WAP push ports 2948 <- 9200
    sms = d(deliver_hex(dcs=0x04, udh=udh, ud=b"\xde\xad"))
    assert sms.ports == (2948, 9200)
    assert sms.user_data == b"\xde\xad"
    assert sms.udh == udh


# --- UDH ------------------------------------------------------------------------------


def test_eight_bit_ports() -> None:
    sms = d(deliver_hex(udh=bytes([0x04, 0x02, 0xF5, 0x00]), septets=b"x"))
    assert sms.ports == (0xF5, 0x00)
    assert sms.text == "x"


def test_unknown_elements_are_skipped() -> None:
    udh = bytes([0x70, 0x03, 1, 2, 3, 0x00, 0x03, 0x11, 0x02, 0x02, 0x0A, 0x00])
    sms = d(deliver_hex(udh=udh, septets=b"tail"))
    assert sms.concat == Concat(ref=0x11, total=2, seq=2, ref_bits=8)
    assert sms.text == "tail"


def test_repeated_concat_last_wins() -> None:
    udh = bytes([0x00, 0x03, 0x01, 0x02, 0x01, 0x08, 0x04, 0x12, 0x34, 0x03, 0x02])
    sms = d(deliver_hex(udh=udh, septets=b"x"))
    assert sms.concat == Concat(ref=0x1234, total=3, seq=2, ref_bits=16)


@pytest.mark.parametrize(("total", "seq"), [(2, 0), (2, 3), (0, 0), (0, 1)])
def test_impossible_concat_numbers_are_ignored(total: int, seq: int) -> None:
    sms = d(deliver_hex(udh=bytes([0x00, 0x03, 0x05, total, seq]), septets=b"x"))
    assert sms.concat is None
    assert sms.text == "x"


@pytest.mark.parametrize(
    "udh",
    [
        bytes([0x00, 0x04, 0x01, 0x02, 0x01, 0x00]),  # concat 8 with IEDL 4
        bytes([0x08, 0x03, 0x01, 0x02, 0x01]),  # concat 16 with IEDL 3
        bytes([0x00, 0x03, 0x01, 0x02]),  # element overruns the UDH
        bytes([0x00]),  # header of an element cut short
        bytes([0x25, 0x02, 0x01, 0x01]),  # locking shift with IEDL 2
        bytes([0x05, 0x02, 0x01, 0x01]),  # 16-bit ports with IEDL 2
    ],
)
def test_impossible_udh_lengths(udh: bytes) -> None:
    with pytest.raises(PduError, match="UDH"):
        decode_pdu(deliver_hex(udh=udh, septets=b"x"))


def test_udhl_beyond_user_data() -> None:
    with pytest.raises(PduError, match="UDHL"):
        decode_pdu(deliver_hex(dcs=0x08, fo=0x44, ud=bytes([0x09, 0, 3, 1, 2, 1])))


def test_udh_longer_than_udl_in_septets() -> None:
    # UDL 5 septets cannot hold a 6-octet UDH (7 septets incl. fill bits).
    pdu = deliver_hex(udh=bytes([0, 3, 1, 2, 1]), septets=b"", udl=5)
    with pytest.raises(PduError):
        decode_pdu(pdu)


def test_udhi_with_empty_user_data() -> None:
    with pytest.raises(PduError, match="UDHI"):
        decode_pdu(deliver_hex(fo=0x44))


def test_udh_only_gsm7_message() -> None:
    sms = d(deliver_hex(udh=bytes([0, 3, 1, 1, 1]), septets=b""))
    assert sms.text == ""
    assert sms.user_data == b""


# --- SCTS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scts", "expected"),
    [
        ("11101021436500", ts(2011, 1, 1, 12, 34, 56, 0)),
        ("1120821105050A", ts(2011, 2, 28, 11, 50, 50, -5)),
        ("4210303020103A", ts(2024, 1, 3, 3, 2, 1, -23 / 4)),  # -05:45, odd quarters
        ("42103030201094", ts(2024, 1, 3, 3, 2, 1, 49 / 4)),  # +12:15
        ("99211280959500", ts(2099, 12, 21, 8, 59, 59, 0)),
        ("00101000000000", ts(2000, 1, 1, 0, 0, 0, 0)),
    ],
)
def test_scts(scts: str, expected: datetime.datetime) -> None:
    sms = d(deliver_hex(scts=scts))
    assert sms.scts == expected
    assert sms.scts.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "scts",
    [
        "11310021436500",  # month 13
        "11000021436500",  # month 0
        "11200321436500",  # 30 February
        "11101042436500",  # hour 24
        "11101021430600",  # seconds 60 (leap seconds cannot be represented)
        "111010214365A0",  # non-BCD zone digit
        "1A101021436500",  # non-BCD year digit
    ],
)
def test_invalid_scts_is_unknown_and_the_text_kept(scts: str) -> None:
    sms = d(deliver_hex(scts=scts, septets=b"hi"))
    assert sms.scts is None
    assert sms.scts_raw == bytes.fromhex(scts)
    assert sms.text == "hi"
    assert sms.originator == "+18005551212"


# --- addresses ------------------------------------------------------------------------


def test_odd_toa_kept_and_digits_rendered() -> None:
    sms = d(deliver_hex(oa="05A12143F5"))  # TOA 0xA1: national, ISDN
    assert sms.originator_toa == 0xA1
    assert sms.originator == "12345"
    # A non-filler nibble beyond the announced length is not shown.
    assert d(deliver_hex(oa="05A1214365")).originator == "12345"


def test_garbage_nibbles_rendered_as_hex() -> None:
    sms = d(deliver_hex(oa="0691BADC0E"))
    assert sms.originator == "+abcde0"


def test_empty_originator() -> None:
    sms = d(deliver_hex(oa="0081"))
    assert sms.originator == ""


@pytest.mark.parametrize("oa", ["1591" + "11" * 8, "FF91" + "11" * 10])
def test_address_too_long(oa: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(deliver_hex(oa=oa))


def test_smsc_variants() -> None:
    assert d(deliver_hex(smsc="00")).smsc is None
    assert d(deliver_hex(smsc="0191")).smsc is None  # TOA only
    assert d(deliver_hex(smsc="0381214F")).smsc == "124"
    with pytest.raises(PduError):
        decode_pdu(deliver_hex(smsc="0C91" + "11" * 11))


# --- TPDU types -----------------------------------------------------------------------


def test_reserved_mti() -> None:
    with pytest.raises(PduError, match="MTI"):
        decode_pdu(V3[:16] + "07" + V3[18:])


def test_status_report_with_parameter_indicator() -> None:
    sr = decode_pdu(V14 + "0300" + "00" + "00")
    assert isinstance(sr, SmsStatusReport)
    assert sr.status == 0x30


def test_status_report_truncated() -> None:
    with pytest.raises(PduError):
        decode_pdu(V14[:-2], tpdu_length=len(V14) // 2 - 9)


@pytest.mark.parametrize(("vpf", "vp"), [(0x10, "A7"), (0x18, "11101021436500"), (0x08, "01" * 7)])
def test_submit_validity_formats(vpf: int, vp: str) -> None:
    pdu = f"00{0x01 | vpf:02X}05" + "0B918100551512F2" + "0000" + vp + "05E8329BFD06"
    sms = decode_pdu(pdu)
    assert isinstance(sms, SmsSubmit)
    assert sms.message_ref == 5
    assert sms.destination == "+18005551212"
    assert sms.text == "hello"


# --- UCS-2 ----------------------------------------------------------------------------


def test_ucs2_single_part_edges() -> None:
    assert decode_ucs2(bytes.fromhex("D83DDE01D83D")) == "😁"  # trailing high half left out
    assert decode_ucs2(bytes.fromhex("DE01D83DDE01")) == "😁"  # leading low half left out
    assert decode_ucs2(bytes.fromhex("0041D83D0042")) == "A\ufffdB"  # lone surrogate inside
    assert decode_ucs2(bytes.fromhex("004100")) == "A"  # odd trailing octet
    with pytest.raises(PduError, match="dangling surrogate"):
        decode_ucs2_strict(bytes.fromhex("D83DDE01D83D"))
    with pytest.raises(PduError, match="odd"):
        decode_ucs2_strict(b"\x00")


def test_ucs2_part_keeps_raw_octets() -> None:
    ud = bytes.fromhex("D83DDE01D83D")
    sms = d(deliver_hex(dcs=0x08, udh=bytes([0, 3, 1, 2, 1]), ud=ud))
    assert sms.text == "😁"
    assert sms.user_data == ud


def test_deliver_prefix_constants() -> None:
    assert deliver_hex(septets=b"hellohello")[: len(SMSC) + 2 + len(OA)] == V3[:34]
