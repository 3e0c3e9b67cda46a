"""PUSH_SMS where Onlinesim's pages disagree: the body's shape, gzip, and what an answer means.

Config switches (each defaulting to the newest pages):

- ``v1.push_success``: ``"http200"`` (current PUSH_SMS pages: an HTTP 200 answer means
  delivered, do not resend) or ``"status"`` (the older page: also ``status: SUCCESS``).
- ``v1.gzip_push``: gzip the request body (``Content-Encoding: gzip``). When a gzipped body is
  refused (415, a 400 without a known code, or an answer saying the body could not be decoded
  or parsed), muxd switches to plain JSON, remembers it across restarts and sends the push
  again; the push is never counted delivered on such an answer.
- ``upstream.phone_type``: ``phone`` as a digit string (current pages) or an integer (older
  pages, SMSHub).
- ``upstream.rent_case``: ``service`` of a rent push, ``"rent"`` (current) or ``"RENT"``
  (older page).

These two are where muxd starts: a plain body refused with 400/422 (no refusal code) makes the
next attempts try the other readings in turn (``phone`` type, then the rent case, then both);
the reading that gets a push delivered is remembered across restarts. Every reading is one the
docs give, so a server that takes both is not harmed by the change.

Verdicts, in order:

=============================================  ==============================================
3xx                                            retry; never followed (the key and the SMS
                                               text stay with the configured host)
``NO_OPERATION`` / ``NO_OP`` (any status)      ``no_operation``, not retried
``BAD_SERVICE``                                ``rejected``, not retried
``IGNORED`` / ``SERVICE_BAN``                  ``rejected`` (``retry_verdicts``: retried)
gzipped body refused (see above)               retry, in plain JSON from now on
plain body, 400/422 (no refusal code)          retry, with the next reading of the body
200 + ``SUCCESS``                              delivered
200 + ``TOO_MANY_ATTEMPTS``                    retry
200 + a web page (a proxy, a captive portal)   retry: not Onlinesim's answer
200, anything else (no status, ``ERROR``,      ``http200``: delivered; ``status``: retry
an empty body)
404 with an empty or JSON body                 ``no_operation`` (the 2023 spec's mapping)
anything else                                  retry
=============================================  ==============================================
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from muxd.upstream.learned import Learned
from muxd.upstream.readers import Reading, html_summary, is_html

PushSuccess = Literal["http200", "status"]
PhoneType = Literal["string", "integer"]
RentCase = Literal["rent", "RENT"]
Verdict = Literal["delivered", "no_operation", "rejected", "retry"]

GZIP_KEY: Final = "v1.gzip_push"
PHONE_KEY: Final = "upstream.phone_type"
RENT_KEY: Final = "upstream.rent_case"
# A plain body refused with these (and no known code): try the other readings of the body.
SHAPE_REFUSED_STATUSES: Final = frozenset({400, 422})
# Bit 0 of the shift flips the phone type, bit 1 the rent case: four readings in turn.
SHAPES: Final = 4
NO_OPERATION_CODES: Final = frozenset({"NO_OPERATION", "NO_OP"})
FINAL_CODES: Final = frozenset({"BAD_SERVICE"})
VERDICT_CODES: Final = frozenset({"IGNORED", "SERVICE_BAN"})
REFUSAL_CODES: Final = NO_OPERATION_CODES | FINAL_CODES | VERDICT_CODES
KNOWN_CODES: Final = REFUSAL_CODES | {"SUCCESS", "ERROR", "TOO_MANY_ATTEMPTS"}
# An answer that says the request body could not be read (PHP's json_decode says "Syntax
# error"; frameworks say "malformed", "invalid JSON", "cannot decode", ...).
DECODE_ERROR_RE: Final = re.compile(
    r"gzip|json|decod|pars(e|ing)|malformed|syntax|content.?encoding|unsupported media"
    r"|invalid (body|payload|request)",
    re.IGNORECASE,
)
# Statuses that refuse a gzipped body outright.
GZIP_REFUSED_STATUSES: Final = frozenset({400, 415})
_ENCODER = msgspec.json.Encoder()


def _no_reading(_field: str, _reading: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Attempt:
    """One PUSH_SMS request as sent: its body, extra headers, and the readings it used."""

    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    gzipped: bool = False
    shift: int = 0
    phone_type: PhoneType = "string"
    rent_case: RentCase | None = None  # None: not a rent push


def answer_code(body: str) -> tuple[str | None, str]:
    """(the answer's code, how it was read): a known code from ``status``, ``error`` or
    ``response``, else ``status``; a one-word bare-text body is the code itself."""
    text = body.strip()
    if not text:
        return None, "empty"
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        word = text.upper()
        return (word if re.fullmatch(r"[A-Z_]+", word) else None), "text"
    if not isinstance(data, dict):
        return None, "text"
    values = [str(data[k]).strip().upper() for k in ("status", "error", "response") if k in data]
    for value in values:
        if value in KNOWN_CODES - {"ERROR"}:
            return value, "code" if value != "SUCCESS" else "status_success"
    if "status" not in data:
        return (values[0] if values else None), "no_status"
    status = str(data["status"]).strip().upper()
    return status, "status_success" if status == "SUCCESS" else "status_error"


class PushPolicy:
    def __init__(
        self,
        *,
        success: PushSuccess = "http200",
        gzip_body: bool = True,
        phone_type: PhoneType = "string",
        rent_case: RentCase = "rent",
        retry_verdicts: bool = False,
        learned: Learned | None = None,
        reading: Reading | None = None,
    ) -> None:
        self.success = success
        self._gzip_configured = gzip_body
        self._phone_configured: PhoneType = phone_type
        self._rent_configured: RentCase = rent_case
        self.retry_verdicts = retry_verdicts
        self._learned = learned or Learned()
        self._reading = reading or _no_reading
        self._shift = 0  # which other reading of the body is tried now (0: the learned one)

    @property
    def phone_type(self) -> PhoneType:
        base = self._learned.get(PHONE_KEY, self._phone_configured)
        if self._shift & 1:
            return "integer" if base == "string" else "string"
        return "integer" if base == "integer" else "string"

    @property
    def rent_case(self) -> RentCase:
        base = self._learned.get(RENT_KEY, self._rent_configured)
        if self._shift & 2:
            return "rent" if base == "RENT" else "RENT"
        return "RENT" if base == "RENT" else "rent"

    @property
    def gzip(self) -> bool:
        """Whether bodies are gzipped now (configured, unless a refusal taught otherwise)."""
        return bool(self._learned.get(GZIP_KEY, self._gzip_configured))

    def shape(self, body: dict[str, Any]) -> dict[str, Any]:
        """The PUSH_SMS body in the configured dialect (``phone`` type, rent ``service``)."""
        if self.phone_type == "integer" and isinstance(body.get("phone"), str):
            digits = body["phone"].lstrip("+")
            if digits.isascii() and digits.isdigit():
                body["phone"] = int(digits)
        if body.get("service") == "rent":
            body["service"] = self.rent_case
        return body

    def encode(self, payload: dict[str, Any]) -> Attempt:
        """One attempt of ``payload`` (as :meth:`shape` made it, just before)."""
        data = _ENCODER.encode(payload)
        rent = self.rent_case if "service" in payload else None
        self._reading("push_phone", self.phone_type)
        if rent is not None:
            self._reading("push_rent", rent)
        if not self.gzip:
            self._reading("push_body", "plain")
            return Attempt(data, {}, False, self._shift, self.phone_type, rent)
        self._reading("push_body", "gzip")
        headers = {"Content-Encoding": "gzip"}
        return Attempt(gzip.compress(data), headers, True, self._shift, self.phone_type, rent)

    def verdict(
        self, status: int, body: str, *, attempt: Attempt, location: str | None = None
    ) -> tuple[Verdict, str]:
        """(what to do with the push, the result recorded) for one HTTP answer."""
        verdict, result = self._verdict(status, body, attempt.gzipped, location)
        if verdict == "delivered" and attempt.shift:
            self._learn_shape(attempt)
        if (
            verdict == "retry"
            and not attempt.gzipped
            and status in SHAPE_REFUSED_STATUSES
            and answer_code(body)[0] != "TOO_MANY_ATTEMPTS"
            and attempt.shift == self._shift  # one step per refusal, however many in flight
        ):
            self._shift = (self._shift + 1) % SHAPES
            result += f"; next: phone {self.phone_type}, rent service {self.rent_case!r}"
        return verdict, result

    def _learn_shape(self, attempt: Attempt) -> None:
        why = "a push in this reading was delivered after the other was refused"
        self._learned.learn(PHONE_KEY, self._phone_configured, attempt.phone_type, why)
        if attempt.rent_case is not None:
            self._learned.learn(RENT_KEY, self._rent_configured, attempt.rent_case, why)
        self._shift = 0

    def _verdict(
        self, status: int, body: str, gzipped: bool, location: str | None
    ) -> tuple[Verdict, str]:
        if 300 <= status < 400:
            return "retry", f"HTTP {status}: redirect to {location or '(no Location)'} not followed"
        code, how = answer_code(body)
        if status == 200:
            self._reading("push_answer", how)
        if code in NO_OPERATION_CODES:
            return "no_operation", code
        if code in FINAL_CODES:
            return "rejected", code
        if code in VERDICT_CODES:
            return ("retry" if self.retry_verdicts else "rejected"), code
        if gzipped and code != "SUCCESS" and self._gzip_refused(status, body):
            why = f"a gzipped PUSH_SMS body was answered HTTP {status} {_excerpt(body)}".strip()
            self._learned.learn(GZIP_KEY, self._gzip_configured, False, why)
            return "retry", f"HTTP {status}: gzip body refused; plain JSON from now on"
        if status == 200:
            if code == "SUCCESS":
                return "delivered", "SUCCESS"
            if is_html(body):  # a proxy's or a portal's page: not Onlinesim's answer
                return "retry", f"HTTP 200 {_excerpt(body)}"
            if code != "TOO_MANY_ATTEMPTS" and self.success == "http200":
                return "delivered", f"HTTP 200 {code or how}"
            return "retry", f"HTTP 200 {code or _excerpt(body) or how}".strip()
        looks_json = body.strip()[:1] in ("", "{", "[")
        if status == 404 and looks_json:
            return "no_operation", "HTTP 404"
        return "retry", f"HTTP {status} {code or _excerpt(body)}".strip()

    @staticmethod
    def _gzip_refused(status: int, body: str) -> bool:
        if status in GZIP_REFUSED_STATUSES:
            return True
        return bool(DECODE_ERROR_RE.search(_error_words(body))) and not is_html(body)


def _error_words(body: str) -> str:
    """What an answer says about an error: the text of its ``error``/``message``/``status``/
    ``detail``/``response`` fields, or a bare-text body; never other fields' keys or values
    (a success answer mentioning "json" elsewhere is no refusal)."""
    text = body.strip()[:1000]
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    if not isinstance(data, dict):
        return ""
    keys = ("error", "message", "status", "detail", "response")
    return " ".join(str(data[k]) for k in keys if k in data)


def _excerpt(body: str) -> str:
    text = body.strip()
    return html_summary(text) if is_html(text) else text[:100]
