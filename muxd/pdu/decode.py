"""decode_pdu: hex or raw octets -> SmsDeliver | SmsStatusReport | SmsSubmit."""

from __future__ import annotations

import msgspec

from muxd.pdu.address import decode_address, decode_smsc
from muxd.pdu.dcs import GSM7, UCS2, parse_dcs
from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import decode_septets, unpack_septets
from muxd.pdu.national import locking_table, single_shift_table
from muxd.pdu.records import SmsDeliver, SmsStatusReport, SmsSubmit
from muxd.pdu.scts import decode_scts
from muxd.pdu.ucs2 import decode_ucs2
from muxd.pdu.udh import UdhInfo, parse_udh

__all__ = ["decode_pdu"]

#: Longest input accepted. A valid PDU has at most 12 + 164 octets (SMSC + SUBMIT with a
#: 7-octet VP); the margin admits real captures with surplus octets after
#: TP-UD.
MAX_PDU_OCTETS = 200

_NO_UDH = UdhInfo()

Decoded = SmsDeliver | SmsStatusReport | SmsSubmit

# How strictly the user data length is checked (decode modes, weakest last).
EXACT = 0  # user data ends exactly where TP-UDL says
TRAILING = 1  # octets after the user data are ignored (seen in real captures)
SHORT_SUBMIT = 2  # additionally an SMS-SUBMIT may hold less data than TP-UDL says


def _to_bytes(pdu: str | bytes) -> bytes:
    if isinstance(pdu, str):
        text = pdu.strip()
        if len(text) > 2 * MAX_PDU_OCTETS + 64:
            raise PduError(f"PDU of {len(text)} hex digits is longer than any SMS PDU")
        try:
            return bytes.fromhex(text)
        except ValueError:
            bad = next((i for i, c in enumerate(text) if c not in _HEX_OR_SPACE), None)
            if bad is None:
                raise PduError(f"PDU has an odd number of hex digits ({len(text)})") from None
            raise PduError(f"PDU is not hex: {text[bad]!r} at character {bad}") from None
    if isinstance(pdu, bytes | bytearray | memoryview):
        return bytes(pdu)
    raise PduError(f"PDU must be str or bytes, not {type(pdu).__name__}")


_HEX_OR_SPACE = frozenset("0123456789abcdefABCDEF \t\r\n\x0b\x0c")


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise PduError(f"{what} needs {n} octets, {max(len(data) - pos, 0)} present", pos)


class _UserData(msgspec.Struct, frozen=True):
    """TP-UD parsed: what a DELIVER or a SUBMIT takes of it."""

    encoding: str
    message_class: int | None
    text: str
    user_data: bytes  # septets (GSM 7-bit) or octets after the UDH
    udh: bytes
    info: UdhInfo
    truncated: bool  # a SUBMIT whose UDL exceeds the data present (decoded what is there)


def _user_data(data: bytes, pos: int, fo: int, dcs: int, mode: int) -> _UserData:
    """Parse TP-UDL + TP-UD at ``pos``.

    ``mode`` SHORT_SUBMIT accepts a UDL larger than the data present (decoding
    what is there); EXACT rejects octets after the user data.
    """
    end = len(data)
    if pos >= end:
        raise PduError("TP-UDL missing", pos)
    udl = data[pos]
    pos += 1
    encoding, mclass = parse_dcs(dcs)
    septets = encoding == GSM7
    need = (udl * 7 + 7) // 8 if septets else udl
    avail = end - pos
    truncated = False
    if need > avail:
        if mode != SHORT_SUBMIT:
            unit = "septets" if septets else "octets"
            raise PduError(f"UDL {udl} {unit} needs {need} octets, {avail} present", pos)
        truncated = True
        udl = avail * 8 // 7 if septets else avail
        need = (udl * 7 + 7) // 8 if septets else udl
    elif need < avail and mode == EXACT:
        raise PduError(f"{avail - need} octets after the {need} octets of user data", pos + need)
    udh = b""
    info = _NO_UDH
    hdr = 0
    if fo & 0x40:
        if need == 0:
            raise PduError("TP-UDHI set but the user data is empty", pos)
        hdr = data[pos] + 1
        if hdr > need:
            raise PduError(f"UDHL {hdr - 1} exceeds the {need} octets of user data", pos)
        udh = data[pos + 1 : pos + hdr]
        info = parse_udh(udh, pos + 1)
    if septets:
        skip = (hdr * 8 + 6) // 7
        if skip > udl:
            raise PduError(f"UDH takes {skip} septets, more than UDL {udl}", pos)
        sept = unpack_septets(data[pos : pos + need], udl, skip)
        if info is _NO_UDH:
            text = decode_septets(sept)
        else:
            locking = locking_table(info.locking_shift)
            text = decode_septets(sept, locking, single_shift_table(info.single_shift))
        return _UserData(encoding, mclass, text, sept, udh, info, truncated)
    body = data[pos + hdr : pos + need]
    text = decode_ucs2(body) if encoding == UCS2 else ""
    return _UserData(encoding, mclass, text, body, udh, info, truncated)


def _deliver(data: bytes, pos: int, smsc: str | None, mode: int) -> SmsDeliver:
    fo = data[pos]
    oa, toa, pos = decode_address(data, pos + 1, "originator")
    _need(data, pos, 9, "TP-PID, TP-DCS and TP-SCTS")
    pid = data[pos]
    dcs = data[pos + 1]
    scts = decode_scts(data, pos + 2)  # None (unknown) rather than an error: keep the text
    mode = min(mode, TRAILING)  # a short DELIVER is never accepted
    ud = _user_data(data, pos + 9, fo, dcs, mode)
    return SmsDeliver(
        smsc=smsc,
        originator=oa,
        originator_toa=toa,
        pid=pid,
        dcs=dcs,
        scts=scts,
        scts_raw=data[pos + 2 : pos + 9],
        encoding=ud.encoding,
        text=ud.text,
        user_data=ud.user_data,
        udh=ud.udh,
        concat=ud.info.concat,
        message_class=ud.message_class,
        ports=ud.info.ports,
        more_messages=not fo & 0x04,
    )


_VP_OCTETS = (0, 7, 1, 7)  # by TP-VPF: none, enhanced, relative, absolute


def _submit(data: bytes, pos: int, smsc: str | None, mode: int) -> SmsSubmit:
    fo = data[pos]
    _need(data, pos + 1, 1, "TP-MR")
    mr = data[pos + 1]
    da, toa, pos = decode_address(data, pos + 2, "destination")
    vp = _VP_OCTETS[(fo >> 3) & 0x03]
    _need(data, pos, 2 + vp, "TP-PID, TP-DCS and TP-VP")
    dcs = data[pos + 1]
    ud = _user_data(data, pos + 2 + vp, fo, dcs, mode)
    return SmsSubmit(
        smsc=smsc,
        message_ref=mr,
        destination=da,
        destination_toa=toa,
        dcs=dcs,
        encoding=ud.encoding,
        text=ud.text,
        concat=ud.info.concat,
        user_data=ud.user_data,
        udh=ud.udh,
        truncated=ud.truncated,
    )


def _status_report(data: bytes, pos: int, smsc: str | None) -> SmsStatusReport:
    _need(data, pos + 1, 1, "TP-MR")
    mr = data[pos + 1]
    ra, toa, pos = decode_address(data, pos + 2, "recipient")
    _need(data, pos, 15, "TP-SCTS, TP-DT and TP-ST")
    # Optional TP-PI / PID / DCS / UD may follow; they carry nothing muxd uses.
    return SmsStatusReport(
        smsc=smsc,
        message_ref=mr,
        recipient=ra,
        recipient_toa=toa,
        scts=decode_scts(data, pos),
        discharge=decode_scts(data, pos + 7),
        status=data[pos + 14],
        scts_raw=data[pos : pos + 7],
        discharge_raw=data[pos + 7 : pos + 14],
    )


def _tpdu(data: bytes, pos: int, smsc: str | None, mode: int) -> Decoded:
    if pos >= len(data):
        raise PduError("TPDU missing after the SMSC field", pos)
    mti = data[pos] & 0x03
    if mti == 0:
        return _deliver(data, pos, smsc, mode)
    if mti == 1:
        return _submit(data, pos, smsc, mode)
    if mti == 2:
        return _status_report(data, pos, smsc)
    raise PduError(f"TP-MTI 3 (reserved) in first octet {data[pos]:#04x}", pos)


def _with_smsc(data: bytes, mode: int) -> Decoded:
    smsc, pos = decode_smsc(data)
    return _tpdu(data, pos, smsc, mode)


def decode_pdu(pdu: str | bytes, *, tpdu_length: int | None = None) -> Decoded:
    """Decode one PDU as a modem prints it (hex) or as raw octets.

    ``tpdu_length`` is the ``<length>`` of a ``+CMGR``/``+CMGL`` header: the SMSC
    prefix is present iff the PDU is longer than that. Without it the SMSC prefix
    is assumed and, if that does not parse, a bare TPDU is tried. If the PDU does
    not parse the way ``tpdu_length`` says but autodetection finds a consistent
    reading, that reading is returned (some modems report a wrong length); else
    the error of the announced reading is raised.

    TP-UDL is checked against the data: too little data raises, with one
    exception: an SMS-SUBMIT (our own outgoing/draft message in storage) whose
    UDL exceeds the data is decoded from what is present and flagged
    ``truncated``. Octets after the user data are ignored (real captures have
    them), but when autodetecting, interpretations that consume the PDU
    exactly are preferred.

    A time stamp (TP-SCTS, TP-DT) whose octets are not a valid time is no error: it decodes
    as None (its octets kept in ``scts_raw``), so a bad SMSC clock never costs the text; nor
    does it take part in telling an SMSC-prefixed PDU from a bare TPDU.

    Raises PduError (and nothing else) for any malformed input.
    """
    data = _to_bytes(pdu)
    if len(data) > MAX_PDU_OCTETS:
        raise PduError(f"PDU of {len(data)} octets is longer than any SMS PDU")
    if tpdu_length is None:
        return _autodetect(data)
    try:
        return _as_announced(data, tpdu_length)
    except PduError as exc:
        announced = exc
    # Modems with a wrong <length> exist; a PDU that is consistent on its own wins.
    try:
        return _autodetect(data)
    except PduError:
        raise announced from None


def _as_announced(data: bytes, tpdu_length: int) -> Decoded:
    extra = len(data) - tpdu_length
    if tpdu_length <= 0 or extra < 0:
        raise PduError(f"PDU has {len(data)} octets, tpdu_length {tpdu_length} is impossible")
    if extra == 0:
        return _tpdu(data, 0, None, SHORT_SUBMIT)
    if data[0] + 1 != extra:
        raise PduError(
            f"SMSC field of {data[0]} octets disagrees with {extra} octets before the "
            f"TPDU of tpdu_length {tpdu_length}",
            0,
        )
    return _with_smsc(data, SHORT_SUBMIT)


def _autodetect(data: bytes) -> Decoded:
    try:
        return _with_smsc(data, EXACT)
    except PduError:
        pass
    # Fallbacks, each interpretation tried exact before any tolerance is granted.
    # The error reported is the one of the most tolerant SMSC-prefixed attempt.
    error: PduError | None = None
    for with_smsc, mode in _FALLBACKS:
        try:
            return _with_smsc(data, mode) if with_smsc else _tpdu(data, 0, None, mode)
        except PduError as exc:
            if with_smsc:
                error = exc
    assert error is not None
    raise error


_FALLBACKS = (
    (False, EXACT),
    (True, TRAILING),
    (False, TRAILING),
    (True, SHORT_SUBMIT),
    (False, SHORT_SUBMIT),
)
