"""Tolerant readers for Onlinesim's answers (pure: no I/O, no clock).

Onlinesim documents several fields two ways, and its errors come in several shapes. Each reader
here accepts every documented (or observed) form and says which one it saw, so the choice can
be counted (``muxd_upstream_reading_total{field, reading}``):

=============  =================================================================================
``response``   ``integer``: ``1`` (the rendered pages); ``string``: ``"1"`` (the 2023 schema
               types it string-or-integer, and its own examples return ``'1'``); ``echo``: in
               test mode, a JSON object without ``response`` (test2 echoes the request; its
               shape is not published)
``ids``        ``integer`` ids, ``string`` ids (``"1042"``), ``empty_list`` (a PHP empty
               object serialised as ``[]``)
``error``      ``json_response``: ``{"response": "NO_NUMBER"}``; ``json_error``:
               ``{"error": "..."}``; ``text``: a bare code (``text/html`` per the 2023 schema);
               ``html``: a web page (a proxy or load balancer answered, not Onlinesim);
               ``empty``; ``redirect``: a 3xx (never followed: the key and the SMS text must
               not be posted to another host); ``other``: JSON of another shape
``check_work`` the method that answered checkWork: ``GET`` (the schema) or ``POST``
``push_*``     v1 PUSH_SMS (:mod:`muxd.upstream.v1.push_policy`): how an answer read
               (``push_answer``), and the body sent: ``push_body`` gzip or plain,
               ``push_phone`` string or integer, ``push_rent`` rent or RENT
=============  =================================================================================

An error code inside an HTTP 200 answer (``{"response": "NO_NUMBER"}``) is given the HTTP
status the docs attach to that code (400 for validation errors, 401/403 for the key, 405 for an
unknown method), so the delivery and publishing loops treat it the same whichever way it came.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

# reading(field, reading): one answer was read this way.
Reading = Callable[[str, str], None]

# Every (field, reading) pair, for metrics created at 0.
KNOWN_READINGS: Final[dict[str, tuple[str, ...]]] = {
    "response": ("integer", "string", "echo"),
    "ids": ("integer", "string", "empty_list"),
    "error": ("json_response", "json_error", "text", "html", "empty", "redirect", "other"),
    "check_work": ("GET", "POST"),
    # v1 PUSH_SMS (muxd.upstream.v1.push_policy)
    "push_answer": ("status_success", "no_status", "status_error", "empty", "text", "code"),
    "push_body": ("gzip", "plain"),
    "push_phone": ("string", "integer"),
    "push_rent": ("rent", "RENT"),
}

# The HTTP status the docs give each error code (the common v2 codes and the 400 validation
# codes); used when a code arrives in a 200 answer.
CODE_STATUS: Final[dict[str, int]] = {
    "NO_NUMBER": 400,
    "ERROR_PARAMS": 400,
    "NUMBER_FORMAT_ERROR": 400,
    "ERROR_DATE": 400,
    "ERROR_WRONG_KEY": 401,
    "ERROR_NO_KEY": 401,
    "ACCOUNT_BLOCKED": 403,
    "API_ACCESS_DISABLED": 403,
    "API_ACCESS_IP": 403,
    "REQUEST_NOT_FOUND": 405,
}
# How much of an unexpected answer is kept in an error message.
EXCERPT = 200

_HTML_RE = re.compile(r"^\s*<(!doctype|html|head|body|\?xml)|<html[\s>]", re.IGNORECASE)
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")
_CODE_RE = re.compile(r"[A-Z][A-Z0-9_]+")


def _ignore(_field: str, _reading: str) -> None:
    pass


def is_html(text: str) -> bool:
    return bool(_HTML_RE.search(text[:1000]))


def html_summary(text: str) -> str:
    """ "HTML page: <title or first words>": what a proxy's page was about, in one line."""
    match = _TITLE_RE.search(text)
    words = match.group(1) if match else _TAG_RE.sub(" ", text)
    words = _SPACE_RE.sub(" ", html.unescape(words)).strip()
    return f"HTML page (not an API answer): {words[:100] or 'untitled'}"


def _decode(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return msgspec.UNSET


def error_text(status: int, text: str, location: str | None, reading: Reading = _ignore) -> str:
    """The error of a non-200 answer, in the form the loops compare: the bare code when the
    body carries one (``NO_NUMBER``, whichever shape), a one-line summary otherwise."""
    if 300 <= status < 400:
        reading("error", "redirect")
        return f"redirect to {location or '(no Location)'} not followed"
    stripped = text.strip()
    if not stripped:
        reading("error", "empty")
        return ""
    data = _decode(stripped)
    if isinstance(data, dict):
        for key in ("response", "error"):
            value = data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                reading("error", f"json_{key}")
                return str(value).strip()
        reading("error", "other")
        return stripped[:EXCERPT]
    if is_html(stripped):
        reading("error", "html")
        return html_summary(stripped)
    reading("error", "text" if data is msgspec.UNSET else "other")
    return stripped[:EXCERPT]


@dataclass(frozen=True, slots=True)
class Answer:
    """A 200 answer, read: ``ok`` with the decoded object, or the error code and the status
    it stands for."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    code: str = ""
    status: int = 200
    echo: bool = False  # a JSON object with neither response nor error (test2 echoes requests)


def read_answer(text: str, reading: Reading = _ignore) -> Answer:
    """Read a 200 answer: success is ``response`` 1 or "1"; anything else is an error."""
    stripped = text.strip()
    data = _decode(stripped)
    if not isinstance(data, dict):
        if data is msgspec.UNSET and is_html(stripped):
            reading("error", "html")
            return Answer(False, code=f"bad reply: {html_summary(stripped)}")
        reading("error", "empty" if not stripped else "text" if data is msgspec.UNSET else "other")
        if _CODE_RE.fullmatch(stripped):  # a bare error code
            return Answer(False, code=stripped, status=CODE_STATUS.get(stripped, 200))
        return Answer(False, code=f"bad reply: {stripped[:EXCERPT]!r}")
    response = data.get("response", msgspec.UNSET)
    if response == 1 and not isinstance(response, bool | float):
        reading("response", "integer")
        return Answer(True, data)
    if isinstance(response, str) and response.strip() == "1":
        reading("response", "string")
        return Answer(True, data)
    for key, value in (("response", response), ("error", data.get("error"))):
        if isinstance(value, str | int) and not isinstance(value, bool):
            reading("error", f"json_{key}")
            code = str(value).strip()
            return Answer(False, code=code, status=CODE_STATUS.get(code, 200))
    reading("error", "other")
    return Answer(False, code=f"bad reply: {stripped[:EXCERPT]}", echo=response is msgspec.UNSET)


ASCII_SPACE = " \t\r\n\f\v"
# An id the journal can store (SQLite's integers are 64-bit); anything larger reads as null.
# Digit strings are measured first: int() refuses strings of over 4,300 digits.
MAX_ID = 2**63 - 1
MAX_ID_DIGITS = len(str(MAX_ID))


def read_ids(value: object, reading: Reading = _ignore) -> dict[str, int | None]:
    """``ids`` (number -> Onlinesim id, removed numbers -> null): ids as integers or digit
    strings; ``[]`` (an empty PHP object) or a missing map is empty. Other values: null."""
    if isinstance(value, list) and not value:
        reading("ids", "empty_list")
        return {}
    if not isinstance(value, dict):
        return {}
    out: dict[str, int | None] = {}
    as_string = False
    for number, raw in value.items():
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= MAX_ID:
            out[str(number)] = raw
        elif (
            isinstance(raw, str)
            and (digits := raw.strip(ASCII_SPACE)).isascii()
            and digits.isdigit()
            and len(digits) <= MAX_ID_DIGITS
            and int(digits) <= MAX_ID
        ):
            # (Only ASCII white space is stripped: str.strip() also takes control characters
            # such as \x1f, which int() refuses.)
            out[str(number)] = int(digits)
            as_string = True
        else:
            out[str(number)] = None
    if out:
        reading("ids", "string" if as_string else "integer")
    return out
