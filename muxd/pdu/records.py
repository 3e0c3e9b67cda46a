"""Frozen records produced and consumed by the PDU codec."""

from __future__ import annotations

import datetime

import msgspec

__all__ = ["Concat", "EncodedPdu", "SmsDeliver", "SmsStatusReport", "SmsSubmit"]


class Concat(msgspec.Struct, frozen=True):
    """Concatenated-SMS information element (IEI 0x00 or 0x08)."""

    ref: int
    total: int
    seq: int
    ref_bits: int  # 8 or 16


class SmsDeliver(msgspec.Struct, frozen=True):
    """One SMS-DELIVER TPDU (one part of a possibly concatenated message)."""

    smsc: str | None
    originator: str
    originator_toa: int
    pid: int
    dcs: int
    scts: datetime.datetime | None  # the SMSC time stamp; None when its octets are not a time
    scts_raw: bytes  # the 7 TP-SCTS octets as received (kept whatever they hold)
    encoding: str  # "gsm7" | "ucs2" | "8bit" | "compressed"
    text: str
    user_data: bytes  # gsm7: one septet per byte; otherwise the raw octets (after the UDH)
    udh: bytes  # raw UDH without the UDHL octet
    concat: Concat | None
    message_class: int | None
    ports: tuple[int, int] | None  # (destination, source)
    more_messages: bool


class SmsStatusReport(msgspec.Struct, frozen=True):
    """One SMS-STATUS-REPORT TPDU."""

    smsc: str | None
    message_ref: int
    recipient: str
    recipient_toa: int
    scts: datetime.datetime | None  # None when the octets are not a time (see scts_raw)
    discharge: datetime.datetime | None
    status: int
    scts_raw: bytes = b""
    discharge_raw: bytes = b""


class SmsSubmit(msgspec.Struct, frozen=True):
    """One SMS-SUBMIT TPDU, as found in modem storage (``AT+CMGL=4``) or built for ``AT+CMGS``.

    ``truncated`` is True when the TP-UDL announced more user data than the PDU
    holds; such SUBMITs are decoded from what is present (see ``decode_pdu``).
    """

    smsc: str | None
    message_ref: int
    destination: str
    destination_toa: int
    dcs: int
    encoding: str
    text: str
    concat: Concat | None
    user_data: bytes = b""
    udh: bytes = b""
    truncated: bool = False


class EncodedPdu(msgspec.Struct, frozen=True):
    """An encoded PDU as a modem prints it in ``+CMGR`` (SMSC prefix included)."""

    hex: str
    tpdu_length: int  # octets excluding the SMSC part
