"""Names of unsolicited result codes and of two-line (header + PDU) lines.

A line whose name is in :data:`URC_NAMES` is a :class:`~muxd.at.events.Urc` even while a
command is in flight, unless the name is the command's expected prefix (``AT+CREG?`` answers
``+CREG: 0,1``, which is an Info). Names in :data:`SMS_URC_NAMES` are URCs even then: a
received message must never be mistaken for part of an answer.
"""

from __future__ import annotations

#: Received SMS / status reports / cell broadcasts: always URCs.
SMS_URC_NAMES = frozenset({"+CMTI", "+CMT", "+CDS", "+CDSI", "+CBM"})

URC_NAMES = SMS_URC_NAMES | frozenset(
    {
        # 3GPP TS 27.007
        "RING",
        "+CRING",
        "+CLIP",
        "+CPIN",
        "+CREG",
        "+CGREG",
        "+CEREG",
        "+C5GREG",
        "+CUSD",
        "+CIEV",
        "+CGEV",
        "+CTZV",
        "+CTZE",
        "NO CARRIER",  # a final result while a command is in flight (checked first)
        # Huawei (silenced by AT^CURC=0)
        "^RSSI",
        "^HRSSILVL",
        "^BOOT",
        "^MODE",
        "^DSFLOWRPT",
        "^SIMST",
        "^SRVST",
        "^HCSQ",
        "^NWTIME",
        "^NDISSTAT",
        "^RFSWITCH",
        "^ORIG",
        "^CONF",
        "^CONN",
        "^CEND",
        "^STIN",
        "^SMMEMFULL",
        "^EONS",
        "^SYSSTART",
        # Quectel
        "RDY",
        "+QUSIM",
        "+QIND",
        # SIMCom
        "SMS Ready",
        "SMS DONE",
        "PB DONE",
        "Call Ready",
        "+CFUN",
        "*PSUTTZ",
        "DST",
        # Telit, Cinterion, Sierra/Wavecom, Fibocom
        "#QSS",
        "^SCKS",
        "+WIND",
        "+SIM",
    }
)

#: Two-line URCs in PDU mode: ``+CMT: [<alpha>],<length>`` / ``+CDS: <length>`` /
#: ``+CBM: <length>`` followed by the PDU. ``+CMGR``/``+CMGL`` here catch a late answer
#: that arrives after the caller gave up on its command.
TWO_LINE_URC_NAMES = frozenset({"+CMT", "+CDS", "+CBM", "+CMGR", "+CMGL"})

#: Two-line information responses: ``+CMGR: <stat>,[<alpha>],<length>`` and
#: ``+CMGL: <index>,<stat>,[<alpha>],<length>``, each followed by the PDU.
TWO_LINE_INFO_NAMES = frozenset({"+CMGR", "+CMGL"})


def split_name(line: str) -> tuple[str, str]:
    """``"+CMTI: "SM",3"`` -> ``("+CMTI", '"SM",3')``; ``"RING"`` -> ``("RING", "")``."""
    colon = line.find(":")
    if colon <= 0:
        return line, ""
    return line[:colon].rstrip(), line[colon + 1 :].strip()


def announces_empty_pdu(args: str) -> bool:
    """True if a two-line header's last field (the PDU length) is 0: no PDU line follows."""
    return args.rpartition(",")[2].strip() == "0"
