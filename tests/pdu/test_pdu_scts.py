"""An SMSC time stamp never costs the text: any 7 stamp octets in a well-formed PDU decode."""

from __future__ import annotations

import datetime

import pdu_vectors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_build import deliver_hex

from muxd.pdu import SmsDeliver, SmsStatusReport, decode_pdu, encode_deliver
from muxd.pdu.address import decode_address, decode_smsc
from muxd.pdu.scts import decode_scts, encode_scts


def _delivers() -> list[tuple[str, bytes, int, int]]:
    """(name, octets, TP-SCTS offset, SMSC prefix length) of every DELIVER vector."""
    out = []
    for name in sorted(vars(pdu_vectors)):
        value = getattr(pdu_vectors, name)
        if not (name.startswith("V") and name[1:].isdigit() and isinstance(value, str)):
            continue
        sms = decode_pdu(value)
        if not isinstance(sms, SmsDeliver):
            continue
        data = bytes.fromhex(value)
        for start in (decode_smsc(data)[1], 0):
            try:
                _, _, pos = decode_address(data, start + 1, "originator")
            except Exception:  # noqa: BLE001 - this reading is not the one; try the other
                continue
            if data[pos + 2 : pos + 9] == sms.scts_raw and data[start] & 3 == 0:
                out.append((name, data, pos + 2, start))
                break
    return out


DELIVERS = _delivers()


def test_every_deliver_vector_is_covered() -> None:
    assert len(DELIVERS) >= 15


@pytest.mark.parametrize(("name", "data", "at", "prefix"), DELIVERS, ids=[v[0] for v in DELIVERS])
@settings(max_examples=60, deadline=None)
@given(stamp=st.binary(min_size=7, max_size=7))
def test_any_stamp_octets_keep_the_vector_decodable(
    name: str, data: bytes, at: int, prefix: int, stamp: bytes
) -> None:
    want = decode_pdu(data)
    assert isinstance(want, SmsDeliver)
    bad = data[:at] + stamp + data[at + 7 :]
    for got in (decode_pdu(bad), decode_pdu(bad.hex(), tpdu_length=len(data) - prefix)):
        assert isinstance(got, SmsDeliver), name
        assert got.scts_raw == stamp
        assert got.scts == decode_scts(stamp, 0)
        assert (got.originator, got.text, got.user_data, got.concat, got.smsc) == (
            want.originator,
            want.text,
            want.user_data,
            want.concat,
            want.smsc,
        )


@pytest.mark.parametrize(
    ("stamp", "why"),
    [
        ("11310021436500", "month 13"),
        ("11101052436500", "hour 25"),
        ("111010214365A0", "non-BCD zone"),
        ("FFFFFFFFFFFFFF", "all ones"),
    ],
)
def test_the_named_bad_stamps_are_unknown(stamp: str, why: str) -> None:
    sms = decode_pdu(deliver_hex(scts=stamp, septets=b"code 1234"))
    assert isinstance(sms, SmsDeliver), why
    assert sms.scts is None
    assert sms.text == "code 1234"


def test_status_report_with_bad_stamps_decodes() -> None:
    v14 = pdu_vectors.V14
    bad = v14[:-30] + "11310021436500" + "111010214365A0" + v14[-2:]
    sr = decode_pdu(bad)
    assert isinstance(sr, SmsStatusReport)
    assert (sr.scts, sr.discharge) == (None, None)
    assert sr.scts_raw.hex().upper() == "11310021436500"
    assert sr.status == 0x30


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=7, max_size=7))
def test_decode_scts_is_total(stamp: bytes) -> None:
    got = decode_scts(stamp, 0)
    assert got is None or (2000 <= got.year <= 2099 and got.utcoffset() is not None)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(min_size=1, max_size=400),
    sender=st.sampled_from(["+79161234567", "Bank", "900"]),
    stamp=st.binary(min_size=7, max_size=7),
)
def test_any_stamp_octets_keep_encoded_parts_decodable(
    text: str, sender: str, stamp: bytes
) -> None:
    when = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
    good = encode_scts(when).hex().upper()
    for enc in encode_deliver(sender, text, scts=when, ref=9):
        assert enc.hex.count(good) >= 1
        at = enc.hex.index(good)  # the first occurrence: the SCTS precedes the user data
        bad = enc.hex[:at] + stamp.hex().upper() + enc.hex[at + 14 :]
        want = decode_pdu(enc.hex, tpdu_length=enc.tpdu_length)
        got = decode_pdu(bad, tpdu_length=enc.tpdu_length)
        assert isinstance(want, SmsDeliver)
        assert isinstance(got, SmsDeliver)
        assert got.scts_raw == stamp
        assert (got.text, got.user_data, got.concat) == (want.text, want.user_data, want.concat)
