"""Deterministic identities (IMEI, IMSI, ICCID, own number) for simulated modems.

Every value is derived from ``(seed, port index)`` only, so a simulator restarted
with the same seed presents the same SIMs on the same ports, and no two ports of
one simulator share an IMEI, IMSI, ICCID or number (for fewer than 10**6 ports).

Scheme for port ``i`` (MTS Russia, MCC 250 / MNC 01):

* IMEI: TAC ``35609204`` + 6-digit serial (``base + i``) + Luhn check digit;
* IMSI: ``25001`` + 10-digit MSIN (``base + i``);
* ICCID: ``8970101`` + 11-digit account (``base + i``) + Luhn digit (19 digits) on
  odd ports; even ports carry one more account digit (20 digits), so both ICCID
  lengths (and the ``F`` filler nibble in EF_ICCID) are exercised;
* number: ``+7900`` + 7 digits (``base + i``), or ``first_number + i``;
* rssi: 12..31.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = [
    "ICCID_PREFIX",
    "IMEI_TAC",
    "MCC_MNC",
    "ModemIdentity",
    "iccid_ef_hex",
    "luhn_check_digit",
    "luhn_valid",
    "make_identity",
]

MCC_MNC = "25001"  # MTS Russia; MNC has 2 digits
IMEI_TAC = "35609204"
ICCID_PREFIX = "8970101"  # 89 telecom, 7 Russia, 01 MTS, 01
NUMBER_PREFIX = "+7900"
EF_ICCID_BYTES = 10
_SERIAL_SPACE = 10**6
_MSIN_SPACE = 10**10
_ACCOUNT_SPACE = 10**11
_NUMBER_SPACE = 10**7
_RSSI_RANGE = (12, 31)
_FIRST_NUMBER_RE = re.compile(r"\+\d{6,15}")


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    """What one simulated modem and its SIM say about themselves."""

    imei: str
    imsi: str
    iccid: str
    number: str
    rssi: int


def luhn_check_digit(payload: str) -> str:
    """Return the Luhn check digit to append to the decimal string ``payload``."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when the last digit of ``number`` is its Luhn check digit."""
    return len(number) >= 2 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def iccid_ef_hex(iccid: str) -> str:
    """EF_ICCID content as ``AT+CRSM=176,12258,...`` prints it: nibble-swapped BCD, F-padded."""
    padded = iccid.ljust(EF_ICCID_BYTES * 2, "F")[: EF_ICCID_BYTES * 2]
    return "".join(padded[k + 1] + padded[k] for k in range(0, len(padded), 2)).upper()


def make_identity(seed: int, index: int, *, first_number: str | None = None) -> ModemIdentity:
    """Identity of port ``index`` of a simulator seeded with ``seed`` (see module docstring)."""
    if index < 0:
        raise ValueError(f"port index must be >= 0, got {index}")
    base = random.Random(f"muxd-sim:{seed}")
    serial_base = base.randrange(_SERIAL_SPACE)
    msin_base = base.randrange(_MSIN_SPACE)
    account_base = base.randrange(_ACCOUNT_SPACE)
    number_base = base.randrange(_NUMBER_SPACE)

    imei_body = f"{IMEI_TAC}{(serial_base + index) % _SERIAL_SPACE:06d}"
    imsi = f"{MCC_MNC}{(msin_base + index) % _MSIN_SPACE:010d}"
    account = f"{(account_base + index) % _ACCOUNT_SPACE:011d}"
    if index % 2 == 0:
        account = f"{index % 10}{account}"
    iccid_body = ICCID_PREFIX + account
    if first_number is None:
        number = f"{NUMBER_PREFIX}{(number_base + index) % _NUMBER_SPACE:07d}"
    else:
        if not _FIRST_NUMBER_RE.fullmatch(first_number):
            raise ValueError(f"first_number must look like +79001234567, got {first_number!r}")
        digits = first_number[1:]
        number = f"+{int(digits) + index:0{len(digits)}d}"
    rssi = random.Random(f"muxd-sim:{seed}:{index}").randint(*_RSSI_RANGE)
    return ModemIdentity(
        imei=imei_body + luhn_check_digit(imei_body),
        imsi=imsi,
        iccid=iccid_body + luhn_check_digit(iccid_body),
        number=number,
        rssi=rssi,
    )
