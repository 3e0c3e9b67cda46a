"""encode_deliver / encode_submit: text -> one or more PDUs (hex as a modem prints it)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from muxd.pdu.address import encode_address, encode_smsc
from muxd.pdu.dcs import GSM7, UCS2, dcs_for
from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import (
    DEFAULT_EXTENSION,
    DEFAULT_LOCKING,
    encode_chars,
    encoder_maps,
    pack_septets,
)
from muxd.pdu.national import (
    LANGUAGES,
    has_locking_table,
    has_single_shift_table,
    locking_table,
    single_shift_table,
)
from muxd.pdu.records import EncodedPdu
from muxd.pdu.scts import encode_scts
from muxd.pdu.udh import IEI_LOCKING_SHIFT, IEI_SINGLE_SHIFT, concat_ie

__all__ = ["SHIFT_MODES", "encode_deliver", "encode_submit", "national_alphabet", "split_user_data"]

MAX_SEPTETS = 160
MAX_OCTETS = 140
MAX_PARTS = 255

Part = tuple[bytes, int]  # (TP-UDL + TP-UD octets, udhi flag 0x40 or 0)
Maps = tuple[Mapping[str, int], Mapping[str, int]]  # (locking char -> code, shift char -> code)

#: ``shift`` values: which national tables of ``language`` to use (None: every one defined).
SHIFT_MODES = ("locking", "single", "both")


class _Alphabet:
    """Encoder maps of one (language, shift) choice and the UDH elements announcing it."""

    __slots__ = ("ies", "maps")

    def __init__(self, maps: Maps, ies: bytes) -> None:
        self.maps = maps
        self.ies = ies

    def encodes(self, text: str) -> bool:
        main, ext = self.maps
        return all(c in main or c in ext for c in text)


_DEFAULT_ALPHABET = _Alphabet(encoder_maps(), b"")
_ALPHABETS: dict[tuple[int, bool, bool], _Alphabet] = {}


def _alphabet(language: int | None, shift: str | None) -> _Alphabet:
    if language is None:
        if shift is not None:
            raise PduError(f"shift {shift!r} given without a language")
        return _DEFAULT_ALPHABET
    if language not in LANGUAGES:
        raise PduError(f"language must be one of {sorted(LANGUAGES)} (23.038), not {language!r}")
    name = LANGUAGES[language]
    if shift is None:
        lock, single = has_locking_table(language), has_single_shift_table(language)
    elif shift in SHIFT_MODES:
        lock, single = shift != "single", shift != "locking"
    else:
        raise PduError(f"shift must be one of {SHIFT_MODES} or None, not {shift!r}")
    if lock and not has_locking_table(language):
        raise PduError(f"language {language} ({name}) has no locking shift table")
    key = (language, lock, single)
    found = _ALPHABETS.get(key)
    if found is None:
        maps = encoder_maps(
            locking_table(language) if lock else DEFAULT_LOCKING,
            single_shift_table(language) if single else DEFAULT_EXTENSION,
        )
        ies = (bytes([IEI_LOCKING_SHIFT, 1, language]) if lock else b"") + (
            bytes([IEI_SINGLE_SHIFT, 1, language]) if single else b""
        )
        found = _ALPHABETS[key] = _Alphabet(maps, ies)
    return found


def national_alphabet(language: int | None, shift: str | None = None) -> frozenset[str]:
    """Every character ``encode_deliver(..., language=, shift=)`` can send as GSM 7-bit."""
    main, ext = _alphabet(language, shift).maps
    return frozenset(main) | frozenset(ext)


def _choose(text: str, encoding: str | None, alphabet: _Alphabet) -> str:
    if encoding is None:
        return GSM7 if alphabet.encodes(text) else UCS2
    if encoding not in (GSM7, UCS2):
        raise PduError(f"encoding must be 'gsm7', 'ucs2' or None, not {encoding!r}")
    return encoding


def _check_ref(ref: int, ref_bits: int) -> None:
    if ref_bits not in (8, 16):
        raise PduError(f"ref_bits must be 8 or 16, not {ref_bits}")
    if not 0 <= ref < (1 << ref_bits):
        raise PduError(f"ref {ref} does not fit in {ref_bits} bits")


def _septets_for(octets: int) -> int:
    return (octets * 8 + 6) // 7


def _gsm7_parts(text: str, ref: int, ref_bits: int, alphabet: _Alphabet) -> list[Part]:
    chars = encode_chars(text, alphabet.maps)
    total = sum(len(c) for c in chars)
    ies = alphabet.ies
    if not ies and total <= MAX_SEPTETS:
        flat = [s for c in chars for s in c]
        return [(bytes([total]) + pack_septets(flat), 0)]
    if ies:  # a single part still announces its tables in a UDH
        udh = bytes([len(ies)]) + ies
        hdr_septets = _septets_for(len(udh))
        if hdr_septets + total <= MAX_SEPTETS:
            flat = [s for c in chars for s in c]
            return [(bytes([hdr_septets + total]) + pack_septets(flat, udh, hdr_septets), 0x40)]
    hdr_octets = 1 + len(concat_ie(0, 0, 0, ref_bits)) + len(ies)
    hdr_septets = _septets_for(hdr_octets)
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
        ie = concat_ie(ref, len(chunks), seq, ref_bits) + ies
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


def split_user_data(
    text: str,
    encoding: str,
    ref: int,
    ref_bits: int,
    *,
    language: int | None = None,
    shift: str | None = None,
) -> list[Part]:
    """Text -> per-part (TP-UDL + TP-UD, UDHI bit). UCS-2 splits on 2-octet boundaries
    (a surrogate pair may straddle two parts; reassembly joins octets first); GSM 7-bit
    never splits an escape pair. ``language``/``shift`` apply to GSM 7-bit only."""
    _check_ref(ref, ref_bits)
    if encoding == GSM7:
        return _gsm7_parts(text, ref, ref_bits, _alphabet(language, shift))
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
    language: int | None = None,
    shift: str | None = None,
) -> list[EncodedPdu]:
    """Build SMS-DELIVER PDU(s) as a modem would store them (for fakes and tests).

    ``encoding`` None picks gsm7 when every character is in the alphabet in use,
    else ucs2. Long texts become concatenated parts (153/152 septets or 134/132
    octets each for 8/16-bit references, fewer with national language elements).

    ``language`` (a 23.038 §6.2.1.2.4 national language id, 1 Turkish .. 13 Urdu,
    see ``muxd.pdu.national.LANGUAGES``) sends GSM 7-bit text with that language's
    tables, announced in every part's UDH: ``shift`` "locking" (IEI 0x25), "single"
    (IEI 0x24), "both", or None for every table the language has (Spanish has only
    a single shift table). A UCS-2 message carries no language elements.
    """
    _check_octet("pid", pid)
    alphabet = _alphabet(language, shift)
    enc = _choose(text, encoding, alphabet)
    sc = encode_smsc(smsc)
    oa = encode_address(originator)
    tail = bytes([pid, dcs_for(enc)]) + encode_scts(scts)
    parts = split_user_data(text, enc, ref, ref_bits, language=language, shift=shift)
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
    language: int | None = None,
    shift: str | None = None,
) -> list[EncodedPdu]:
    """Build SMS-SUBMIT PDU(s) for ``AT+CMGS`` (``tpdu_length`` is its argument).

    ``validity`` is a relative TP-VP octet (e.g. 0xA7 = 24 h) or None for none.
    ``message_ref`` is used for the first part and incremented (mod 256) per part.
    ``language`` and ``shift`` are as for :func:`encode_deliver`.
    """
    _check_octet("message_ref", message_ref)
    _check_octet("pid", pid)
    if validity is not None:
        _check_octet("validity", validity)
    enc = _choose(text, encoding, _alphabet(language, shift))
    sc = encode_smsc(smsc)
    da = encode_address(destination, allow_alphanumeric=False)
    vp = b"" if validity is None else bytes([validity])
    fo_base = 0x01 | (0x10 if validity is not None else 0) | (0x20 if status_report else 0)
    parts = split_user_data(text, enc, ref, ref_bits, language=language, shift=shift)
    out: list[EncodedPdu] = []
    for i, (ud, udhi) in enumerate(parts):
        mr = (message_ref + i) & 0xFF
        tpdu = bytes([fo_base | udhi, mr]) + da + bytes([pid, dcs_for(enc)]) + vp + ud
        out.append(EncodedPdu(hex=(sc + tpdu).hex().upper(), tpdu_length=len(tpdu)))
    return out
