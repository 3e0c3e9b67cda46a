"""encode_deliver / encode_submit: text -> one or more PDUs (hex as a modem prints it)."""

from __future__ import annotations

import datetime

from muxd.pdu.address import encode_address, encode_smsc
from muxd.pdu.dcs import GSM7, UCS2, dcs_for
from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import encode_chars, is_gsm7, pack_septets
from muxd.pdu.records import EncodedPdu
from muxd.pdu.scts import encode_scts
from muxd.pdu.udh import concat_ie

__all__ = ["encode_deliver", "encode_submit", "split_user_data"]

MAX_SEPTETS = 160
MAX_OCTETS = 140
MAX_PARTS = 255

Part = tuple[bytes, int]  # (TP-UDL + TP-UD octets, udhi flag 0x40 or 0)


def _choose(text: str, encoding: str | None) -> str:
    if encoding is None:
        return GSM7 if is_gsm7(text) else UCS2
    if encoding not in (GSM7, UCS2):
        raise PduError(f"encoding must be 'gsm7', 'ucs2' or None, not {encoding!r}")
    return encoding


def _check_ref(ref: int, ref_bits: int) -> None:
    if ref_bits not in (8, 16):
        raise PduError(f"ref_bits must be 8 or 16, not {ref_bits}")
    if not 0 <= ref < (1 << ref_bits):
        raise PduError(f"ref {ref} does not fit in {ref_bits} bits")


def _gsm7_parts(text: str, ref: int, ref_bits: int) -> list[Part]:
    chars = encode_chars(text)
    total = sum(len(c) for c in chars)
    if total <= MAX_SEPTETS:
        flat = [s for c in chars for s in c]
        return [(bytes([total]) + pack_septets(flat), 0)]
    hdr_octets = 1 + len(concat_ie(0, 0, 0, ref_bits))
    hdr_septets = (hdr_octets * 8 + 6) // 7
    room = MAX_SEPTETS - hdr_septets
    chunks: list[list[int]] = [[]]
    for c in chars:  # an escape pair is never split across parts
        if len(chunks[-1]) + len(c) > room:
            chunks.append([])
        chunks[-1].extend(c)
    if len(chunks) > MAX_PARTS:
        raise PduError(f"text needs {len(chunks)} parts, at most {MAX_PARTS} possible")
    parts: list[Part] = []
    for seq, chunk in enumerate(chunks, 1):
        ie = concat_ie(ref, len(chunks), seq, ref_bits)
        udh = bytes([len(ie)]) + ie
        ud = pack_septets(chunk, udh, hdr_septets)
        parts.append((bytes([hdr_septets + len(chunk)]) + ud, 0x40))
    return parts


def _octet_parts(body: bytes, ref: int, ref_bits: int, unit: int) -> list[Part]:
    if len(body) <= MAX_OCTETS:
        return [(bytes([len(body)]) + body, 0)]
    hdr_octets = 1 + len(concat_ie(0, 0, 0, ref_bits))
    room = (MAX_OCTETS - hdr_octets) // unit * unit
    chunks = [body[i : i + room] for i in range(0, len(body), room)]
    if len(chunks) > MAX_PARTS:
        raise PduError(f"text needs {len(chunks)} parts, at most {MAX_PARTS} possible")
    parts: list[Part] = []
    for seq, chunk in enumerate(chunks, 1):
        ie = concat_ie(ref, len(chunks), seq, ref_bits)
        ud = bytes([len(ie)]) + ie + chunk
        parts.append((bytes([len(ud)]) + ud, 0x40))
    return parts


def split_user_data(text: str, encoding: str, ref: int, ref_bits: int) -> list[Part]:
    """Text -> per-part (TP-UDL + TP-UD, UDHI bit). UCS-2 splits on 2-octet boundaries
    (a surrogate pair may straddle two parts; reassembly joins octets first)."""
    _check_ref(ref, ref_bits)
    if encoding == GSM7:
        return _gsm7_parts(text, ref, ref_bits)
    try:
        body = text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise PduError("text contains lone surrogates; cannot encode as UCS-2") from None
    return _octet_parts(body, ref, ref_bits, 2)


def _check_octet(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise PduError(f"{name} {value} is not an octet")


def encode_deliver(
    originator: str,
    text: str,
    *,
    scts: datetime.datetime,
    smsc: str | None = "+10000000000",
    encoding: str | None = None,
    ref: int = 0,
    ref_bits: int = 8,
    pid: int = 0,
) -> list[EncodedPdu]:
    """Build SMS-DELIVER PDU(s) as a modem would store them (for fakes and tests).

    ``encoding`` None picks gsm7 when every character is in the default alphabet
    or its extension table, else ucs2. Long texts become concatenated parts
    (153/152 septets or 134/132 octets each for 8/16-bit references).
    """
    _check_octet("pid", pid)
    enc = _choose(text, encoding)
    sc = encode_smsc(smsc)
    oa = encode_address(originator)
    tail = bytes([pid, dcs_for(enc)]) + encode_scts(scts)
    parts = split_user_data(text, enc, ref, ref_bits)
    out: list[EncodedPdu] = []
    for ud, udhi in parts:
        fo = 0x04 | udhi  # SMS-DELIVER, TP-MMS: no more messages waiting
        tpdu = bytes([fo]) + oa + tail + ud
        out.append(EncodedPdu(hex=(sc + tpdu).hex().upper(), tpdu_length=len(tpdu)))
    return out


def encode_submit(
    destination: str,
    text: str,
    *,
    smsc: str | None = None,
    message_ref: int = 0,
    encoding: str | None = None,
    ref: int = 0,
    ref_bits: int = 8,
    pid: int = 0,
    validity: int | None = None,
    status_report: bool = False,
) -> list[EncodedPdu]:
    """Build SMS-SUBMIT PDU(s) for ``AT+CMGS`` (``tpdu_length`` is its argument).

    ``validity`` is a relative TP-VP octet (e.g. 0xA7 = 24 h) or None for none.
    ``message_ref`` is used for the first part and incremented (mod 256) per part.
    """
    _check_octet("message_ref", message_ref)
    _check_octet("pid", pid)
    if validity is not None:
        _check_octet("validity", validity)
    enc = _choose(text, encoding)
    sc = encode_smsc(smsc)
    da = encode_address(destination, allow_alphanumeric=False)
    vp = b"" if validity is None else bytes([validity])
    fo_base = 0x01 | (0x10 if validity is not None else 0) | (0x20 if status_report else 0)
    parts = split_user_data(text, enc, ref, ref_bits)
    out: list[EncodedPdu] = []
    for i, (ud, udhi) in enumerate(parts):
        mr = (message_ref + i) & 0xFF
        tpdu = bytes([fo_base | udhi, mr]) + da + bytes([pid, dcs_for(enc)]) + vp + ud
        out.append(EncodedPdu(hex=(sc + tpdu).hex().upper(), tpdu_length=len(tpdu)))
    return out
