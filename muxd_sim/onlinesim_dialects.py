"""Dialects of the Onlinesim stand-ins: the other readings of what the docs leave open.

By default both stand-ins are strict (the readings the docs' newest pages give). A dialect makes
one of them answer, or insist, the other way, so muxd's loops can be run against each reading:

API v2 (:class:`muxd_sim.onlinesim.Onlinesim`, ``muxd stand-in --dialect NAME[,NAME]``):

=====================  ==========================================================================
``string-response``    success is ``{"response": "1"}`` (the 2023 schema's string form)
``string-ids``         ``ids`` values are digit strings (``"1042"``)
``json-errors``        validation errors are ``{"response": "CODE"}`` JSON (not a bare
                       ``text/html`` code), same status
``errors-in-200``      validation errors are HTTP 200 ``{"response": "CODE"}``
``post-checkwork``     checkWork is ``POST /api/resellers/checkWork`` only; ``GET
                       /api/resellers`` answers 405 ``REQUEST_NOT_FOUND``
``gzip-refused``       a gzipped request body is answered 415 (nothing stored)
=====================  ==========================================================================

API v1 (:class:`muxd_sim.onlinesim_v1.V1Driver`, PUSH_SMS):

=====================  ==========================================================================
``push-no-status``     a stored push is answered 200 ``{"result": "ok"}`` (no ``status``)
``push-status-error``  a stored push is answered 200 ``{"status": "ERROR"}``
``push-empty``         a stored push is answered 200 with an empty body
``gzip-refused``       a gzipped body is answered 415 (nothing stored)
``gzip-garbled``       a gzipped body is read as JSON as it is: 200 ``{"status": "ERROR",
                       "error": "Syntax error"}`` (nothing stored)
``phone-integer``      ``phone`` must be an integer (older pages, SMSHub); a string: 400
``rent-upper``         a rent push's ``service`` must be ``"RENT"`` (older page); else 400
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

import msgspec
from aiohttp import hdrs, web

V2_DIALECTS: Final[frozenset[str]] = frozenset(
    {
        "string-response",
        "string-ids",
        "json-errors",
        "errors-in-200",
        "post-checkwork",
        "gzip-refused",
    }
)
V1_DIALECTS: Final[frozenset[str]] = frozenset(
    {
        "push-no-status",
        "push-status-error",
        "push-empty",
        "gzip-refused",
        "gzip-garbled",
        "phone-integer",
        "rent-upper",
    }
)
# The alternative checkWork endpoint (the docs link a "post/api_resellers_checkWork" page).
POST_CHECK_WORK_PATH: Final = "/api/resellers/checkWork"
_ENCODER = msgspec.json.Encoder()


def parse_dialects(names: str | Iterable[str], known: frozenset[str]) -> frozenset[str]:
    """``"a,b"`` or names -> a set; ValueError naming an unknown one and the known ones."""
    items = names.split(",") if isinstance(names, str) else list(names)
    wanted = frozenset(n.strip() for n in items if n.strip())
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown dialect {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return wanted


def _is_gzip(request: web.Request) -> bool:
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    return encoding in ("gzip", "x-gzip")


# --- v2 --------------------------------------------------------------------------------------


def v2_route_key(dialects: frozenset[str], method: str, path: str) -> tuple[str, str]:
    """The (method, path) the strict router should look up for this request."""
    if "post-checkwork" in dialects:
        if (method, path) == (hdrs.METH_POST, POST_CHECK_WORK_PATH):
            return hdrs.METH_GET, "/api/resellers"
        if (method, path) == (hdrs.METH_GET, "/api/resellers"):
            return method, POST_CHECK_WORK_PATH  # no GET route there: 405 REQUEST_NOT_FOUND
    return method, path


def v2_refusal(dialects: frozenset[str], request: web.Request) -> web.Response | None:
    """An answer the dialect gives before the endpoint runs (nothing stored), or None."""
    if "gzip-refused" in dialects and _is_gzip(request):
        return web.Response(status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE, text="Unsupported Media Type")
    return None


def v2_payload(dialects: frozenset[str], payload: object) -> object:
    """A 200 payload in the dialect's shape."""
    if not dialects & {"string-response", "string-ids"}:
        return payload
    data = msgspec.to_builtins(payload)
    if not isinstance(data, dict):
        return data
    if "string-response" in dialects and data.get("response") == 1:
        data["response"] = "1"
    ids = data.get("ids")
    if "string-ids" in dialects and isinstance(ids, dict):
        data["ids"] = {k: None if v is None else str(v) for k, v in ids.items()}
    return data


def v2_error(dialects: frozenset[str], status: int, code: str) -> web.Response | None:
    """A validation error (400, bare code) in the dialect's shape, or None for the strict one."""
    if status != HTTPStatus.BAD_REQUEST:
        return None
    body = _ENCODER.encode({"response": code})
    if "errors-in-200" in dialects:
        return web.Response(status=HTTPStatus.OK, body=body, content_type="application/json")
    if "json-errors" in dialects:
        return web.Response(status=status, body=body, content_type="application/json")
    return None


# --- v1 --------------------------------------------------------------------------------------


def v1_body_refusal(dialects: frozenset[str], gzipped: bool) -> tuple[int, str] | None:
    """(status, body) when the dialect cannot take a gzipped body (nothing stored), or None."""
    if not gzipped:
        return None
    if "gzip-refused" in dialects:
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type"
    if "gzip-garbled" in dialects:
        return HTTPStatus.OK, '{"status": "ERROR", "error": "Syntax error"}'
    return None


def v1_field_problem(dialects: frozenset[str], body: dict[str, object]) -> str | None:
    """Why the dialect refuses this PUSH_SMS body's ``phone`` or ``service``, or None."""
    phone = body.get("phone")
    if "phone-integer" in dialects and not (isinstance(phone, int) and not isinstance(phone, bool)):
        return f"phone must be an integer, got {phone!r}"
    if "rent-upper" in dialects and "service" in body and body["service"] != "RENT":
        return f"service must be RENT, got {body['service']!r}"
    return None


def v1_stored_answer(dialects: frozenset[str]) -> str:
    """The 200 body of a push the dialect stored."""
    if "push-empty" in dialects:
        return ""
    if "push-no-status" in dialects:
        return '{"result": "ok"}'
    if "push-status-error" in dialects:
        return '{"status": "ERROR"}'
    return '{"status": "SUCCESS"}'
