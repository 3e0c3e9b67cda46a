"""The Onlinesim v2 stand-in, over a real aiohttp server on 127.0.0.1 and a real ClientSession."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import random
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
import aiohttp.web
import pytest

from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim import (
    API_PREFIX,
    MAX_BODY_BYTES,
    NumberEntry,
    Onlinesim,
    make_app,
    run_stub,
    serve,
)

API_KEY = "s3cret-key"
NOW = 1_700_000_000.0  # the stub's injected clock
DATE = str(int(NOW) - 30)  # a plausible SMS date (UNIX seconds, as a string)
# Bounds that only stop a hang; nothing here waits for them on the happy path.
CLIENT_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 5.0
# A wait that is meant to expire: how long the stub gets to prove nothing happens.
EXPIRING_WAIT_S = 0.01

A = "+79161234567"
B = "+79161234568"
C = "+447700900123"


def item(number: str = A, **fields: Any) -> dict[str, Any]:
    country = 44 if number.startswith("+44") else 7
    return {"number": number, "country_id": country, **fields}


def sms(number: Any = A, **fields: Any) -> dict[str, Any]:
    return {"date": DATE, "number": number, "from": "Telegram", "message": "code 123456", **fields}


@dataclass
class Reply:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        assert self.content_type == "application/json", self
        return json.loads(self.text)


_UNSET: Any = object()


class Api:
    """A thin client: one call per request, answers read in full."""

    def __init__(self, session: aiohttp.ClientSession, root: str) -> None:
        self.session = session
        self.root = root

    async def call(
        self,
        method: str,
        path: str,
        payload: Any = _UNSET,
        *,
        data: bytes | io.BytesIO | None = None,
        key: str | None = API_KEY,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        sent: dict[str, str] = {}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if payload is not _UNSET:
            data = json.dumps(payload).encode()
            sent["Content-Type"] = "application/json; charset=utf-8"
        sent.update(headers or {})
        async with self.session.request(
            method, self.root + path, data=data, headers=sent, params=params
        ) as response:
            return Reply(response.status, response.content_type, await response.text())

    async def post(self, endpoint: str, payload: Any = _UNSET, **kwargs: Any) -> Reply:
        return await self.call("POST", f"{API_PREFIX}/{endpoint}", payload, **kwargs)

    async def publish(self, *numbers: dict[str, Any]) -> dict[str, int | None]:
        reply = await self.post("sendNumbersOnline", {"numbers": list(numbers)})
        assert reply.status == HTTPStatus.OK, reply
        ids: dict[str, int | None] = reply.json()["ids"]
        return ids


def assert_rejected(reply: Reply, code: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
    """A validation error is a bare text/html code."""
    assert (reply.status, reply.content_type, reply.text) == (status, "text/html", code)


@pytest.fixture
def stub() -> Onlinesim:
    return Onlinesim(API_KEY, clock=lambda: NOW)


@pytest.fixture
async def api(stub: Onlinesim) -> AsyncIterator[Api]:
    runner, port = await serve(stub, "127.0.0.1", 0)
    try:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            yield Api(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


# --- authentication and routing ------------------------------------------------------------


async def test_missing_key_is_401_error_no_key(api: Api, stub: Onlinesim) -> None:
    reply = await api.call("GET", API_PREFIX, key=None)
    assert reply.status == HTTPStatus.UNAUTHORIZED
    assert reply.json() == {"response": "ERROR_NO_KEY"}
    assert stub.requests[-1].reason == "ERROR_NO_KEY"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": "Bearer nope"}, None),
        ({"Authorization": f"Basic {API_KEY}"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": f"Bearer  {API_KEY}"}, None),
        ({}, {"apikey": "nope"}),
        ({"Authorization": f"Bearer {API_KEY}"}, {"apikey": "nope"}),
    ],
    ids=["bearer", "basic", "empty-bearer", "extra-space", "query", "one-of-two"],
)
async def test_wrong_key_is_401_error_wrong_key(
    api: Api, headers: dict[str, str], params: dict[str, str] | None
) -> None:
    reply = await api.call("GET", API_PREFIX, key=None, headers=headers, params=params)
    assert reply.status == HTTPStatus.UNAUTHORIZED
    assert reply.json() == {"response": "ERROR_WRONG_KEY"}


async def test_apikey_query_parameter_authenticates(api: Api, stub: Onlinesim) -> None:
    reply = await api.call("GET", API_PREFIX, key=None, params={"apikey": API_KEY})
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    body = {"numbers": [item()]}
    reply = await api.post("sendNumbersOnline", body, key=None, params={"apikey": API_KEY})
    assert reply.status == HTTPStatus.OK
    assert set(stub.numbers) == {A}


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    reply = await api.call(
        "GET", API_PREFIX, key=None, headers={"Authorization": f"bearer {API_KEY}"}
    )
    assert reply.status == HTTPStatus.OK


async def test_check_work_is_a_heartbeat(api: Api, stub: Onlinesim) -> None:
    before = stub.last_heartbeat
    reply = await api.call("GET", API_PREFIX)
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    assert (before, stub.last_heartbeat) == (None, NOW)
    assert stub.requests[-1].endpoint == "checkWork"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API_PREFIX}/nope"),
        ("POST", API_PREFIX),
        ("POST", f"{API_PREFIX}/checkWork"),
        ("GET", f"{API_PREFIX}/addMessage"),
        ("POST", f"{API_PREFIX}/removeNumber"),
        ("GET", f"{API_PREFIX}/"),
    ],
)
async def test_unknown_method_under_api_is_405(api: Api, method: str, path: str) -> None:
    # Routing precedes authentication: no key is needed to learn that a method does not exist.
    reply = await api.call(method, path, key=None)
    assert reply.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert reply.json() == {"response": "REQUEST_NOT_FOUND"}


@pytest.mark.parametrize("path", ["/", "/api/resellersX", "//api/resellers/addMessage"])
async def test_path_outside_api_is_404(api: Api, stub: Onlinesim, path: str) -> None:
    reply = await api.call("GET", path)
    assert reply.status == HTTPStatus.NOT_FOUND
    assert stub.requests[-1].endpoint is None


# --- sendNumbersOnline --------------------------------------------------------------------


async def test_send_numbers_ids_are_stable_and_removed_numbers_map_to_null(
    api: Api, stub: Onlinesim
) -> None:
    first = await api.publish(item(A), item(B))
    assert first == {A: 1001, B: 1002}
    second = await api.publish(item(B), item(C))
    assert second == {B: 1002, C: 1003, A: None}
    assert list(stub.numbers) == [B, C]
    # A number that comes back keeps its id; C, missing now, is reported removed.
    third = await api.publish(item(A), item(B))
    assert third == {A: 1001, B: 1002, C: None}
    assert stub.last_heartbeat == NOW


async def test_send_numbers_stores_every_field_with_defaults(api: Api, stub: Onlinesim) -> None:
    full = item(A, operator=25001, date_start=int(NOW) - 60, port_id="Port1", rent=1)
    await api.publish(full, item(C))
    assert stub.numbers[A] == NumberEntry(
        number=A,
        country_id=7,
        operator=25001,
        date_start=int(NOW) - 60,
        port_id="Port1",
        rent=1,
        id=1001,
    )
    assert stub.numbers[C] == NumberEntry(
        number=C, country_id=44, operator=None, date_start=None, port_id=C, rent=0, id=1002
    )


async def test_send_numbers_accepts_an_empty_list(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    assert await api.publish() == {A: None}
    assert stub.numbers == {}


async def test_send_numbers_accepts_a_date_start_less_than_a_day_ahead(api: Api) -> None:
    assert await api.publish(item(A, date_start=int(NOW) + 3600)) == {A: 1001}


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (item("79161234567"), "NUMBER_FORMAT_ERROR"),
        (item("+7916"), "NUMBER_FORMAT_ERROR"),
        (item("+7" + "1" * 16), "NUMBER_FORMAT_ERROR"),
        (item("+0916123456"), "NUMBER_FORMAT_ERROR"),
        (item("+7916 123456"), "NUMBER_FORMAT_ERROR"),
        (item(A + "\n"), "NUMBER_FORMAT_ERROR"),
        ({"number": 79161234567, "country_id": 7}, "NUMBER_FORMAT_ERROR"),
        ({"number": A, "country_id": 44}, "NUMBER_FORMAT_ERROR"),
        ({"number": A, "country_id": True}, "NUMBER_FORMAT_ERROR"),
        ({"number": A, "country_id": "7"}, "NUMBER_FORMAT_ERROR"),
        ({"number": A, "country_id": 7.0}, "NUMBER_FORMAT_ERROR"),
        ({"number": "+1234567", "country_id": 0}, "NUMBER_FORMAT_ERROR"),
        (item(date_start=str(int(NOW))), "ERROR_DATE"),
        (item(date_start=NOW), "ERROR_DATE"),
        (item(date_start=True), "ERROR_DATE"),
        (item(date_start=None), "ERROR_DATE"),
        (item(date_start=int(NOW) * 1000), "ERROR_DATE"),
        (item(date_start=int(NOW) + 2 * 86_400), "ERROR_DATE"),
        (item(date_start=946_684_800), "ERROR_DATE"),
        (item(operator=250), "ERROR_PARAMS"),
        (item(operator=2_500_100), "ERROR_PARAMS"),
        (item(operator="25001"), "ERROR_PARAMS"),
        (item(operator=None), "ERROR_PARAMS"),
        (item(port_id="p" * 101), "ERROR_PARAMS"),
        (item(port_id=""), "ERROR_PARAMS"),
        (item(port_id=1), "ERROR_PARAMS"),
        (item(rent=2), "ERROR_PARAMS"),
        (item(rent=True), "ERROR_PARAMS"),
        (item(rent="1"), "ERROR_PARAMS"),
        (item(imsi="250011234567890"), "ERROR_PARAMS"),
        ({"country_id": 7}, "ERROR_PARAMS"),
        ({"number": A}, "ERROR_PARAMS"),
        ({"phone": A, "country_id": 7}, "ERROR_PARAMS"),
    ],
)
async def test_send_numbers_rejects_a_bad_item(
    api: Api, stub: Onlinesim, bad: dict[str, Any], code: str
) -> None:
    await api.publish(item(C))
    reply = await api.post("sendNumbersOnline", {"numbers": [item(B), bad]})
    assert_rejected(reply, code)
    assert list(stub.numbers) == [C]  # the previous list stands
    assert (stub.requests[-1].status, stub.requests[-1].reason) == (400, code)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"numbers": item()},
        {"numbers": [item()], "extra": 1},
        {"numbers": [item()], "test": "test3"},
        {"numbers": [item(A), item(A)]},
        {"numbers": [item(A, port_id="P1"), item(B, port_id="P1")]},
        [item()],
        None,
    ],
    ids=[
        "no-numbers",
        "not-a-list",
        "extra-field",
        "bad-test",
        "dup-number",
        "dup-port",
        "array",
        "null",
    ],
)
async def test_send_numbers_rejects_a_bad_body(api: Api, stub: Onlinesim, body: Any) -> None:
    assert_rejected(await api.post("sendNumbersOnline", body), "ERROR_PARAMS")
    assert stub.numbers == {}


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"numbers": []', '{"numbers": [{"number": "\xff"}]}'.encode("latin-1")],
    ids=["empty", "open-brace", "truncated", "not-utf8"],
)
async def test_invalid_json_is_error_params(api: Api, data: bytes) -> None:
    reply = await api.post(
        "sendNumbersOnline", data=data, headers={"Content-Type": "application/json"}
    )
    assert_rejected(reply, "ERROR_PARAMS")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_post_needs_a_json_content_type(api: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    data = json.dumps({"numbers": []}).encode()
    assert_rejected(await api.post("sendNumbersOnline", data=data, headers=headers), "ERROR_PARAMS")


async def test_json_content_type_without_charset_is_fine(api: Api) -> None:
    data = json.dumps({"numbers": []}).encode()
    reply = await api.post(
        "sendNumbersOnline", data=data, headers={"Content-Type": "application/json"}
    )
    assert reply.status == HTTPStatus.OK


async def test_test1_validates_and_stores_nothing(api: Api, stub: Onlinesim) -> None:
    reply = await api.post("sendNumbersOnline", {"numbers": [item()], "test": "test1"})
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    assert stub.numbers == {}
    assert stub.ids == {}
    bad = await api.post("sendNumbersOnline", {"numbers": [item("+7")], "test": "test1"})
    assert_rejected(bad, "NUMBER_FORMAT_ERROR")


async def test_test2_echoes_the_request_and_stores_nothing(api: Api, stub: Onlinesim) -> None:
    payload = {"numbers": [item(A, rent=1)], "test": "test2"}
    reply = await api.post("sendNumbersOnline", payload)
    assert reply.json() == {"response": 1, "request": payload}
    assert stub.numbers == {}


# --- request bodies: gzip and size -------------------------------------------------------


async def test_gzip_body_is_accepted(api: Api, stub: Onlinesim) -> None:
    data = gzip.compress(json.dumps({"numbers": [item(A)]}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    reply = await api.post("sendNumbersOnline", data=data, headers=headers)
    assert reply.json() == {"response": 1, "ids": {A: 1001}}
    assert set(stub.numbers) == {A}


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"\x1f\x8b not gzip at all"),
        ("gzip", gzip.compress(b'{"numbers": []}')[:-6]),
        ("gzip", gzip.compress(b'{"numbers": []}') + b"junk"),
        ("gzip", b'{"numbers": []}'),
        ("deflate", zlib.compress(b'{"numbers": []}')),
    ],
    ids=["corrupt", "truncated", "trailing", "not-compressed", "deflate"],
)
async def test_bad_content_encoding_is_error_params(api: Api, encoding: str, data: bytes) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    assert_rejected(await api.post("sendNumbersOnline", data=data, headers=headers), "ERROR_PARAMS")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip-bomb"])
async def test_body_over_the_limit_is_413(api: Api, compress: bool) -> None:
    plain = b" " * (MAX_BODY_BYTES + 1)
    headers = {"Content-Type": "application/json"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    data = io.BytesIO(gzip.compress(plain) if compress else plain)
    reply = await api.post("sendNumbersOnline", data=data, headers=headers)
    assert_rejected(reply, "PAYLOAD_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


# --- addMessages / addMessage -------------------------------------------------------------


async def test_add_messages_accepts_a_batch_by_number_and_by_id(api: Api, stub: Onlinesim) -> None:
    ids = await api.publish(item(A), item(C))
    batch = [sms(A, message="one"), sms(str(ids[C]), **{"from": "+79001112233"}, message="two")]
    reply = await api.post("addMessages", {"messages": batch})
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    assert [
        (m.number, m.number_id, m.sent_as, m.from_, m.message, m.via) for m in stub.messages
    ] == [
        (A, 1001, A, "Telegram", "one", "addMessages"),
        (C, 1002, "1002", "+79001112233", "two", "addMessages"),
    ]
    assert all(m.date == DATE and m.received_at == NOW for m in stub.messages)
    assert stub.duplicates == 0


async def test_add_messages_is_atomic_on_no_number(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    reply = await api.post("addMessages", {"messages": [sms(A), sms(B)]})
    assert_rejected(reply, "NO_NUMBER")
    assert stub.messages == []


async def test_messages_to_removed_or_unknown_ids_are_no_number(api: Api, stub: Onlinesim) -> None:
    ids = await api.publish(item(A), item(B))
    await api.publish(item(A))
    for ref in (B, str(ids[B]), "999999"):
        assert_rejected(await api.post("addMessage", sms(ref)), "NO_NUMBER")
    assert stub.messages == []


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (sms(date=int(DATE)), "ERROR_PARAMS"),
        (sms(date="2023-11-14 22:13:20"), "ERROR_PARAMS"),
        (sms(date=DATE + "000"), "ERROR_PARAMS"),
        (sms(date="946684800"), "ERROR_PARAMS"),
        (sms(date=""), "ERROR_PARAMS"),
        (sms(**{"from": ""}), "ERROR_PARAMS"),
        (sms(message=""), "ERROR_PARAMS"),
        (sms(message=None), "ERROR_PARAMS"),
        (sms(number=int(A[1:])), "ERROR_PARAMS"),
        (sms(id=1001), "ERROR_PARAMS"),
        ({"date": DATE, "number": A, "sender": "Telegram", "message": "x"}, "ERROR_PARAMS"),
        ({"date": DATE, "number": A, "from_": "Telegram", "message": "x"}, "ERROR_PARAMS"),
        ({"date": DATE, "number": A, "from": "Telegram"}, "ERROR_PARAMS"),
        ({"date": DATE, "number": A, "from": "Telegram", "text": "x"}, "ERROR_PARAMS"),
        (sms("+7"), "NUMBER_FORMAT_ERROR"),
        (sms("phone"), "NUMBER_FORMAT_ERROR"),
        (sms("0123"), "NUMBER_FORMAT_ERROR"),
        (sms(""), "NUMBER_FORMAT_ERROR"),
    ],
)
async def test_bad_message_is_rejected_by_both_endpoints(
    api: Api, stub: Onlinesim, bad: dict[str, Any], code: str
) -> None:
    await api.publish(item(A))
    assert_rejected(await api.post("addMessages", {"messages": [sms(A), bad]}), code)
    assert_rejected(await api.post("addMessage", bad), code)
    assert stub.messages == []


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": []}, {"messages": sms()}, {"messages": [sms()], "extra": 1}, [sms()]],
    ids=["no-messages", "empty", "not-a-list", "extra-field", "array"],
)
async def test_add_messages_rejects_a_bad_body(api: Api, body: Any) -> None:
    await api.publish(item(A))
    assert_rejected(await api.post("addMessages", body), "ERROR_PARAMS")


async def test_add_message_accepts_one(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    reply = await api.post("addMessage", sms(A, message="Ваш код 1234 😀"))
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    [message] = stub.messages
    assert (message.number, message.message, message.via) == (A, "Ваш код 1234 😀", "addMessage")


async def test_message_test_modes_store_nothing(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    one = await api.post("addMessage", sms(A, test="test1"))
    assert one.json() == {"response": 1}
    batch = {"messages": [sms(A)], "test": "test2"}
    assert (await api.post("addMessages", batch)).json() == {"response": 1, "request": batch}
    assert_rejected(await api.post("addMessage", sms(B, test="test1")), "NO_NUMBER")
    assert stub.messages == []


async def test_disabled_add_messages_is_404_and_add_message_still_works(
    api: Api, stub: Onlinesim
) -> None:
    await api.publish(item(A))
    stub.disable_add_messages(True)
    reply = await api.post("addMessages", {"messages": [sms(A)]})
    assert reply.status == HTTPStatus.NOT_FOUND
    assert (await api.post("addMessage", sms(A))).status == HTTPStatus.OK
    stub.disable_add_messages(False)
    assert (await api.post("addMessages", {"messages": [sms(A, message="2")]})).status == 200
    assert [m.via for m in stub.messages] == ["addMessage", "addMessages"]


async def test_disabled_add_messages_still_checks_the_key(api: Api, stub: Onlinesim) -> None:
    stub.disable_add_messages(True)
    reply = await api.post("addMessages", {"messages": [sms(A)]}, key="nope")
    assert reply.status == HTTPStatus.UNAUTHORIZED


async def test_duplicates_counter(api: Api, stub: Onlinesim) -> None:
    ids = await api.publish(item(A))
    await api.post("addMessages", {"messages": [sms(A), sms(A, date=str(int(NOW) - 1))]})
    assert stub.duplicates == 0
    await api.post("addMessage", sms(str(ids[A])))  # the same SMS again, addressed by id
    assert stub.duplicates == 1
    await api.post("addMessages", {"messages": [sms(A, message="new"), sms(A, message="new")]})
    assert stub.duplicates == 2
    assert len(stub.messages) == 5


# --- addNumber / removeNumber -------------------------------------------------------------


async def test_add_number_adds_and_updates(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    reply = await api.post("addNumber", item(C, rent=0, port_id="Port9"))
    assert reply.json() == {"response": 1, "ids": {C: 1002}}
    again = await api.post("addNumber", item(C, rent=1, port_id="Port9"))
    assert again.json() == {"response": 1, "ids": {C: 1002}}
    assert list(stub.numbers) == [A, C]
    assert (stub.numbers[C].rent, stub.numbers[C].port_id) == (1, "Port9")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (item(C), "ERROR_PARAMS"),  # rent is required here
        (item(C, rent=0, port_id="Port1"), "ERROR_PARAMS"),  # A's port
        (item(C, rent=0, test="test9"), "ERROR_PARAMS"),
        (item("+44", rent=0), "NUMBER_FORMAT_ERROR"),
        (item(C, rent=0, date_start=0), "ERROR_DATE"),
    ],
)
async def test_add_number_rejects(
    api: Api, stub: Onlinesim, body: dict[str, Any], code: str
) -> None:
    await api.publish(item(A, port_id="Port1"))
    assert_rejected(await api.post("addNumber", body), code)
    assert list(stub.numbers) == [A]


async def test_add_number_test1_stores_nothing(api: Api, stub: Onlinesim) -> None:
    reply = await api.post("addNumber", item(C, rent=0, test="test1"))
    assert reply.json() == {"response": 1}
    assert stub.numbers == {}


async def test_remove_number(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A), item(B))
    path = f"{API_PREFIX}/removeNumber"
    test1 = await api.call("DELETE", path, params={"number": A, "test": "test1"})
    assert test1.json() == {"response": 1}
    assert list(stub.numbers) == [A, B]
    reply = await api.call("DELETE", path, params={"number": A})  # yarl sends %2B
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    assert list(stub.numbers) == [B]
    assert (await api.post("addNumber", item(A, rent=0))).json()["ids"] == {A: 1001}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (f"number=%2B{C[1:]}", "NO_NUMBER"),
        (f"number={A}", "NUMBER_FORMAT_ERROR"),  # a raw "+" decodes to a space
        ("", "ERROR_PARAMS"),
        (f"number=%2B{A[1:]}&number=%2B{B[1:]}", "ERROR_PARAMS"),
        (f"number=%2B{A[1:]}&id=1001", "ERROR_PARAMS"),
        (f"number=%2B{A[1:]}&test=test3", "ERROR_PARAMS"),
    ],
    ids=["unknown", "unencoded-plus", "missing", "twice", "unknown-param", "bad-test"],
)
async def test_remove_number_rejects(api: Api, stub: Onlinesim, query: str, code: str) -> None:
    await api.publish(item(A), item(B))
    assert_rejected(await api.call("DELETE", f"{API_PREFIX}/removeNumber?{query}"), code)
    assert list(stub.numbers) == [A, B]


# --- fault injection ----------------------------------------------------------------------


async def test_fail_next_503_once_then_ok(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    stub.fail_next("addMessages", HTTPStatus.SERVICE_UNAVAILABLE)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK  # other endpoints unaffected
    failed = await api.post("addMessages", {"messages": [sms(A)]})
    assert (failed.status, failed.text) == (HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")
    assert stub.messages == []
    ok = await api.post("addMessages", {"messages": [sms(A)]})
    assert ok.status == HTTPStatus.OK
    assert len(stub.messages) == 1
    assert [r.reason for r in stub.requests if r.endpoint == "addMessages"] == ["fault", "OK"]
    assert stub.faults == []


async def test_fail_next_any_endpoint_count_and_body(api: Api, stub: Onlinesim) -> None:
    body = '{"response":"ERROR"}'
    stub.fail_next(None, HTTPStatus.OK, count=2, body=body, content_type="application/json")
    for _ in range(2):
        reply = await api.call("GET", API_PREFIX, key=None)  # faults precede authentication
        assert reply.json() == {"response": "ERROR"}
    assert (await api.call("GET", API_PREFIX, key=None)).status == HTTPStatus.UNAUTHORIZED


async def test_fault_after_processing_loses_the_reply(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    stub.fail_next("addMessages", HTTPStatus.BAD_GATEWAY, processed=True)
    lost = await api.post("addMessages", {"messages": [sms(A)]})
    assert lost.status == HTTPStatus.BAD_GATEWAY
    assert len(stub.messages) == 1
    assert (await api.post("addMessages", {"messages": [sms(A)]})).status == HTTPStatus.OK
    assert stub.duplicates == 1  # what an at-least-once client's retry looks like


@pytest.mark.parametrize(
    ("endpoint", "status", "count"),
    [("addMesages", 503, 1), (None, 99, 1), (None, 600, 1), (None, 503, 0)],
)
def test_fail_next_rejects_bad_arguments(
    stub: Onlinesim, endpoint: str | None, status: int, count: int
) -> None:
    with pytest.raises(ValueError, match=r"endpoint|status|count"):
        stub.fail_next(endpoint, status, count)


async def test_set_down_answers_503_to_everything(api: Api, stub: Onlinesim) -> None:
    stub.set_down(True)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.SERVICE_UNAVAILABLE
    assert (await api.post("sendNumbersOnline", {"numbers": [item()]})).status == 503
    assert (await api.call("GET", "/elsewhere", key=None)).status == 503
    assert stub.numbers == {}
    stub.set_down(False)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK
    assert [r.reason for r in stub.requests] == ["down", "down", "down", "OK"]


# --- waiting, records, serving ------------------------------------------------------------


async def test_wait_for_messages_wakes_on_delivery(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    waiter = asyncio.create_task(stub.wait_for_messages(2))
    await api.post("addMessage", sms(A, message="1"))
    assert not waiter.done()
    await api.post("addMessages", {"messages": [sms(A, message="2")]})
    await waiter
    await stub.wait_for_requests(1, "addMessages")  # already true: returns at once


async def test_wait_times_out_with_a_useful_message(stub: Onlinesim) -> None:
    with pytest.raises(TimeoutError, match=r"3 messages \(have 0\)"):
        await stub.wait_for_messages(3, timeout=EXPIRING_WAIT_S)
    with pytest.raises(TimeoutError, match="requests to addNumber"):
        await stub.wait_for_requests(1, "addNumber", timeout=EXPIRING_WAIT_S)


async def test_every_request_is_recorded(api: Api, stub: Onlinesim) -> None:
    await api.call("GET", API_PREFIX)
    await api.post("addMessage", sms(A))
    await api.call("GET", f"{API_PREFIX}/nope", key=None)
    summary = [(r.method, r.path, r.endpoint, r.status, r.reason) for r in stub.requests]
    assert summary == [
        ("GET", API_PREFIX, "checkWork", 200, "OK"),
        ("POST", f"{API_PREFIX}/addMessage", "addMessage", 400, "NO_NUMBER"),
        ("GET", f"{API_PREFIX}/nope", None, 405, "REQUEST_NOT_FOUND"),
    ]
    assert A in stub.requests[1].detail


async def test_make_app_under_a_plain_runner_decodes_gzip_itself(stub: Onlinesim) -> None:
    # The app carries its own handler settings, so any runner (run_app, a test server) works.
    runner = aiohttp.web.AppRunner(make_app(stub))
    await runner.setup()
    try:
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{port}")
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            good = gzip.compress(json.dumps({"numbers": [item(A)]}).encode())
            reply = await api.post("sendNumbersOnline", data=good, headers=headers)
            assert reply.status == HTTPStatus.OK
            corrupt = await api.post("sendNumbersOnline", data=b"\x1f\x8bxx", headers=headers)
            assert_rejected(corrupt, "ERROR_PARAMS")
    finally:
        await runner.cleanup()


async def test_run_stub_serves_until_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="muxd_sim.onlinesim")
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[tuple[Onlinesim, int]] = loop.create_future()

    def on_ready(stub: Onlinesim, port: int) -> None:
        ready.set_result((stub, port))

    task = asyncio.create_task(run_stub("127.0.0.1", 0, API_KEY, on_ready=on_ready))
    async with asyncio.timeout(READY_TIMEOUT_S):
        stub, port = await ready
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{port}")
        assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK
    assert stub.last_heartbeat is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    accepted = [r for r in caplog.records if "-> 200 OK" in r.getMessage()]
    assert [r.levelno for r in accepted] == [logging.INFO]


def test_stub_needs_a_key() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Onlinesim("")


# --- optional endpoints: checkNumber ------------------------------------------------------

CHECK_NUMBER = f"{API_PREFIX}/checkNumber"
TAKE_OFF = f"{API_PREFIX}/takeOffNumbers"


async def check_number(api: Api, number: str, **params: str) -> Reply:
    return await api.call("GET", CHECK_NUMBER, params={"number": number, **params})


async def test_check_number_of_a_listed_number(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A, port_id="Port1", date_start=int(NOW) - 3600, rent=1), item(C))
    stub.income[A] = 76.25
    reply = await check_number(api, A)
    assert reply.status == HTTPStatus.OK
    assert reply.json() == {
        "id": 1001,
        "balance": 0.0,
        "country_id": 7,
        "errors": 0,
        "number": A[1:],
        "port_id": "Port1",
        "sum": 76.25,
        "used_service": {},
        "banned_service": {},
        "banned": False,
        "reseller_id": 241,
        "rent": False,
        "status": 1,
        "status_text": "work",
        "clearable": True,
        # date_start, NOW - 1 h = 2023-11-14 21:13:20 UTC, in Moscow time (UTC+3)
        "created_at": {
            "date": "2023-11-15 00:13:20.000000",
            "timezone_type": 3,
            "timezone": "Europe/Moscow",
        },
        "response": 1,
    }
    assert stub.requests[-1].endpoint == "checkNumber"


async def test_check_number_types_match_the_spec(api: Api) -> None:
    await api.publish(item(C))
    info = (await check_number(api, C)).json()
    types = {key: type(value) for key, value in info.items()}
    assert types == {
        "id": int,
        "balance": float,
        "country_id": int,
        "errors": int,
        "number": str,
        "port_id": str,
        "sum": float,
        "used_service": dict,
        "banned_service": dict,
        "banned": bool,
        "reseller_id": int,
        "rent": bool,
        "status": int,
        "status_text": str,
        "clearable": bool,
        "created_at": dict,
        "response": int,
    }
    # no date_start: created_at is when the number joined the list (the stub's clock)
    assert info["created_at"]["date"] == "2023-11-15 01:13:20.000000"
    assert (info["port_id"], info["number"]) == (C, C[1:])


async def test_check_number_of_numbers_not_on_the_account(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A), item(B))
    await api.publish(item(A))
    stub.income[B] = 12.5
    removed = (await check_number(api, B)).json()
    assert (removed["status"], removed["status_text"], removed["id"]) == (4, "not on account", 1002)
    assert (removed["number"], removed["sum"], removed["port_id"]) == (B[1:], 12.5, "")
    never = (await check_number(api, C)).json()
    assert (never["status"], never["id"], never["country_id"], never["response"]) == (4, 0, 0, 1)
    assert C not in stub.ids  # asking does not allocate an id


async def test_check_number_reflects_blacklist_rent_and_bans(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A), item(B))
    stub.save_config(["vkcom", "facebook"])
    stub.failed_operations[A] = 3
    stub.failed_operations[B] = 2
    stub.rent_allowed = None
    a = (await check_number(api, A)).json()
    assert a["used_service"] == {"facebook": "facebook", "vkcom": "vkcom"}  # marked USED
    assert (a["errors"], a["banned"], a["rent"]) == (3, True, None)
    b = (await check_number(api, B)).json()
    assert (b["errors"], b["banned"]) == (2, False)
    assert (await check_number(api, C)).json()["used_service"] == {}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "ERROR_PARAMS"),
        (f"number={A}", "NUMBER_FORMAT_ERROR"),  # a raw "+" decodes to a space
        ("number=%2B7", "NUMBER_FORMAT_ERROR"),
        (f"number=%2B{A[1:]}&number=%2B{B[1:]}", "ERROR_PARAMS"),
        (f"number=%2B{A[1:]}&id=1001", "ERROR_PARAMS"),
        (f"number=%2B{A[1:]}&test=test3", "ERROR_PARAMS"),
    ],
    ids=["missing", "unencoded-plus", "short", "twice", "unknown-param", "bad-test"],
)
async def test_check_number_rejects(api: Api, query: str, code: str) -> None:
    await api.publish(item(A))
    assert_rejected(await api.call("GET", f"{CHECK_NUMBER}?{query}"), code)


async def test_check_number_test_modes(api: Api) -> None:
    await api.publish(item(A))
    assert (await check_number(api, A, test="test1")).json() == {"response": 1}
    echo = await check_number(api, A, test="test2", apikey=API_KEY)
    assert echo.json() == {"response": 1, "request": {"number": A, "test": "test2"}}


@pytest.mark.parametrize("path", [CHECK_NUMBER, TAKE_OFF])
async def test_optional_reads_need_the_key(api: Api, path: str) -> None:
    reply = await api.call("GET", path, key=None, params={"number": A})
    assert (reply.status, reply.json()) == (HTTPStatus.UNAUTHORIZED, {"response": "ERROR_NO_KEY"})


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", CHECK_NUMBER), ("DELETE", TAKE_OFF), ("GET", "/api/auth/me")],
)
async def test_wrong_method_on_optional_endpoints_is_405(api: Api, method: str, path: str) -> None:
    reply = await api.call(method, path, key=None)
    assert (reply.status, reply.json()) == (
        HTTPStatus.METHOD_NOT_ALLOWED,
        {"response": "REQUEST_NOT_FOUND"},
    )


@pytest.mark.parametrize("path", ["/api/auth", "/api/auth/me/", "/api/auth/other"])
async def test_other_auth_paths_are_404(api: Api, path: str) -> None:
    assert (await api.call("POST", path, {"disabled_service": {}})).status == HTTPStatus.NOT_FOUND


# --- optional endpoints: takeOffNumbers ---------------------------------------------------


async def test_take_off_lists_numbers_that_earned_the_sum(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A), item(B), item(C))
    stub.income.update({A: 75.76, B: 50.0, C: 10.0, "+79990000000": 100.0})  # last: not listed
    reply = await api.call("GET", TAKE_OFF)  # sum defaults to "50"
    assert reply.json() == {
        "response": 1,
        "list": [
            {"id": "1001", "number": A[1:], "sum": "75.76", "country": "7"},
            {"id": "1002", "number": B[1:], "sum": "50.00", "country": "7"},
        ],
    }
    above = await api.call("GET", TAKE_OFF, params={"sum": "50.01"})
    assert [row["number"] for row in above.json()["list"]] == [A[1:]]
    low = await api.call("GET", TAKE_OFF, params={"sum": "9.5"})
    assert [row["country"] for row in low.json()["list"]] == ["7", "7", "44"]
    everything = await api.call("GET", TAKE_OFF, params={"sum": "0"})
    assert len(everything.json()["list"]) == 3
    none = await api.call("GET", TAKE_OFF, params={"sum": "1000"})
    assert none.json() == {"response": 1, "list": []}


@pytest.mark.parametrize("bad", ["", "-1", "abc", "1e3", "nan", "50.123", " 50", "50,5", "1."])
async def test_take_off_rejects_a_bad_sum(api: Api, bad: str) -> None:
    assert_rejected(await api.call("GET", TAKE_OFF, params={"sum": bad}), "ERROR_PARAMS")


async def test_take_off_rejects_unknown_params_and_honours_test(api: Api) -> None:
    assert_rejected(await api.call("GET", TAKE_OFF, params={"min": "5"}), "ERROR_PARAMS")
    test1 = await api.call("GET", TAKE_OFF, params={"sum": "5", "test": "test1"})
    assert test1.json() == {"response": 1}


# --- optional endpoints: saveConfig -------------------------------------------------------


async def save_config(api: Api, payload: Any, **kwargs: Any) -> Reply:
    return await api.call("POST", "/api/auth/me", payload, **kwargs)


async def test_save_config_replaces_the_blacklist(api: Api, stub: Onlinesim) -> None:
    reply = await save_config(api, {"disabled_service": {"vkcom": "vkcom", "facebook": "facebook"}})
    assert (reply.status, reply.json()) == (HTTPStatus.OK, {"response": 1})
    assert stub.blacklist == {"vkcom", "facebook"}
    await save_config(api, {"disabled_service": {"telegram": "telegram"}})
    assert stub.blacklist == {"telegram"}  # replaced, not merged
    await save_config(api, {"disabled_service": {}})
    assert stub.blacklist == set()
    assert [r.endpoint for r in stub.requests] == ["saveConfig"] * 3


@pytest.mark.parametrize(
    "body",
    [
        {"disabled_service": {"vkcom": "vk"}},
        {"disabled_service": {"telegram ": "telegram "}},
        {"disabled_service": {"": ""}},
        {"disabled_service": {"vkcom": 1}},
        {"disabled_service": ["vkcom"]},
        {"disabled_service": None},
        {"disabled_service": {"vkcom": "vkcom"}, "extra": 1},
        {"disabled_service": {"vkcom": "vkcom"}, "test": "test3"},
        {"disabled_services": {"vkcom": "vkcom"}},
        {},
    ],
    ids=[
        "key-not-value",
        "padded",
        "empty-name",
        "not-a-string",
        "a-list",
        "null",
        "extra",
        "bad-test",
        "misnamed",
        "missing",
    ],
)
async def test_save_config_rejects_a_bad_body(api: Api, stub: Onlinesim, body: Any) -> None:
    stub.save_config(["ok"])
    assert_rejected(await save_config(api, body), "ERROR_PARAMS")
    assert stub.blacklist == {"ok"}


async def test_save_config_checks_key_content_type_and_test(api: Api, stub: Onlinesim) -> None:
    body = {"disabled_service": {"vkcom": "vkcom"}}
    assert (await save_config(api, body, key="nope")).status == HTTPStatus.UNAUTHORIZED
    plain = await save_config(api, _UNSET, data=json.dumps(body).encode())
    assert_rejected(plain, "ERROR_PARAMS")  # no JSON Content-Type
    test1 = await save_config(api, {**body, "test": "test1"})
    assert test1.json() == {"response": 1}
    assert stub.blacklist == set()


# --- network faults: error_rate, latency, reset_connections, rate_limit --------------------


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock(NOW)


@pytest.fixture
async def timed(clock: FakeClock) -> AsyncIterator[tuple[Onlinesim, Api]]:
    """A stub on a clock the test moves, seeded 7, and a client for it."""
    stub = Onlinesim(API_KEY, clock=clock, seed=7)
    runner, port = await serve(stub, "127.0.0.1", 0)
    try:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            yield stub, Api(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def test_error_rate_is_seeded_and_deterministic(timed: tuple[Onlinesim, Api]) -> None:
    stub, api = timed
    stub.set_error_rate(0.5)
    statuses = [(await api.call("GET", API_PREFIX)).status for _ in range(20)]
    draws = random.Random(7)  # the same seed, one draw per request
    assert statuses == [503 if draws.random() < 0.5 else 200 for _ in range(20)]
    assert 0 < statuses.count(503) < 20
    reasons = {r.reason for r in stub.requests}
    assert reasons == {"OK", "error_rate"}
    stub.set_error_rate(0.0)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK


async def test_error_rate_one_fails_everything_but_yields_to_fail_next(
    api: Api, stub: Onlinesim
) -> None:
    stub.set_error_rate(1.0)
    stub.fail_next(None, HTTPStatus.BAD_GATEWAY)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.BAD_GATEWAY
    reply = await api.post("sendNumbersOnline", {"numbers": [item()]})
    assert (reply.status, reply.text) == (HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")
    assert stub.numbers == {}
    assert stub.error_rate == 1.0


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), True])
def test_error_rate_rejects_bad_values(stub: Onlinesim, rate: float) -> None:
    with pytest.raises(ValueError, match="error_rate"):
        stub.set_error_rate(rate)


async def test_latency_delays_every_answer(api: Api, stub: Onlinesim) -> None:
    latency = 0.05
    stub.set_latency(latency)
    loop = asyncio.get_running_loop()
    for method, path in (("GET", API_PREFIX), ("GET", "/nowhere")):
        started = loop.time()
        await api.call(method, path)
        assert loop.time() - started >= latency
    stub.set_latency(0)
    with pytest.raises(ValueError, match="latency"):
        stub.set_latency(-1)


async def test_reset_connections_drops_the_next_requests(api: Api, stub: Onlinesim) -> None:
    await api.publish(item(A))
    stub.reset_connections(2)
    for _ in range(2):
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.post("addMessage", sms(A))
    assert (await api.post("addMessage", sms(A))).status == HTTPStatus.OK
    assert len(stub.messages) == 1
    log = [(r.endpoint, r.status, r.reason) for r in stub.requests[1:]]
    reset = ("addMessage", 0, "reset")
    assert log == [reset, reset, ("addMessage", 200, "OK")]
    assert stub.resets == []


async def test_reset_connections_for_one_endpoint_after_processing(
    api: Api, stub: Onlinesim
) -> None:
    await api.publish(item(A))
    stub.reset_connections(1, "addMessages", processed=True)
    assert (await api.post("addMessage", sms(A, message="other"))).status == HTTPStatus.OK
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.post("addMessages", {"messages": [sms(A)]})
    assert [m.message for m in stub.messages] == ["other", "code 123456"]  # stored, reply lost
    assert "after OK" in stub.requests[-1].detail


async def test_aiohttp_resends_an_idempotent_request_once_after_a_reset(
    api: Api, stub: Onlinesim
) -> None:
    # A GET or DELETE is retried by aiohttp's client itself: one reset is invisible to it.
    stub.reset_connections(1)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK
    assert [r.reason for r in stub.requests] == ["reset", "OK"]
    stub.reset_connections(2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("GET", API_PREFIX)


@pytest.mark.parametrize(("count", "endpoint"), [(0, None), (1, "checkNumbers")])
def test_reset_connections_rejects_bad_arguments(
    stub: Onlinesim, count: int, endpoint: str | None
) -> None:
    with pytest.raises(ValueError, match=r"count|endpoint"):
        stub.reset_connections(count, endpoint)


async def test_rate_limit_is_a_token_bucket_on_the_stub_clock(
    timed: tuple[Onlinesim, Api], clock: FakeClock
) -> None:
    stub, api = timed
    stub.rate_limit(2)

    async def statuses(count: int) -> list[int]:
        return [(await api.call("GET", API_PREFIX)).status for _ in range(count)]

    assert await statuses(3) == [200, 200, 429]  # a full bucket holds 2 tokens
    limited = await api.call("GET", API_PREFIX, key=None)  # the limit precedes authentication
    assert (limited.status, limited.content_type, limited.text) == (
        HTTPStatus.TOO_MANY_REQUESTS,
        "text/html",
        "TOO_MANY_ATTEMPTS",
    )
    clock.now += 0.5  # refills one token
    assert await statuses(2) == [200, 429]
    clock.now += 10  # refills to the burst size, not beyond
    assert await statuses(3) == [200, 200, 429]
    assert stub.requests[-1].reason == "TOO_MANY_ATTEMPTS"
    stub.rate_limit(None)
    assert await statuses(5) == [200] * 5


async def test_slow_rate_limit_allows_one_request_per_period(
    timed: tuple[Onlinesim, Api], clock: FakeClock
) -> None:
    stub, api = timed
    stub.rate_limit(0.5)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK
    clock.now += 1.9
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.TOO_MANY_REQUESTS
    clock.now += 0.1
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK


@pytest.mark.parametrize("rate", [0, -1, float("inf")])
def test_rate_limit_rejects_bad_values(stub: Onlinesim, rate: float) -> None:
    with pytest.raises(ValueError, match="max_per_second"):
        stub.rate_limit(rate)


async def test_down_precedes_the_rate_limit_and_spends_no_tokens(
    timed: tuple[Onlinesim, Api],
) -> None:
    stub, api = timed
    stub.rate_limit(1)
    stub.set_down(True)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.SERVICE_UNAVAILABLE
    stub.set_down(False)
    assert (await api.call("GET", API_PREFIX)).status == HTTPStatus.OK


async def test_run_stub_applies_the_fault_knobs() -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[tuple[Onlinesim, int]] = loop.create_future()

    def on_ready(stub: Onlinesim, port: int) -> None:
        ready.set_result((stub, port))

    task = asyncio.create_task(
        run_stub(
            "127.0.0.1", 0, API_KEY, on_ready=on_ready, error_rate=1.0, latency=0.01, rate_limit=50
        )
    )
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            stub, port = await ready
        assert (stub.error_rate, stub.latency) == (1.0, 0.01)
        assert stub.limiter is not None
        async with aiohttp.ClientSession() as session:
            reply = await Api(session, f"http://127.0.0.1:{port}").call("GET", API_PREFIX)
        assert reply.status == HTTPStatus.SERVICE_UNAVAILABLE
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_stub_rejects_a_bad_knob_before_listening() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        await run_stub("127.0.0.1", 0, API_KEY, error_rate=2.0)
