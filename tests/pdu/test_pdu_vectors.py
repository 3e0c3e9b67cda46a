"""Every vector of tests/pdu/pdu_vectors.py with the fields its source test suite asserts."""

from __future__ import annotations

import msgspec
import pytest
from pdu_vectors import (
    MALFORMED_15,
    T1,
    T9,
    T10,
    T11,
    T12,
    T17,
    T19,
    T20,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    V11,
    V12,
    V13,
    V14,
    V16,
    V17,
    V18,
    V19,
    V20,
    V21,
    V22,
    V23,
    V24,
    V25,
    V26,
    V27,
    V28,
    V29,
    V37,
    VALID,
)

from muxd.pdu import (
    Concat,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    concat_key,
    decode_pdu,
    reassemble,
)


def deliver(pdu: str, **kw: int) -> SmsDeliver:
    sms = decode_pdu(pdu, **kw)
    assert isinstance(sms, SmsDeliver)
    return sms


def test_1_gsm7_extension_greek_section_sign() -> None:
    sms = deliver(V1)
    assert sms.smsc == "+12404492164"
    assert sms.originator == "+16175927198"
    assert sms.originator_toa == 0x91
    assert sms.scts.isoformat() == "2011-02-28T11:50:50-05:00"
    assert sms.text == T1
    assert sms.encoding == "gsm7"
    assert sms.concat is None
    assert sms.udh == b""
    assert not sms.more_messages  # first octet 0x04: TP-MMS set


def test_2_alphanumeric_sender_ucs2_cyrillic() -> None:
    sms = deliver(V2)
    assert sms.smsc == "+79037011111"
    assert sms.originator == "InternetSMS"
    assert sms.originator_toa == 0xD0
    assert sms.scts.isoformat() == "2011-03-29T19:20:04+04:00"
    assert sms.text == "тест"
    assert sms.encoding == "ucs2"
    assert sms.user_data == "тест".encode("utf-16-be")


def test_3_plain_gsm7() -> None:
    sms = deliver(V3)
    assert sms.smsc == "+12345678901"
    assert sms.originator == "+18005551212"
    assert sms.scts.isoformat() == "2011-01-01T12:34:56+00:00"
    assert sms.text == "hellohello"
    assert sms.user_data == b"hellohello"  # one septet per byte


def test_4_nonzero_pid_still_text() -> None:
    sms = deliver(V4)
    assert sms.pid == 0xFF
    assert sms.text == "hellohello"


def test_5_more_messages_flag() -> None:
    sms = deliver(V5)
    assert sms.more_messages
    assert sms.text == "hellohello"


def test_6_national_number_has_no_plus() -> None:
    sms = deliver(V6)
    assert sms.originator == "18005551212"
    assert sms.originator_toa == 0x81
    assert sms.text == "hellohello"


@pytest.mark.parametrize(("pdu", "dcs", "cls"), [(V7, 0x04, None), (V8, 0xF4, 0)])
def test_7_8_eight_bit_data(pdu: str, dcs: int, cls: int | None) -> None:
    sms = deliver(pdu)
    assert sms.dcs == dcs
    assert sms.encoding == "8bit"
    assert sms.message_class == cls
    assert sms.text == ""
    assert sms.user_data == bytes.fromhex("E8329BFD4697D9EC37DE")


def test_9_dcs_f1_class1_full_160_septets() -> None:
    sms = deliver(V9)
    assert sms.smsc == "+33609001390"
    assert sms.originator == "1800"
    assert sms.originator_toa == 0x85
    assert sms.scts.isoformat() == "2011-06-24T13:08:15+02:00"
    assert sms.encoding == "gsm7"
    assert sms.message_class == 1
    assert sms.text == T9
    assert len(sms.user_data) == 160


def test_10_sixteen_bit_reference_and_fill_bits() -> None:
    sms = deliver(V10)
    assert sms.smsc == "+31653131316"
    assert sms.originator == "1002"
    assert sms.originator_toa == 0x85
    assert sms.pid == 0x39
    assert sms.scts.isoformat() == "2011-06-29T23:32:19+02:00"
    assert sms.concat == Concat(ref=0x0010, total=2, seq=1, ref_bits=16)
    assert sms.udh == bytes.fromhex("080400100201")
    assert sms.text == T10  # the leading "W" survives the fill bits


def test_11_12_multipart_across_two_smscs() -> None:
    p1, p2 = deliver(V11), deliver(V12)
    assert p1.smsc == "+12063130025"
    assert p2.smsc == "+12063130026"
    assert p1.originator == p2.originator == "+16175046925"
    assert p1.scts.isoformat() == "2012-04-25T19:56:50-04:00"
    assert p2.scts.isoformat() == "2012-04-25T19:56:51-04:00"
    assert p1.concat == Concat(ref=0x4C, total=2, seq=1, ref_bits=8)
    assert p2.concat == Concat(ref=0x4C, total=2, seq=2, ref_bits=8)
    assert p1.text == T11
    assert p2.text == T12
    assert concat_key("sim", p1) == concat_key("sim", p2)
    assert reassemble([p2, p1]) == T11 + T12


def test_13_submit_from_storage() -> None:
    sms = decode_pdu(V13)
    assert isinstance(sms, SmsSubmit)
    assert sms.smsc is None
    assert sms.destination == "639337937"
    assert sms.destination_toa == 0x81
    assert sms.text == "你好你好你好你好你好你好你好你好你"
    assert not sms.truncated


def test_14_status_report() -> None:
    sr = decode_pdu(V14)
    assert isinstance(sr, SmsStatusReport)
    assert sr.smsc == "+34656000311"
    assert sr.recipient == "639337937"
    assert sr.recipient_toa == 0x81
    assert sr.message_ref == 0x5A
    assert sr.scts.isoformat() == "2012-09-11T07:40:36+02:00"
    assert sr.discharge.isoformat() == "2012-09-11T07:40:36+02:00"
    assert sr.status == 0x30


def test_16_smsc_field_of_six_octets() -> None:
    sms = deliver(V16)
    assert sms.smsc == "+2782913593"
    assert sms.originator == "+27821234567"
    assert sms.scts.isoformat() == "2013-03-08T15:02:16+02:00"
    assert sms.text == "Test2"


def test_17() -> None:
    sms = deliver(V17)
    assert sms.smsc == "+85290000000"
    assert sms.originator == "+85291234567"
    assert sms.scts.isoformat() == "2007-04-12T23:25:42+08:00"
    assert sms.text == T17


def test_18_at_sign_next_to_escapes() -> None:
    sms = deliver(V18)
    assert sms.originator == "+27821234567"
    assert sms.text == "@{tést}!"


def test_19_concat_header_on_single_part() -> None:
    sms = deliver(V19)
    assert sms.smsc == "+2781191"
    assert sms.originator == "2781188"
    assert sms.text == T19
    assert sms.concat == Concat(ref=0xC3, total=1, seq=1, ref_bits=8)
    assert reassemble([sms]) == T19


def test_20_megafon_is_not_megafon_at() -> None:
    sms = deliver(V20)
    assert sms.smsc == "+79262000331"
    assert sms.originator == "Megafon"
    assert sms.originator_toa == 0xD0
    assert sms.scts.isoformat() == "2014-05-27T14:01:48+04:00"
    assert sms.text == T20
    assert sms.concat == Concat(ref=0x56, total=2, seq=1, ref_bits=8)


def test_21_semi_invalid_status_report_keeps_garbage_digits() -> None:
    sr = decode_pdu(V21)
    assert isinstance(sr, SmsStatusReport)
    assert sr.message_ref == 28
    assert sr.recipient == "+b08427829207025"
    assert sr.scts.isoformat() == "2013-07-26T14:29:27+02:00"
    assert sr.discharge.isoformat() == "2013-07-26T14:29:31+02:00"


def test_22_status_report_without_smsc() -> None:
    sr = decode_pdu(V22)
    assert isinstance(sr, SmsStatusReport)
    assert sr.smsc is None
    assert sr.message_ref == 214
    assert sr.recipient == "+31628870634"


def test_23_submit_with_udl_beyond_data_is_decoded_tolerantly() -> None:
    """Judgement call: an SMS-SUBMIT in storage is our own outgoing/draft message,
    never forwarded, so a short one is decoded from what is there and flagged
    ``truncated``. A short SMS-DELIVER is still rejected (MALFORMED_15)."""
    sms = decode_pdu(V23)
    assert isinstance(sms, SmsSubmit)
    assert sms.text == "はい"
    assert sms.truncated
    assert sms.concat == Concat(ref=0, total=3, seq=1, ref_bits=8)
    tpdu_len = len(V23) // 2 - 1
    assert decode_pdu(V23, tpdu_length=tpdu_len) == sms


def test_24_eight_bit_submit() -> None:
    sms = decode_pdu(V24)
    assert isinstance(sms, SmsSubmit)
    assert sms.smsc == "+2781191"
    assert sms.destination == "+27821234567"
    assert sms.encoding == "8bit"
    assert sms.user_data == b"Hello world!"


def test_25_26_27_android() -> None:
    a = deliver(V25)
    assert (a.smsc, a.originator, a.text) == ("+14155551212", "+16505551111", "Test")
    b = deliver(V26)
    assert b.dcs == 0x03
    assert b.message_class is None  # class bits without the class-meaning bit
    assert b.text == "(Subject)Test"
    assert deliver(V27).text == "™©®hello"


def test_28_29_reference_zero_multipart_with_trailing_octets() -> None:
    # V28 carries 7 octets beyond its TP-UDL (as stored in the Android test); they are ignored.
    p1, p2 = deliver(V28), deliver(V29)
    assert p1.originator == "16502244137"
    assert p1.originator_toa == 0x81
    assert p1.text == "1" * 153
    assert p2.text == "1111111222222222222222222222"
    assert p1.concat == Concat(ref=0, total=2, seq=1, ref_bits=8)
    assert concat_key("s", p1) == "s|129|16502244137|8:0|2"
    assert reassemble([p1, p2]) == "1" * 160 + "2" * 21


def test_37_bare_tpdu_is_autodetected() -> None:
    sms = deliver(V37)
    assert sms.smsc is None
    assert sms.originator == "+6391"
    assert sms.scts.isoformat() == "2015-05-17T23:02:50+08:00"
    assert sms.text == "Hahahaha"
    assert deliver(V37, tpdu_length=len(V37) // 2) == sms
    assert deliver("00" + V37, tpdu_length=len(V37) // 2) == sms


@pytest.mark.parametrize("pdu", VALID)
def test_tpdu_length_agrees_with_autodetect(pdu: str) -> None:
    data = bytes.fromhex(pdu)
    auto = decode_pdu(pdu)
    bare = pdu == V37 or (data[0] == 0 and auto.smsc is None)
    tpdu_len = len(data) if pdu == V37 else len(data) - 1 - data[0]
    assert decode_pdu(pdu, tpdu_length=tpdu_len) == auto
    assert decode_pdu(data) == auto  # raw octets
    assert decode_pdu(f"  {pdu.lower()}\r\n") == auto  # case and whitespace tolerated
    assert bare or auto.smsc is not None


WITH_SMSC = [v for v in VALID if v != V37]


@pytest.mark.parametrize("pdu", WITH_SMSC)
def test_same_vector_without_its_smsc_prefix(pdu: str) -> None:
    """Every SMSC-prefixed vector, stripped to its bare TPDU, decodes to the same record
    with ``smsc`` None: autodetected, with ``tpdu_length``, and re-prefixed with ``00``."""
    data = bytes.fromhex(pdu)
    full = decode_pdu(data)
    tpdu = data[1 + data[0] :]
    bare = msgspec.structs.replace(full, smsc=None)
    assert decode_pdu(tpdu) == bare
    assert decode_pdu(tpdu.hex()) == bare
    assert decode_pdu(tpdu, tpdu_length=len(tpdu)) == bare
    assert decode_pdu(b"\x00" + tpdu) == bare
    assert decode_pdu(b"\x00" + tpdu, tpdu_length=len(tpdu)) == bare
    # the prefixed form with its announced length keeps the SMSC
    assert decode_pdu(data, tpdu_length=len(tpdu)) == full


@pytest.mark.parametrize("pdu", [V3, V9, V11, V20])
def test_prefix_off_by_one_is_not_mistaken(pdu: str) -> None:
    """A bare TPDU given with the prefixed PDU's length is still read as bare."""
    data = bytes.fromhex(pdu)
    tpdu = data[1 + data[0] :]
    assert decode_pdu(tpdu, tpdu_length=len(data)).smsc is None


@pytest.mark.parametrize("pdu", MALFORMED_15)
def test_15_malformed_vectors_without_smsc_prefix_are_rejected(pdu: str) -> None:
    data = bytes.fromhex(pdu)
    tpdu = data[1 + data[0] :]
    for n in (None, len(tpdu)):
        with pytest.raises(PduError):
            decode_pdu(tpdu, tpdu_length=n)
        with pytest.raises(PduError):
            decode_pdu(b"\x00" + tpdu, tpdu_length=n)
