"""E.164 calling codes and MCC/MNC helpers (pure, no I/O)."""

from __future__ import annotations

import msgspec


class UssdQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An operator's own-number USSD query ([[numbers.ussd]] in the config)."""

    operator: int  # MCC+MNC this query applies to, e.g. 25001
    code: str  # e.g. "*111*0887#"
    regex: str  # the first group (or the whole match) is the number


# E.164 calling codes are prefix-free: 1 and 7 are the only one-digit codes, these are the
# two-digit ones, every other code has three digits.
_TWO_DIGIT_CODES = frozenset(
    {
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49,
        51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84,
        86, 90, 91, 92, 93, 94, 95, 98,
    }
)  # fmt: skip

# MCCs whose networks use three-digit MNCs (used when EF_AD can't be read).
_THREE_DIGIT_MNC_MCCS = frozenset(
    {302, 310, 311, 312, 313, 314, 315, 316, 334, 338, 342, 344, 346, 348, 354, 356, 358, 360,
     365, 376, 405, 708, 722, 732}
)  # fmt: skip


def calling_code(number: str) -> int | None:
    """The E.164 calling code of ``+digits``; None when the number is not international."""
    if not number.startswith("+") or not number[1:].isdigit() or len(number) < 4:
        return None
    digits = number[1:]
    if digits[0] in "17":
        return int(digits[0])
    if int(digits[:2]) in _TWO_DIGIT_CODES:
        return int(digits[:2])
    return int(digits[:3])


def operator_code(imsi: str, mnc_length: int | None = None) -> int | None:
    """MCC+MNC as an integer (Onlinesim's `operator`), from the IMSI."""
    if len(imsi) < 6 or not imsi.isdigit():
        return None
    if mnc_length is None:
        mnc_length = 3 if int(imsi[:3]) in _THREE_DIGIT_MNC_MCCS else 2
    return int(imsi[: 3 + mnc_length])


def normalise_number(number: str, toa: int | None = None) -> str | None:
    """``+digits`` for an international number, None when it can't be made international."""
    text = number.strip().replace(" ", "")
    if text.startswith("+") and text[1:].isdigit():
        return text
    if text.isdigit() and toa == 145:
        return "+" + text
    return None
