"""Vendor profiles: the quirks of real modems, as data.

A profile is chosen by probing AT+CGMI / AT+CGMM after the first init commands. Everything a
profile changes is listed here, so a new modem family is a table entry, not a code path.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every port starts with these; they work on every modem we know.
BASE_INIT: tuple[tuple[str, bool], ...] = (
    ("ATE0", True),  # echo off: echo lines would otherwise be routed as info lines
    ("AT+CMEE=1", False),  # numeric +CME ERROR codes
)

# Run after the profile's own init. (command, required)
SMS_INIT: tuple[tuple[str, bool], ...] = (("AT+CMGF=0", True),)  # PDU mode

# New-message indications, best first: store and notify with +CMTI (mt=1). Some firmware
# rejects <ds>/<bfr> values (Qualcomm advertises ds=1 and rejects it; Cinterion accepts only
# bfr... ), so shorter forms follow.
CNMI_FALLBACKS: tuple[str, ...] = (
    "AT+CNMI=2,1,0,0,0",
    "AT+CNMI=2,1,0,0",
    "AT+CNMI=2,1",
    "AT+CNMI=1,1,0,0,0",
)


@dataclass(frozen=True)
class Profile:
    name: str
    # Extra init commands run right after probing, e.g. URC silencing. (command, required)
    init: tuple[tuple[str, bool], ...] = ()
    # ICCID commands tried in order, with the info prefix of their answer ("" = bare line).
    iccid: tuple[tuple[str, str], ...] = (("AT+CCID", "+CCID"),)
    # Memories read and deleted (all three CPMS parameters are always set explicitly).
    memories: tuple[str, ...] = ("SM", "ME")
    # Where new SMS are stored (mem3). SM survives a modem swap with its SIM.
    receive_memory: str = "SM"
    # URC names that mean "the SIM (or module) restarted: identify again".
    sim_urcs: tuple[str, ...] = ("+CPIN",)
    # False when the modem, as initialised by us, reports no SIM swap at all: the ICCID is then
    # re-read before every read and every sweep (never trusted for IDENTITY_FRESH seconds).
    swap_urcs: bool = True


GENERIC = Profile("generic")

PROFILES: dict[str, Profile] = {
    "quectel": Profile(
        "quectel",
        init=(('AT+QURCCFG="urcport","usbat"', False),),
        iccid=(("AT+QCCID", "+QCCID"), ("AT+CCID", "+CCID")),
        sim_urcs=("+CPIN", "+QUSIM", "RDY"),
    ),
    "simcom": Profile(
        "simcom",
        iccid=(("AT+CCID", "+CCID"), ("AT+CICCID", "+ICCID")),
        sim_urcs=("+CPIN", "RDY", "SMS DONE", "SMS Ready"),
    ),
    "huawei": Profile(
        "huawei",
        # ^CURC=0 silences ^RSSI/^BOOT/^MODE floods; ^PORTSEL=1 makes +CMTI appear on this
        # port (E173 otherwise announced SMS only during initialisation).
        init=(("AT^CURC=0", False), ("AT^PORTSEL=1", False)),
        iccid=(("AT^ICCID?", "^ICCID"), ("AT+CCID", "+CCID")),
        sim_urcs=("+CPIN", "^SIMST"),
        swap_urcs=False,  # AT^CURC=0 silences ^SIMST along with the ^RSSI flood
    ),
    "telit": Profile(
        "telit",
        init=(("AT#QSS=1", False),),  # SIM hot-swap notifications (#QSS:)
        iccid=(("AT#CCID", "#CCID"), ("AT+CCID", "+CCID")),
        sim_urcs=("+CPIN", "#QSS"),
    ),
    "sierra": Profile("sierra", iccid=(("AT!ICCID?", "!ICCID"), ("AT+CCID", "+CCID"))),
    "zte": Profile(
        "zte",
        init=(("AT+ZCDRUN=8", False), ("AT+ZOPRT=5", False)),
        iccid=(("AT+ZGETICCID", "+ZGETICCID"), ("AT+CCID", "+CCID")),
    ),
    "generic": GENERIC,
}

# Substrings of AT+CGMI / AT+CGMM answers, lower-cased, to profile names.
_VENDORS = (
    ("quectel", "quectel"),
    ("simcom", "simcom"),
    ("huawei", "huawei"),
    ("telit", "telit"),
    ("sierra", "sierra"),
    ("wavecom", "sierra"),
    ("zte", "zte"),
)


def select_profile(manufacturer: str, model: str) -> Profile:
    text = f"{manufacturer} {model}".lower()
    for needle, name in _VENDORS:
        if needle in text:
            return PROFILES[name]
    return GENERIC
