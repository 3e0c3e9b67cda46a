"""``muxd pdu decode``: PDUs (hex) to one JSON object per line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1


def cmd_pdu_decode(args: argparse.Namespace) -> int:
    """Print one compact JSON object per PDU (argument, or line of stdin when none given).

    Keys, in this order, by TP-MTI (``*_type`` is the TON of the address's TOA, TS 23.040
    §9.1.2.5: unknown, international, national, network-specific, subscriber,
    alphanumeric, abbreviated, reserved; timestamps are ISO 8601 with their zone, or null
    when the octets are not a valid time, and then ``timestamp_raw`` follows ``timestamp``
    with the 7 octets in hex; such a PDU still decodes, text and all):

    - deliver: type, smsc, sender, sender_type, timestamp, encoding, text, data, concat,
      pid, dcs
    - status-report: type, smsc, recipient, recipient_type, message_ref, timestamp
      (TP-SCTS), discharge (TP-DT), status (TP-ST, an integer)
    - submit: type, smsc, destination, destination_type, message_ref, encoding, text, data,
      concat, dcs, truncated

    ``text`` is null and ``data`` the user data in hex (after any UDH) for 8-bit and
    compressed messages; otherwise ``data`` is null. ``concat`` is null or
    ``{"ref", "total", "seq", "ref_bits"}``. A PDU that does not decode prints
    ``{"error": "..."}`` on its line; the others still print and the exit status is 1.
    SMSC-prefixed PDUs and bare TPDUs are told apart by ``decode_pdu``.
    """
    import datetime

    import msgspec

    from muxd.pdu import PduError, SmsDeliver, SmsStatusReport, decode_pdu

    tons = (
        "unknown",
        "international",
        "national",
        "network-specific",
        "subscriber",
        "alphanumeric",
        "abbreviated",
        "reserved",
    )

    def user_data(sms: Any) -> tuple[str | None, str | None, dict[str, int] | None]:
        text, data = sms.text, None
        if sms.encoding in ("8bit", "compressed"):
            text, data = None, sms.user_data.hex().upper()
        c = sms.concat
        concat = None if c is None else msgspec.structs.asdict(c)
        return text, data, concat

    def stamp(when: datetime.datetime | None, raw: bytes) -> dict[str, str | None]:
        if when is None:
            return {"timestamp": None, "timestamp_raw": raw.hex().upper()}
        return {"timestamp": when.isoformat()}

    def record(sms: Any) -> dict[str, Any]:
        if isinstance(sms, SmsDeliver):
            text, data, concat = user_data(sms)
            return {
                "type": "deliver",
                "smsc": sms.smsc,
                "sender": sms.originator,
                "sender_type": tons[(sms.originator_toa >> 4) & 7],
                **stamp(sms.scts, sms.scts_raw),
                "encoding": sms.encoding,
                "text": text,
                "data": data,
                "concat": concat,
                "pid": sms.pid,
                "dcs": sms.dcs,
            }
        if isinstance(sms, SmsStatusReport):
            return {
                "type": "status-report",
                "smsc": sms.smsc,
                "recipient": sms.recipient,
                "recipient_type": tons[(sms.recipient_toa >> 4) & 7],
                "message_ref": sms.message_ref,
                **stamp(sms.scts, sms.scts_raw),
                "discharge": None if sms.discharge is None else sms.discharge.isoformat(),
                "status": sms.status,
            }
        text, data, concat = user_data(sms)
        return {
            "type": "submit",
            "smsc": sms.smsc,
            "destination": sms.destination,
            "destination_type": tons[(sms.destination_toa >> 4) & 7],
            "message_ref": sms.message_ref,
            "encoding": sms.encoding,
            "text": text,
            "data": data,
            "concat": concat,
            "dcs": sms.dcs,
            "truncated": sms.truncated,
        }

    lines = args.pdu or (line for line in sys.stdin if line.strip())
    encode = msgspec.json.encode
    status = EXIT_OK
    for line in lines:
        try:
            out = record(decode_pdu(line.strip(), tpdu_length=args.length))
        except PduError as exc:
            out = {"error": str(exc)}
            status = EXIT_FAILURE
        sys.stdout.write(encode(out).decode() + "\n")
    sys.stdout.flush()
    return status
