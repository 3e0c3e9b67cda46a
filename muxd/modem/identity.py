"""Reading a port's identity: IMEI, IMSI, ICCID, MNC length, own number (CNUM, USSD).

Own number, in order of trust: the operator's numbers file (ICCID or IMSI), then
AT+CNUM, then a USSD query configured per operator (code + regex).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from muxd.at import AtParseError, Urc, parse_cnum
from muxd.errors import AtCommandError, ModemError
from muxd.modem.session import ModemSession
from muxd.numbering import UssdQuery, normalise_number
from muxd.pdu.gsm7 import DEFAULT_EXTENSION, DEFAULT_LOCKING, decode_septets, unpack_septets

LOGGER = logging.getLogger(__name__)

# USSD answers come from the network: allow for a slow operator platform.
USSD_TIMEOUT = 30.0
# EF_AD (TS 31.102 §4.2.18): byte 4 holds the MNC length.
EF_AD_READ = "AT+CRSM=176,28589,0,0,4"
EF_ICCID_READ = "AT+CRSM=176,12258,0,0,10"
SW_OK = "144"


def _digits_after(lines: Sequence[str], prefix: str) -> str | None:
    for line in lines:
        text = line
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :].lstrip(":").strip()
        text = text.strip().strip('"')
        if text.isdigit():
            return text
        # Some firmware pads ICCIDs with F or prints hex digits: keep digits only when sane.
        cleaned = text.rstrip("Ff")
        if cleaned.isdigit() and len(cleaned) >= 18:
            return cleaned
    return None


def swap_nibbles(hexstr: str) -> str:
    out = "".join(hexstr[i + 1] + hexstr[i] for i in range(0, len(hexstr) - 1, 2))
    return out.rstrip("Ff")


async def read_plain(session: ModemSession, command: str) -> str | None:
    """A command answering one bare number line (AT+CGSN, AT+CIMI)."""
    resp = await session.command(command)
    return _digits_after([i.line for i in resp.lines], "+" + command[3:])


IccidCommand = tuple[str, str]  # (command, info prefix of its answer)
EF_ICCID: IccidCommand = (EF_ICCID_READ, "+CRSM")


async def read_iccid(
    session: ModemSession, commands: Sequence[IccidCommand]
) -> tuple[str | None, IccidCommand | None]:
    """(ICCID, the command that gave it): vendor commands in order, then EF_ICCID."""
    for command, prefix in (*commands, EF_ICCID):
        try:
            resp = await session.command(command)
        except AtCommandError:
            continue
        if command == EF_ICCID_READ:
            fields = _crsm(resp.first("+CRSM"))
            if fields and fields[0] == SW_OK and len(fields) >= 3:
                from_ef = swap_nibbles(fields[2])
                if from_ef.isdigit():
                    return from_ef, EF_ICCID
            continue
        found = _digits_after([i.line for i in resp.lines], prefix)
        if found:
            return found, (command, prefix)
    return None, None


def _crsm(args: str | None) -> list[str] | None:
    if args is None:
        return None
    return [f.strip().strip('"') for f in args.split(",")]


async def read_mnc_length(session: ModemSession) -> int | None:
    """MNC length (2 or 3) from EF_AD, None when the SIM or modem won't say."""
    try:
        resp = await session.command(EF_AD_READ)
    except AtCommandError:
        return None
    fields = _crsm(resp.first("+CRSM"))
    if not fields or fields[0] != SW_OK or len(fields) < 3 or len(fields[2]) < 8:
        return None
    try:
        length = int(fields[2][6:8], 16) & 0x0F
    except ValueError:
        return None
    return length if length in (2, 3) else None


async def read_cnum(session: ModemSession) -> str | None:
    try:
        resp = await session.command("AT+CNUM")
    except AtCommandError:
        return None
    for info in resp.lines:
        try:
            number = parse_cnum(info.line)
        except AtParseError:
            continue
        if number:
            normal = normalise_number(number)
            if normal:
                return normal
    return None


def decode_ussd_text(text: str, dcs: int | None) -> list[str]:
    """Candidate readings of a +CUSD string: as is, UCS-2 hex, packed GSM 7-bit hex."""
    out = [text]
    if text and all(c in "0123456789abcdefABCDEF" for c in text) and len(text) % 2 == 0:
        raw = bytes.fromhex(text)
        if len(raw) % 2 == 0:
            try:
                out.append(raw.decode("utf-16-be"))
            except UnicodeDecodeError:
                pass
        septets = unpack_septets(raw, len(raw) * 8 // 7)
        out.append(decode_septets(septets, DEFAULT_LOCKING, DEFAULT_EXTENSION).rstrip("@\r"))
    return out


def find_number(candidates: Sequence[str], regex: str) -> str | None:
    pattern = re.compile(regex)
    for text in candidates:
        match = pattern.search(text)
        if match:
            found = match.group(1) if match.groups() else match.group(0)
            digits = re.sub(r"[^\d+]", "", found)
            if not digits.startswith("+"):
                digits = "+" + digits
            number = normalise_number(digits)
            if number:
                return number
    return None


async def query_ussd(session: ModemSession, query: UssdQuery) -> str | None:
    """Send the operator's own-number USSD code and pick the number out of the answer."""
    waiter = session.expect_urc("+CUSD")
    try:
        await session.command(f'AT+CUSD=1,"{query.code}",15', timeout=USSD_TIMEOUT)
        urc: Urc = await session.wait_urc(waiter, timeout=USSD_TIMEOUT)
    except (ModemError, TimeoutError) as exc:
        LOGGER.info("%s: USSD %s failed: %s", session.name, query.code, exc)
        return None
    finally:
        session.forget_urc(waiter)
    fields = urc.args.split(",", 1)
    if len(fields) < 2:
        return None
    rest = fields[1]
    text, _, dcs_text = rest.rpartition(",")
    if not text:
        text, dcs_text = rest, ""
    dcs = int(dcs_text) if dcs_text.strip().isdigit() else None
    return find_number(decode_ussd_text(text.strip().strip('"'), dcs), query.regex)


async def own_number(
    session: ModemSession,
    *,
    iccid: str | None,
    imsi: str | None,
    operator: int | None,
    numbers: Mapping[str, str],
    ussd: Sequence[UssdQuery],
) -> tuple[str | None, str]:
    """(number, source): numbers file → AT+CNUM → USSD."""
    for key in (iccid, imsi):
        if key and key in numbers:
            return numbers[key], "file"
    number = await read_cnum(session)
    if number:
        return number, "cnum"
    for query in ussd:
        if query.operator == operator:
            number = await query_ussd(session, query)
            if number:
                return number, "ussd"
    return None, "unknown"
