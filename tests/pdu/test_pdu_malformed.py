"""Malformed input raises PduError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdu_vectors import MALFORMED_15, V3, V9, V10, V14, V20, V37, VALID

from muxd.pdu import PduError, SmsSubmit, decode_pdu


@pytest.mark.parametrize("pdu", MALFORMED_15)
def test_15_malformed_vectors_rejected(pdu: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(pdu)


def test_udl_beyond_data_message_names_what_and_where() -> None:
    with pytest.raises(PduError) as info:
        decode_pdu(MALFORMED_15[0])
    assert str(info.value) == "UDL 11 septets needs 10 octets, 9 present (octet 27)"
    assert info.value.offset == 27
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "0",
        "079",
        "ZZ",
        "07912143658709F1040B91810055151 2F2",  # odd number of digits
        "0791214365870xF1",
        "+CMGR: 0,,22",
        "ÿÿ",
        "07912143658709F1\x00",
        "OK",
        "ERROR",
    ],
)
def test_non_hex_and_odd_length(garbage: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(garbage)


@pytest.mark.parametrize("bad", [None, 7, 1.5, ["07"]])
def test_wrong_type_is_pdu_error(bad: object) -> None:
    with pytest.raises(PduError):
        decode_pdu(bad)  # type: ignore[arg-type]


def test_oversized_input() -> None:
    with pytest.raises(PduError):
        decode_pdu(V3 + "00" * 200)
    with pytest.raises(PduError):
        decode_pdu("0" * 100_000)


@pytest.mark.parametrize("pdu", VALID)
def test_every_truncation_raises_pdu_error_only(pdu: str) -> None:
    """Every prefix (whole octets and half octets) of every vector.

    Accepted prefixes are exactly: an SMS-SUBMIT decoded tolerantly (flagged
    ``truncated``, see test_23) and prefixes that still hold all of TP-UD when the
    vector carries extra trailing octets (V28).
    """
    full = decode_pdu(pdu)
    for k in range(len(pdu)):
        try:
            got = decode_pdu(pdu[:k])
        except PduError:
            continue
        if isinstance(full, SmsSubmit):
            assert isinstance(got, SmsSubmit)
            assert got.truncated, k
        else:
            assert got == full, k


@pytest.mark.parametrize("pdu", VALID)
def test_every_truncation_with_tpdu_length(pdu: str) -> None:
    data = bytes.fromhex(pdu)
    full = decode_pdu(data)
    tpdu_len = len(data) if full.smsc is None and data[0] != 0 else len(data) - 1 - data[0]
    for k in range(len(data)):
        for n in (tpdu_len, k - (len(data) - tpdu_len)):
            try:
                got = decode_pdu(data[:k], tpdu_length=n)
            except PduError:
                continue
            if isinstance(full, SmsSubmit):
                assert isinstance(got, SmsSubmit), (k, n)
                assert got.truncated, (k, n)
            else:
                assert got == full, (k, n)  # only V28's surplus octets may go


def test_wrong_tpdu_length_falls_back_to_a_consistent_reading() -> None:
    data = bytes.fromhex(V3)
    sms = decode_pdu(data)
    for wrong in (len(data) - 3, len(data), len(data) + 1, 0, -5):
        assert decode_pdu(data, tpdu_length=wrong) == sms


def test_wrong_tpdu_length_on_malformed_pdu_names_the_announced_reading() -> None:
    data = bytes.fromhex(MALFORMED_15[0])
    with pytest.raises(PduError, match="SMSC field"):
        decode_pdu(data, tpdu_length=len(data) - 3)
    with pytest.raises(PduError, match="impossible"):
        decode_pdu(data, tpdu_length=len(data) + 1)
    with pytest.raises(PduError, match="UDL 11"):
        decode_pdu(data, tpdu_length=len(data) - 8)


@pytest.mark.parametrize("pdu", [V3, V9, V10, V14, V20, V37])
def test_every_single_octet_mutation(pdu: str) -> None:
    data = bytearray.fromhex(pdu)
    for i in range(len(data)):
        for value in (0x00, 0x7F, 0x80, 0xFF, data[i] ^ 0x40):
            mutated = bytearray(data)
            mutated[i] = value
            try:
                decode_pdu(bytes(mutated))
            except PduError:
                pass


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_pdu_error(data: bytes) -> None:
    try:
        decode_pdu(data)
    except PduError:
        pass
    try:
        decode_pdu(data.hex())
    except PduError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.binary(min_size=1, max_size=40), st.integers(0, 200))
def test_spliced_garbage_raises_only_pdu_error(pdu: str, junk: bytes, at: int) -> None:
    data = bytes.fromhex(pdu)
    at = min(at, len(data))
    for candidate in (data[:at] + junk, data[:at] + junk + data[at:], junk + data):
        for n in (None, len(candidate) - 1, len(data) - 8):
            try:
                decode_pdu(candidate, tpdu_length=n)
            except PduError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_raises_only_pdu_error(text: str) -> None:
    try:
        decode_pdu(text)
    except PduError:
        pass
