"""Hostile input to the v1 partner server, over real HTTP on loopback.

Every hostile request gets a clear 4xx with a small JSON error body (``status`` ``ERROR`` and
an ``error`` text) and changes nothing: the journal's ``operations`` and ``sold`` tables and
the service's in-memory :class:`Book` are identical before and after, and a valid request
still works afterwards. Each case runs against a server holding one open operation and one
sale, and a case that targets FINISH_ACTIVATION names the open operation: were its bad field
let through, the operation would close, which the snapshot shows.

Deliberate leniencies (documented in openapi.json, pinned at the end): quoted decimal
integers for ``activationId``/``status``/``sum``, ``null`` for the optional ``sum`` and
``exceptionPhoneSet``, any Content-Type on a JSON body, and an integer ``activationId``
that can't be ours (≥ 2**63, SMSHub types them unsigned 64-bit) answered 200
``NO_OPERATION``, like any unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import sqlite3
import struct
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson
import pytest

from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.counts import MAX_MASKS
from muxd.upstream.v1.server import MAX_BODY_BYTES, MAX_SUM, MAX_TEXT, ROUTES

from .conftest import KEY, RUSSIA, WAIT, Env, ports_for

# An error answer is a short JSON object: no echo of a hostile body.
MAX_ERROR_ANSWER = 1024
# How much the process may grow while the server refuses a gzip bomb or an oversized body.
RSS_BUDGET = 50 * 1024 * 1024


# -- the server under attack ---------------------------------------------------------------------


@dataclass
class Target:
    env: Env
    svc: V1Service
    open_id: int  # an open single-service operation (vk)
    sold_id: int  # a finished one, sold for wa

    @property
    def url(self) -> str:
        return self.env.driver.base_url

    @property
    def port(self) -> int:
        return self.svc.port


async def state(target: Target) -> dict[str, Any]:
    """Everything a request could change: the journal's operations and sales, and the Book."""

    def tables(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {
            "operations": conn.execute(
                "SELECT * FROM operations ORDER BY activation_id"
            ).fetchall(),
            "sold": conn.execute("SELECT * FROM sold ORDER BY number, service").fetchall(),
        }

    book = target.svc.book
    snapshot: dict[str, Any] = await target.env.journal.execute(tables)
    snapshot["book"] = {
        "open_by_id": dict(book.open_by_id),
        "open_by_number": dict(book.open_by_number),
        "sold": {n: sorted(s) for n, s in book.sold.items()},
        "last_used": dict(book.last_used),
        "holding": set(book.holding),
    }
    return snapshot


@contextlib.asynccontextmanager
async def target_of(env: Env, **overrides: Any) -> AsyncIterator[Target]:
    env.ports = ports_for(RUSSIA)
    async with env.serving(**overrides) as svc:
        held = await env.driver.get_number("russia", "any", "vk")
        sold = await env.driver.get_number("russia", "any", "wa")
        assert await env.driver.finish(sold["activationId"], 3) == {"status": "SUCCESS"}
        yield Target(env, svc, held["activationId"], sold["activationId"])


@pytest.fixture
async def target(env: Env) -> AsyncIterator[Target]:
    async with target_of(env) as t:
        yield t


async def still_serves(target: Target) -> None:
    """A valid GET_NUMBER and FINISH_ACTIVATION after the attack."""
    got = await target.env.driver.get_number("russia", "any", "tg", 10)
    assert got["status"] == "SUCCESS", got
    assert await target.env.driver.finish(got["activationId"], 4) == {"status": "SUCCESS"}
    assert target.env.driver.failed() == [], target.env.driver.report()


# -- the cases -----------------------------------------------------------------------------------


class _Open:
    """Stands for the open operation's activationId in a case body."""

    def __repr__(self) -> str:
        return "OPEN"


OPEN: Any = _Open()
ABSENT: Any = object()  # the field is left out


def _fill(value: Any, open_id: int) -> Any:
    if value is OPEN:
        return open_id
    if isinstance(value, dict):
        return {k: _fill(v, open_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, open_id) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """JSON, NaN/Infinity literals and integers of any size included (orjson refuses both)."""
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Case:
    id: str
    body: Any  # bytes as is; anything else is JSON-encoded (OPEN filled in)
    path: str = "/"
    status: int = 400
    error: str | None = None  # a substring of the answer's "error"
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    query: str = ""

    def payload(self, open_id: int) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return dumps(_fill(self.body, open_id))


GET_SERVICES = {"action": "GET_SERVICES", "key": KEY}
GET_NUMBER = {
    "action": "GET_NUMBER",
    "key": KEY,
    "country": "russia",
    "operator": "any",
    "service": "tg",
    "sum": 10,
}
FINISH = {"action": "FINISH_ACTIVATION", "key": KEY, "activationId": OPEN, "status": 4, "sum": 1}


def with_field(base: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    out = dict(base)
    if value is ABSENT:
        out.pop(name, None)
    else:
        out[name] = value
    return out


NOT_A_STRING = [1, 1.5, True, False, [], ["russia"], {}, {"a": 1}]
BAD_TEXT = [*NOT_A_STRING, "", "   ", "\t\n", "x" * (MAX_TEXT + 1)]
# sum: wrong types, non-finite, out of range, and strings a JSON number is not
BAD_SUM = [
    "abc",
    "",
    " ",
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "1e10",
    "1_000",
    "0x10",
    "١٢",  # Arabic-Indic digits: float() takes them
    "-1",
    " 12 ",
    True,
    False,
    [],
    [10],
    {},
    -1,
    -0.01,
    MAX_SUM + 1,
    1e300,
    10**30,
    2**64,
    float("nan"),
    float("inf"),
    float("-inf"),
]
BAD_ID = [
    "abc",
    "",
    " ",
    "1.5",
    "-1",
    "0",
    "0x1f",
    "1e3",
    "²",  # str.isdigit() says yes, int() says no
    "١٢",
    "9" * 5000,  # past int()'s digit limit
    "9" * 21,
    1.5,
    1e3,
    True,
    False,
    [],
    [OPEN],
    {},
    {"id": OPEN},
    -1,
    0,
    -(2**63),
    -(2**64),
]
BAD_STATUS = ["abc", "", "3.5", "²", "9" * 5000, 0, 6, -3, 99, 2**64, 3.0, True, [], [3], {}]
BAD_MASKS = [
    "7900",
    7900,
    {},
    True,
    [1.5],
    [True],
    [None],
    [0],
    [-7],
    ["abc"],
    [""],
    ["+"],
    ["++7"],
    ["7 9"],
    ["٧٩"],
    ["7" * 21],
    [[7]],
    [{}],
    list(range(1, MAX_MASKS + 2)),
]


def _field_cases() -> list[Case]:
    cases: list[Case] = []
    for name in ("country", "service"):
        cases.append(Case(f"get_number-{name}-missing", with_field(GET_NUMBER, name, ABSENT)))
        cases.append(Case(f"get_number-{name}-null", with_field(GET_NUMBER, name, None)))
    for name in ("country", "operator", "service"):
        for i, value in enumerate(BAD_TEXT):
            cases.append(Case(f"get_number-{name}-{i}", with_field(GET_NUMBER, name, value)))
    cases.append(Case("get_number-operator-null", with_field(GET_NUMBER, "operator", None)))
    for i, value in enumerate(BAD_SUM):
        cases.append(Case(f"get_number-sum-{i}", with_field(GET_NUMBER, "sum", value)))
        cases.append(Case(f"finish-sum-{i}", with_field(FINISH, "sum", value)))
    for i, value in enumerate(BAD_MASKS):
        body = with_field(GET_NUMBER, "exceptionPhoneSet", value)
        cases.append(Case(f"get_number-exceptionPhoneSet-{i}", body))
    for name in ("activationId", "status"):
        cases.append(Case(f"finish-{name}-missing", with_field(FINISH, name, ABSENT)))
        cases.append(Case(f"finish-{name}-null", with_field(FINISH, name, None)))
    for i, value in enumerate(BAD_ID):
        cases.append(Case(f"finish-activationId-{i}", with_field(FINISH, "activationId", value)))
    for i, value in enumerate(BAD_STATUS):
        cases.append(Case(f"finish-status-{i}", with_field(FINISH, "status", value)))
    # the per-method paths validate the same fields
    rent = {k: v for k, v in GET_NUMBER.items() if k != "service"}
    cases += [
        Case("rent-path-country-int", with_field(rent, "country", 7), "/getNumberRent"),
        Case("rent-path-sum-negative", with_field(rent, "sum", -5), "/getNumberRent"),
        Case("rent-path-service-empty", with_field(rent, "service", ""), "/getNumberRent"),
        Case("path-get_number-sum-string", with_field(GET_NUMBER, "sum", "x"), "/getNumber"),
        Case("path-finish-status-9", with_field(FINISH, "status", 9), "/finishActivation"),
        Case(
            "path-finish-rent-id-float",
            with_field(FINISH, "activationId", 2.0),
            "/finishActivationRent",
        ),
    ]
    return cases


def _gzip_raw(data: bytes) -> bytes:
    return zlib.compress(data, 9, 16 + zlib.MAX_WBITS)


JSON_CT = {"Content-Type": "application/json; charset=utf-8"}
GOOD_NUMBER = dumps(GET_NUMBER)
DEEP = 10_000  # far beyond any recursion limit, and the body still under MAX_BODY_BYTES

CASES: list[Case] = [
    # not JSON, or not an object
    Case("invalid-json", b"{not json", error="not JSON"),
    Case("truncated-json", b'{"action": "GET_NUMBER", "key": ', error="not JSON"),
    Case("trailing-garbage", GOOD_NUMBER + b" x", error="not JSON"),
    Case("two-objects", GOOD_NUMBER + GOOD_NUMBER, error="not JSON"),
    Case("empty-body", b"", error="not JSON"),
    Case("whitespace-body", b" \r\n\t ", error="not JSON"),
    Case("json-string", b'"GET_NUMBER"', error="not a JSON object"),
    Case("json-number", b"42", error="not a JSON object"),
    Case("json-null", b"null", error="not a JSON object"),
    Case("json-true", b"true", error="not a JSON object"),
    Case("json-array", b"[" + GOOD_NUMBER + b"]", error="not a JSON object"),
    Case("json-empty-array", b"[]", error="not a JSON object"),
    Case("json-empty-object", b"{}", status=401, error="ERROR_NO_KEY"),
    Case("nested-arrays", b"[" * DEEP + b"]" * DEEP),
    Case("nested-objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    Case("nested-in-field", GOOD_NUMBER[:-1] + b',"x":' + b"[" * DEEP + b"]" * DEEP + b"}"),
    Case("nan-literal", GOOD_NUMBER[:-1] + b',"sum":NaN}', error="not JSON"),
    Case("infinity-literal", GOOD_NUMBER[:-1] + b',"sum":Infinity}', error="not JSON"),
    Case("number-out-of-range", GOOD_NUMBER[:-1] + b',"sum":1e400}', error="not JSON"),
    Case("integer-out-of-range", GOOD_NUMBER[:-1] + b',"sum":' + b"9" * 5000 + b"}"),
    Case("single-quotes", GOOD_NUMBER.replace(b'"', b"'"), error="not JSON"),
    Case("utf8-bom", b"\xef\xbb\xbf" + GOOD_NUMBER, error="not JSON"),
    Case("utf16-body", json.dumps(GET_NUMBER).encode("utf-16"), error="not JSON"),
    # not UTF-8
    Case("non-utf8-string", GOOD_NUMBER.replace(b'"russia"', b'"\xff\xfe"')),
    Case("non-utf8-key", GOOD_NUMBER.replace(KEY.encode(), b"\xc3\x28")),
    Case("cesu8-surrogate", GOOD_NUMBER.replace(b'"russia"', b'"\xed\xa0\x80"')),
    Case(
        "latin1-declared",
        GOOD_NUMBER.replace(b'"russia"', '"müller"'.encode("latin-1")),
        headers={"Content-Type": "application/json; charset=latin-1"},
    ),
    Case("lone-surrogate-escape", GOOD_NUMBER.replace(b'"russia"', b'"\\ud800"'), error="JSON"),
    # the action
    Case(
        "unknown-action", with_field(GET_SERVICES, "action", "GET_BALANCE"), error="unknown action"
    ),
    Case("action-missing", with_field(GET_NUMBER, "action", ABSENT), error="unknown action"),
    Case("action-null", with_field(GET_NUMBER, "action", None), error="unknown action"),
    Case("action-int", with_field(GET_NUMBER, "action", 2), error="unknown action"),
    Case("action-list", with_field(GET_NUMBER, "action", ["GET_NUMBER"]), error="unknown action"),
    Case("action-object", with_field(GET_NUMBER, "action", {"action": "GET_NUMBER"})),
    Case("action-empty", with_field(GET_NUMBER, "action", ""), error="unknown action"),
    Case("action-padded", with_field(GET_NUMBER, "action", " GET_NUMBER "), error="unknown action"),
    Case("action-nul", with_field(GET_NUMBER, "action", "GET_NUMBER\x00"), error="unknown action"),
    Case("action-unicode", with_field(GET_NUMBER, "action", "GЕТ_NUMBER"), error="unknown action"),
    Case("action-huge", with_field(GET_NUMBER, "action", "A" * 50_000), error="unknown action"),
    Case("action-vs-path", FINISH, "/getNumber", error="unknown action"),
    Case("action-vs-rent-path", GET_NUMBER, "/finishActivationRent", error="unknown action"),
    Case("services-on-finish-path", GET_SERVICES, "/finishActivation", error="unknown action"),
    # the key: refused before anything else is looked at
    Case("key-missing", with_field(GET_NUMBER, "key", ABSENT), status=401, error="ERROR_NO_KEY"),
    Case("key-null", with_field(GET_NUMBER, "key", None), status=401, error="ERROR_NO_KEY"),
    Case("key-empty", with_field(GET_NUMBER, "key", ""), status=401, error="ERROR_NO_KEY"),
    Case("key-int", with_field(GET_NUMBER, "key", 12345), status=401, error="ERROR_NO_KEY"),
    Case("key-list", with_field(GET_NUMBER, "key", [KEY]), status=401, error="ERROR_NO_KEY"),
    Case("key-wrong", with_field(GET_NUMBER, "key", "nope"), status=401, error="ERROR_WRONG_KEY"),
    Case("key-prefix", with_field(GET_NUMBER, "key", KEY[:-1]), status=401, error="WRONG_KEY"),
    Case("key-longer", with_field(GET_NUMBER, "key", KEY + "x"), status=401, error="WRONG_KEY"),
    Case("key-nul", with_field(GET_NUMBER, "key", KEY + "\x00"), status=401, error="WRONG_KEY"),
    Case("key-case", with_field(GET_NUMBER, "key", KEY.upper()), status=401, error="WRONG_KEY"),
    Case("key-padded", with_field(GET_NUMBER, "key", f" {KEY} "), status=401, error="WRONG_KEY"),
    Case("key-unicode", with_field(GET_NUMBER, "key", "ключ🔑"), status=401, error="WRONG_KEY"),
    Case("key-huge", with_field(GET_NUMBER, "key", "k" * 50_000), status=401, error="WRONG_KEY"),
    Case(
        "key-wrong-finish", with_field(FINISH, "key", "nope"), status=401, error="ERROR_WRONG_KEY"
    ),
    Case(
        "bearer-wrong",
        GET_NUMBER,
        status=401,
        error="ERROR_WRONG_KEY",
        headers={"Authorization": "Bearer nope"},
    ),
    Case("bearer-empty", GET_NUMBER, status=401, error="WRONG_KEY", headers={"Authorization": ""}),
    Case(
        "bearer-no-token",
        GET_NUMBER,
        status=401,
        error="WRONG_KEY",
        headers={"Authorization": "Bearer"},
    ),
    Case(
        "basic-scheme",
        GET_NUMBER,
        status=401,
        error="WRONG_KEY",
        headers={"Authorization": f"Basic {KEY}"},
    ),
    Case(
        "bearer-unicode",
        GET_NUMBER,
        status=401,
        error="WRONG_KEY",
        headers={"Authorization": "Bearer ключ"},
    ),
    # a key in the query string is not looked at: only the body key (and Bearer) count
    Case(
        "query-key-only", with_field(GET_NUMBER, "key", ABSENT), status=401, query=f"?apikey={KEY}"
    ),
    # the Content-Type is not looked at; a body that isn't JSON is refused whatever it says
    Case(
        "form-urlencoded",
        f"action=GET_NUMBER&key={KEY}&country=russia&service=tg".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        error="not JSON",
    ),
    Case(
        "multipart",
        b'--b\r\nContent-Disposition: form-data; name="action"\r\n\r\nGET_NUMBER\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        error="not JSON",
    ),
    Case(
        "xml",
        b"<request><action>GET_NUMBER</action></request>",
        headers={"Content-Type": "application/xml"},
        error="not JSON",
    ),
    # compression
    Case(
        "deflate-encoding",
        zlib.compress(GOOD_NUMBER),
        headers={"Content-Encoding": "deflate"},
        error="Content-Encoding",
    ),
    Case("br-encoding", GOOD_NUMBER, headers={"Content-Encoding": "br"}, error="Content-Encoding"),
    Case(
        "gzip-twice-header",
        gzip.compress(GOOD_NUMBER),
        headers={"Content-Encoding": "gzip, gzip"},
        error="Content-Encoding",
    ),
    Case("gzip-not-gzip", GOOD_NUMBER, headers={"Content-Encoding": "gzip"}, error="gzip"),
    Case("gzip-truncated", gzip.compress(GOOD_NUMBER)[:-12], error="gzip"),
    Case("gzip-magic-only", b"\x1f\x8b", error="gzip"),
    Case("gzip-corrupt", gzip.compress(GOOD_NUMBER)[:20] + b"\x00" * 40, error="gzip"),
    Case("gzip-of-gzip", gzip.compress(gzip.compress(GOOD_NUMBER)), error="not JSON"),
    Case("gzip-of-garbage", gzip.compress(b"\xff" * 100)),
    Case("gzip-large-truncated", _gzip_raw(bytes(range(256)) * 64)[:-100], error="gzip"),
    Case(
        "gzip-just-over-limit",
        _gzip_raw(b" " * (MAX_BODY_BYTES + 1)),
        status=413,
        error="too large",
    ),
    # size
    Case("body-over-limit", b" " * (MAX_BODY_BYTES + 1), status=413, error="too large"),
    Case(
        "body-over-limit-json",
        GOOD_NUMBER[:-1] + b',"pad":"' + b"x" * MAX_BODY_BYTES + b'"}',
        status=413,
        error="too large",
    ),
    # unicode where it can't be valid
    Case("id-unicode-digits", with_field(FINISH, "activationId", "١٢٣")),
    Case("status-emoji", with_field(FINISH, "status", "3️⃣")),
    Case("masks-fullwidth", with_field(GET_NUMBER, "exceptionPhoneSet", ["７９"])),
    # method and path
    Case("get-method", b"", method="GET", status=405),
    Case("put-method", GOOD_NUMBER, "/getNumber", method="PUT", status=405),
    Case("delete-method", FINISH, "/finishActivation", method="DELETE", status=405),
    Case("unknown-path", GOOD_NUMBER, "/nowhere", status=404),
    Case("path-wrong-case", GOOD_NUMBER, "/getnumber", status=404),
    Case("path-trailing-slash", GOOD_NUMBER, "/getNumber/", status=404),
    Case("path-traversal", GOOD_NUMBER, "/../etc/passwd", status=404),
    *_field_cases(),
]


def case_id(case: Case) -> str:
    return case.id


async def send(target: Target, case: Case) -> tuple[int, dict[str, str], bytes]:
    headers = {"User-Agent": "hostile", **case.headers}
    url = target.url + case.path + case.query
    payload = case.payload(target.open_id)
    # aiohttp warns (an error here) on raw bytes over 1 MiB; a BytesIO still gets a length.
    data: bytes | io.BytesIO = io.BytesIO(payload) if len(payload) > 1 << 20 else payload
    async with target.env.http.request(case.method, url, data=data, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def check_error_answer(case: Case, status: int, headers: dict[str, str], raw: bytes) -> None:
    assert status == case.status, (case.id, status, raw[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), (case.id, headers)
    assert len(raw) <= MAX_ERROR_ANSWER, (case.id, len(raw))
    answer = orjson.loads(raw)
    assert answer["status"] == "ERROR", (case.id, answer)
    assert isinstance(answer["error"], str), (case.id, answer)
    assert answer["error"], (case.id, answer)
    if case.error is not None:
        assert case.error in answer["error"], (case.id, answer)


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_hostile_request_is_refused_and_changes_nothing(target: Target, case: Case) -> None:
    before = await state(target)
    status, headers, raw = await send(target, case)
    check_error_answer(case, status, headers, raw)
    assert await state(target) == before, case.id
    await still_serves(target)


async def test_barrage_then_valid_requests_work(target: Target) -> None:
    """Every case on one server, one after another and then all at once: nothing leaks (the
    Book's ``holding``, an operation half made) and the server still hands out numbers."""
    before = await state(target)
    for case in CASES:
        check_error_answer(case, *await send(target, case))
    answers = await asyncio.gather(*(send(target, c) for c in CASES))
    for case, answer in zip(CASES, answers, strict=True):
        check_error_answer(case, *answer)
    assert await state(target) == before
    await still_serves(target)


# -- out-of-range ids and the documented leniencies ------------------------------------------


@pytest.mark.parametrize("aid", [2**63, 2**64 - 1, 2**64, 2**70, "9" * 20])
async def test_ids_that_cannot_be_ours_are_unknown_operations(target: Target, aid: object) -> None:
    before = await state(target)
    case = Case("big-id", with_field(FINISH, "activationId", aid), status=200)
    status, _, raw = await send(target, case)
    assert (status, orjson.loads(raw)) == (200, {"status": "ERROR", "error": "NO_OPERATION"})
    assert await state(target) == before


@pytest.mark.parametrize(("name", "value"), [("status", 9), ("sum", -1), ("status", "x")])
async def test_a_big_id_does_not_excuse_a_bad_field(
    target: Target, name: str, value: object
) -> None:
    body = with_field(FINISH, "activationId", 2**64) | {name: value}
    check_error_answer(Case("big-id-bad-field", body), *await send(target, Case("x", body)))


async def test_wrong_method_says_what_is_allowed(target: Target) -> None:
    async with target.env.http.get(target.url + "/getNumber") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert await resp.json() == {"status": "ERROR", "error": "Method Not Allowed"}
    async with target.env.http.post(target.url + "/openapi.json") as resp:
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]


async def test_quoted_decimal_numbers_are_accepted(target: Target) -> None:
    body = with_field(FINISH, "activationId", str(target.open_id))
    body |= {"status": "4", "sum": "12.50"}
    status, _, raw = await send(target, Case("quoted", body, status=200))
    assert (status, orjson.loads(raw)) == (200, {"status": "SUCCESS"})
    assert target.open_id not in target.svc.book.open_by_id


async def test_null_optional_fields_and_any_content_type_are_served(target: Target) -> None:
    body = GET_NUMBER | {"sum": None, "exceptionPhoneSet": None}
    case = Case("nulls", body, status=200, headers={"Content-Type": "text/plain"})
    status, _, raw = await send(target, case)
    assert status == 200
    assert orjson.loads(raw)["status"] == "SUCCESS"


@pytest.mark.parametrize(
    "fields",
    [
        {"country": "россия"},
        {"country": "日本"},
        {"country": "russia\u0301"},
        {"country": "\u202erussia"},
        {"operator": "мтс"},
        {"operator": "🙂"},
        {"service": "вконтакте"},
        {"service": "v\x00k"},
        {"country": "x" * MAX_TEXT},
    ],
    ids=repr,
)
async def test_unicode_names_are_valid_strings_that_match_nothing(
    target: Target, fields: dict[str, str]
) -> None:
    """Well-typed but unknown names: "no number", 200 as always, nothing reserved."""
    before = await state(target)
    status, _, raw = await send(target, Case("unicode", GET_NUMBER | fields, status=200))
    assert (status, orjson.loads(raw)) == (200, {"status": "NO_NUMBERS"})
    assert await state(target) == before


async def test_hostile_requests_under_require_bearer(env: Env) -> None:
    async with target_of(env, require_bearer=True) as target:
        env.driver.bearer = True
        before = await state(target)
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            case = Case("bearer", GET_NUMBER, status=401, error="WRONG_KEY", headers=headers)
            check_error_answer(case, *await send(target, case))
        assert await state(target) == before


# -- raw HTTP: bytes no client library sends -------------------------------------------------


async def raw_http(port: int, request: bytes, *, body_after: bytes = b"") -> tuple[int, bytes]:
    """Send ``request`` (head and whatever body) and read the answer's status and body. The
    server answers before reading what a lying Content-Length promised, so the read is bounded
    by WAIT, not by the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        if body_after:
            writer.write(body_after)
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def head(path: str, *lines: bytes) -> bytes:
    return b"\r\n".join([f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *lines, b"", b""])


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (b"Authorization: Bearer \xff\xfe", "ERROR_WRONG_KEY"),
        (b"Authorization: \xc3\x28" + KEY.encode(), "ERROR_WRONG_KEY"),
        (b"Authorization: Bearer " + KEY.encode() + b"\xff", "ERROR_WRONG_KEY"),
        (b"X-Junk: \xff\xff\xff", None),  # served: headers other than auth are not read
    ],
    ids=["bearer-bytes", "scheme-bytes", "key-then-bytes", "other-header"],
)
async def test_undecodable_header_bytes(target: Target, header: bytes, error: str | None) -> None:
    before = await state(target)
    body = orjson.dumps(GET_SERVICES)
    request = head("/", header, f"Content-Length: {len(body)}".encode(), b"Connection: close")
    status, raw = await raw_http(target.port, request + body)
    answer = orjson.loads(raw)
    if error is None:
        assert (status, answer["status"]) == (200, "SUCCESS")
    else:
        assert (status, answer) == (401, {"status": "ERROR", "error": error})
    assert await state(target) == before


async def test_a_lying_content_length_is_refused_before_the_body(target: Target) -> None:
    """Content-Length: 1 GiB and 10 bytes sent: 413 at once, nothing read or buffered."""
    before = await state(target)
    request = head("/", b"Content-Length: 1073741824", b"Content-Type: application/json")
    started = time.perf_counter()
    status, raw = await raw_http(target.port, request + b'{"action":')
    assert time.perf_counter() - started < WAIT / 2
    assert (status, orjson.loads(raw)["error"]) == (413, "body too large")
    assert await state(target) == before
    await still_serves(target)


def vm_kb(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/self/status")


@contextlib.contextmanager
def rss_growth() -> Any:
    """Yields a function giving the peak RSS growth (bytes) since entering: VmHWM is reset
    through clear_refs where the kernel allows it, else the growth of VmRSS is used."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak = "VmHWM"
    except OSError:
        peak = "VmRSS"
    start = vm_kb("VmRSS")

    def growth() -> int:
        return (vm_kb(peak) - start) * 1024

    yield growth


@cache
def gzip_bomb() -> tuple[bytes, int]:
    """About 60 KB of gzip (under MAX_BODY_BYTES) that inflates to 60 MiB of zeros (a valid
    stream, CRC and all), built from one byte-aligned deflate segment repeated."""
    chunk = bytes(1 << 20)
    segments = 60
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(segments):
        crc = zlib.crc32(chunk, crc)
    size = segments * len(chunk)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = b"\x03\x00" + struct.pack("<II", crc, size & 0xFFFFFFFF)  # final empty block
    return header + segment * segments + trailer, size


def test_the_gzip_bomb_is_what_it_claims() -> None:
    bomb, size = gzip_bomb()
    assert len(bomb) <= MAX_BODY_BYTES
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, data = 0, bomb
    while data:
        total += len(inflater.decompress(data, 1 << 24))
        data = inflater.unconsumed_tail
    assert inflater.eof
    assert total == size == 60 << 20


@pytest.mark.parametrize("declared", [True, False], ids=["content-encoding", "magic"])
async def test_gzip_bomb_is_refused_quickly_in_bounded_memory(
    target: Target, declared: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb, size = gzip_bomb()
    headers = {"Content-Encoding": "gzip"} if declared else {}
    case = Case("gzip-bomb", bomb, status=413, error="too large", headers=headers)
    before = await state(target)
    with rss_growth() as growth:
        started = time.perf_counter()
        answer = await send(target, case)
        elapsed = time.perf_counter() - started
        grown = growth()
    check_error_answer(case, *answer)
    with capsys.disabled():
        print(
            f"\ngzip bomb ({'declared' if declared else 'by magic'}): {len(bomb):,} B -> "
            f"{size:,} B, refused in {elapsed * 1000:.0f} ms, peak RSS growth {grown / 1e6:.1f} MB"
        )
    assert elapsed < 2.0
    assert grown < RSS_BUDGET
    assert await state(target) == before
    await still_serves(target)


async def test_a_huge_streamed_body_is_refused_in_bounded_memory(target: Target) -> None:
    """64 MiB, chunked (no Content-Length to refuse it by): 413 after at most the limit."""
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b" " * 65536
        for _ in range(1024):
            sent += len(chunk)
            yield chunk

    before = await state(target)
    with rss_growth() as growth:
        async with target.env.http.post(target.url, data=stream()) as resp:
            assert resp.status == 413
            answer = await resp.json()
        grown = growth()
    assert answer == {"status": "ERROR", "error": "body too large"}
    assert grown < RSS_BUDGET, grown
    assert await state(target) == before
    await still_serves(target)


# -- the published schema ------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    text = resources.files("muxd.upstream.v1").joinpath("openapi.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


async def test_openapi_document_is_served_and_every_path_exists(target: Target) -> None:
    doc = openapi()
    assert doc["openapi"].startswith("3.0")
    async with target.env.http.get(target.url + "/openapi.json") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.json() == doc
    documented = set(doc["paths"])
    assert documented == {*ROUTES, "/openapi.json"}
    for path, item in doc["paths"].items():
        for method in item:
            if method == "get":
                async with target.env.http.get(target.url + path) as resp:
                    assert resp.status == 200, path
                continue
            assert method == "post", (path, method)
            body = orjson.dumps(GET_SERVICES if "Services" in path or path == "/" else {})
            async with target.env.http.post(target.url + path, data=body) as resp:
                assert resp.status != 404, path
                assert resp.status != 405, path


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_schemas_match_the_reference() -> None:
    """Onlinesim's v1 names and types: number an integer, activationId int64 ≥ 1, the status enums,
    countryList/operatorMap with ``any``; the limits are the server's; every $ref resolves."""
    doc = openapi()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/"), ref
        kind, name = ref.split("/")[2:]
        assert name in doc["components"][kind], ref

    def field(schema: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = schemas[schema]["properties"][name]
        if "$ref" in found:
            found = schemas[found["$ref"].rsplit("/", 1)[1]]
        return found

    got = schemas["GetNumberSuccess"]
    assert got["required"] == ["number", "activationId", "status"]
    assert field("GetNumberSuccess", "number")["type"] == "integer"
    aid = field("GetNumberSuccess", "activationId")
    assert (aid["type"], aid["format"], aid["minimum"]) == ("integer", "int64", 1)
    assert field("GetNumberSuccess", "status")["enum"] == ["SUCCESS"]
    assert field("GetServicesSuccess", "status")["enum"] == ["SUCCESS"]
    assert field("NoNumbers", "status")["enum"] == ["NO_NUMBERS"]
    assert field("Error", "status")["enum"] == ["ERROR"]
    entry = field("GetServicesSuccess", "countryList")["items"]
    entry = schemas[entry["$ref"].rsplit("/", 1)[1]]
    assert entry["required"] == ["country", "operatorMap"]
    assert entry["properties"]["operatorMap"]["required"] == ["any"]
    assert field("FinishActivationRequest", "activationId")["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
    }
    assert field("FinishActivationRequest", "status")["anyOf"][0]["enum"] == [1, 2, 3, 4, 5]
    for name in ("GetNumberRequest", "GetNumberPathRequest", "GetNumberRentPathRequest"):
        assert set(schemas[name]["properties"]) == {
            "action",
            "key",
            "country",
            "operator",
            "service",
            "sum",
            "exceptionPhoneSet",
        }
        assert field(name, "exceptionPhoneSet")["maxItems"] == MAX_MASKS
        assert field(name, "sum")["anyOf"][0]["maximum"] == MAX_SUM
        assert field(name, "country")["maxLength"] == MAX_TEXT
    one_url = doc["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert one_url["discriminator"]["propertyName"] == "action"
    assert set(one_url["discriminator"]["mapping"]) == {
        "GET_SERVICES",
        "GET_NUMBER",
        "FINISH_ACTIVATION",
    }
