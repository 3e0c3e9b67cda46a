"""Sans-I/O SMS PDU codec (3GPP TS 23.040 / 23.038).

Imports only the standard library (no asyncio) and msgspec.
"""

from __future__ import annotations

from muxd.pdu.decode import decode_pdu
from muxd.pdu.encode import encode_deliver, encode_submit
from muxd.pdu.errors import PduError
from muxd.pdu.reassembly import (
    Placement,
    WaitingPart,
    concat_key,
    place_part,
    reassemble,
)
from muxd.pdu.records import Concat, EncodedPdu, SmsDeliver, SmsStatusReport, SmsSubmit

__all__ = [
    "Concat",
    "EncodedPdu",
    "PduError",
    "Placement",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "WaitingPart",
    "concat_key",
    "decode_pdu",
    "encode_deliver",
    "encode_submit",
    "place_part",
    "reassemble",
]
