"""muxd's v1 server over real HTTP: routes, gzip, auth, the three actions, expiry, restart."""

from __future__ import annotations

import asyncio
import gzip
import threading

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from muxd.upstream.v1 import server
from muxd.upstream.v1.edge import SMALL_ANSWER, json_response
from muxd.upstream.v1.operations import operation_counts
from muxd.upstream.v1.server import RESERVATION
from muxd.upstream.v1.service import EXPIRY_CHECK

from .conftest import KEY, RUSSIA, WAIT, Env, ports_for


def any_counts(answer: dict[str, object], country: str = "russia") -> dict[str, int]:
    for entry in answer["countryList"]:  # type: ignore[attr-defined]
        if entry["country"] == country:
            return dict(entry["operatorMap"]["any"])
    return {}


async def raw_post(
    env: Env, path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    async with env.http.request(
        method, env.driver.base_url + path, data=body, headers=headers or {}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_get_services_on_every_route_gzip_both_ways(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        one = await env.driver.get_services()
        env.driver.use_paths = True
        per_path = await env.driver.get_services()
        rent = await env.driver.get_services(rent=True)
    assert one == per_path
    assert any_counts(one) == {"vk": 5, "wa": 5, "tg": 5, "rent": 5}
    assert one["countryList"][0]["operatorMap"]["mts"] == {"vk": 5, "wa": 5, "tg": 5, "rent": 5}
    assert any_counts(rent) == {"rent": 5}
    assert env.driver.failed() == [], env.driver.report()


async def test_plain_bodies_and_answers_work_too(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        body = orjson.dumps({"action": "GET_SERVICES", "key": KEY})
        status, headers, raw = await raw_post(env, "/", body, {"Accept-Encoding": "identity"})
        assert status == 200
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert "Content-Encoding" not in headers
        assert orjson.loads(raw)["status"] == "SUCCESS"
        # gzip body without a Content-Encoding header: recognised by its magic
        status, _, raw = await raw_post(env, "/getServices", gzip.compress(body))
        assert status == 200
        assert orjson.loads(raw)["status"] == "SUCCESS"
    # aiohttp's client sends a User-Agent by default; this one did not miss it
    assert env.observer.no_user_agent == 0


async def test_missing_user_agent_is_served_and_counted(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(env.driver.base_url.rsplit(":", 1)[1])
        )
        body = orjson.dumps({"action": "GET_SERVICES", "key": KEY})
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'"status":"SUCCESS"' in answer
    assert env.observer.no_user_agent == 1


async def test_bad_requests(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        cases = [
            ("/", b"not json", 400),
            ("/", b"[1,2]", 400),
            ("/", orjson.dumps({"action": "GET_BALANCE", "key": KEY}), 400),
            ("/getNumber", orjson.dumps({"action": "GET_SERVICES", "key": KEY}), 400),
            ("/", gzip.compress(b"{}")[:-4], 400),
            (
                "/",
                orjson.dumps(
                    {"action": "FINISH_ACTIVATION", "key": KEY, "activationId": 1, "status": 9}
                ),
                400,
            ),
            (
                "/",
                orjson.dumps(
                    {
                        "action": "GET_NUMBER",
                        "key": KEY,
                        "country": "russia",
                        "service": "vk",
                        "exceptionPhoneSet": [1.5],
                    }
                ),
                400,
            ),
            ("/", orjson.dumps({"action": "GET_NUMBER", "key": KEY, "service": "vk"}), 400),
        ]
        for path, body, expected in cases:
            status, _, raw = await raw_post(env, path, body)
            assert status == expected, (path, body, raw)
            assert orjson.loads(raw)["status"] == "ERROR"
        status, _, _ = await raw_post(env, "/", b"", method="GET")
        assert status == 405
        status, _, _ = await raw_post(env, "/nowhere", b"{}")
        assert status == 404
        assert (await operation_counts(env.journal)).get("operations_open", 0) == 0


async def test_wrong_or_missing_key_changes_nothing(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving() as svc:
        await env.driver.get_services(key="wrong")
        await env.driver.get_number("russia", key="wrong")
        good = await env.driver.get_number("russia", "any", "vk")
        await env.driver.finish(good["activationId"], 4, key="wrong")
        assert len(svc.book.open_by_id) == 1
        # right body key, wrong Bearer
        body = orjson.dumps(
            {
                "action": "GET_NUMBER",
                "key": KEY,
                "country": "russia",
                "operator": "any",
                "service": "vk",
                "sum": 1,
            }
        )
        status, _, raw = await raw_post(env, "/", body, {"Authorization": "Bearer nope"})
        assert (status, orjson.loads(raw)["error"]) == (401, "ERROR_WRONG_KEY")
        status, _, raw = await raw_post(env, "/", body.replace(KEY.encode(), b""))
        assert (status, orjson.loads(raw)["error"]) == (401, "ERROR_NO_KEY")
        assert len(svc.book.open_by_id) == 1
        counts = await operation_counts(env.journal)
        assert counts["operations_open"] == 1
    assert env.driver.failed() == [], env.driver.report()
    assert ("GET_NUMBER", "unauthorized") in env.observer.requests


async def test_require_bearer(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving(require_bearer=True):
        env.driver.bearer = False
        status, answer = await env.driver.call("GET_SERVICES", {}, key=KEY)
        assert status == 401
        assert answer["error"] == "ERROR_WRONG_KEY"
        env.driver.bearer = True
        status, answer = await env.driver.call("GET_SERVICES", {})
        assert status == 200
        assert answer["status"] == "SUCCESS"


async def test_get_number_reserves_persists_and_runs_out(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    async with env.serving() as svc:
        first = await env.driver.get_number("russia", "mts", "vk", 12.5)
        second = await env.driver.get_number("Russia", "any", "wa")
        third = await env.driver.get_number("russia", "any", "tg")
        assert first["status"] == second["status"] == "SUCCESS"
        assert first["number"] != second["number"]
        assert third == {"status": "NO_NUMBERS"}
        assert any_counts(await env.driver.get_services()) == {"vk": 0, "wa": 0, "tg": 0, "rent": 0}
        assert (await env.driver.get_number("ukraine"))["status"] == "NO_NUMBERS"
        assert (await env.driver.get_number("russia", "beeline"))["status"] == "NO_NUMBERS"
        assert (await env.driver.get_number("russia", service="ok"))["status"] == "NO_NUMBERS"
        assert svc.book.open_by_id[first["activationId"]].sum == 12.5
    conn_counts = await operation_counts(env.journal)
    assert conn_counts["operations_open"] == 2
    assert env.driver.failed() == [], env.driver.report()


async def test_no_numbers_answer_is_configurable(env: Env) -> None:
    async with env.serving(no_numbers_status="ERROR"):
        answer = await env.driver.get_number("russia")
    assert answer == {"status": "ERROR", "error": "NO_NUMBERS"}


async def test_exception_masks_integers_and_strings(env: Env) -> None:
    numbers = ["+79001110001", "+79001120002", "+79001130003", "+79011140004"]
    env.ports = ports_for(numbers)
    async with env.serving():
        masks: list[int | str] = [7900111, "79001120", "+7901"]
        got = await env.driver.get_number("russia", "any", "vk", 10, masks)
        assert got["number"] == 79001130003
        assert (await env.driver.get_number("russia", "any", "wa", 10, masks))[
            "status"
        ] == "NO_NUMBERS"
        assert (await env.driver.get_number("russia", "any", "wa", 10, [7]))[
            "status"
        ] == "NO_NUMBERS"
    assert env.driver.failed() == [], env.driver.report()


async def test_concurrent_get_numbers_never_share_a_number(env: Env) -> None:
    numbers = [f"+7900555{i:04d}" for i in range(20)]
    env.ports = ports_for(numbers)
    async with env.serving() as svc:
        answers = await asyncio.gather(
            *(env.driver.get_number("russia", "any", ("vk", "wa", "tg")[i % 3]) for i in range(50))
        )
    won = [a["number"] for a in answers if a["status"] == "SUCCESS"]
    assert sorted(won) == sorted(int(n[1:]) for n in numbers)
    assert len(svc.book.open_by_id) == 20
    assert env.driver.failed() == [], env.driver.report()


async def test_finish_sold_cancelled_repeated_unknown(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving() as svc:
        vk = await env.driver.get_number("russia", service="vk")
        assert (await env.driver.finish(vk["activationId"], 3, 4.5)) == {"status": "SUCCESS"}
        # repeats (Onlinesim re-sends when it missed the answer) change nothing
        assert (await env.driver.finish(vk["activationId"], 3, 4.5)) == {"status": "SUCCESS"}
        assert (await env.driver.finish(vk["activationId"], 4)) == {"status": "SUCCESS"}
        assert any_counts(await env.driver.get_services()) == {"vk": 0, "wa": 1, "tg": 1, "rent": 1}
        assert (await env.driver.get_number("russia", service="vk"))["status"] == "NO_NUMBERS"
        wa = await env.driver.get_number("russia", service="wa")
        assert wa["number"] == vk["number"]
        await env.driver.finish(wa["activationId"], 4)
        again = await env.driver.get_number("russia", service="wa")  # 4: free for wa again
        assert again["number"] == vk["number"]
        await env.driver.finish(again["activationId"], 5)
        assert any_counts(await env.driver.get_services())["wa"] == 1
        status, answer = await env.driver.call(
            "FINISH_ACTIVATION", {"activationId": 777, "status": 3}
        )
        assert (status, answer) == (200, {"status": "ERROR", "error": "NO_OPERATION"})
        assert svc.book.sold == {RUSSIA[0]: {"vk"}}
    assert [c for c in env.driver.failed() if "FINISH" not in c.name] == []


async def test_status_1_blocks_the_service_only_with_the_switch(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving():
        op = await env.driver.get_number("russia", service="vk")
        await env.driver.finish(op["activationId"], 1)
        assert (await env.driver.get_number("russia", service="vk"))["status"] == "SUCCESS"
    env.driver.open_numbers.clear()
    async with env.serving(status1_blocks=True) as svc:
        (aid,) = svc.book.open_by_id
        await env.driver.finish(aid, 1)
        assert (await env.driver.get_number("russia", service="vk"))["status"] == "NO_NUMBERS"


async def test_rent_operations(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    async with env.serving() as svc:
        env.driver.use_paths = True
        rented = await env.driver.get_number("russia", service="rent", sum=400, rent=True)
        assert rented["status"] == "SUCCESS"
        op = svc.book.open_by_id[rented["activationId"]]
        assert op.rent
        assert op.expires_at is None
        env.driver.use_paths = False
        by_service = await env.driver.get_number("russia", service="rent", sum=400)
        assert by_service["status"] == "SUCCESS"
        assert any_counts(await env.driver.get_services())["rent"] == 0
        await env.driver.finish(rented["activationId"], 3, 2408, rent=True)
        assert any_counts(await env.driver.get_services()) == {"vk": 1, "wa": 1, "tg": 1, "rent": 1}
    async with env.serving(rent=False):
        assert (await env.driver.get_number("russia", service="rent"))["status"] == "NO_NUMBERS"
        env.driver.use_paths = True
        status, answer = await env.driver.call("GET_SERVICES", {}, path="/getServicesRent")
        assert (status, answer["error"]) == (400, "rent is not offered")
        env.driver.use_paths = False
        assert "rent" not in any_counts(await env.driver.get_services())
    assert env.driver.failed() == [], env.driver.report()


async def test_reservations_expire_after_15_minutes_plus_grace(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_grace=60.0, reservation_expiry=True) as svc:
        op = await env.driver.get_number("russia", service="vk")
        await env.clock.advance(RESERVATION + 59.0)
        assert await svc.expire_due() == []
        assert (await env.driver.get_number("russia", service="wa"))["status"] == "NO_NUMBERS"
        # the expiry loop wakes on the injected clock and releases it (at most one check late)
        await env.clock.advance(2.0 + EXPIRY_CHECK)
        await env.observer.wait_for(lambda: env.observer.open_counts[-1] == 0)
        assert svc.book.open_by_id == {}
        again = await env.driver.get_number("russia", service="vk")
        assert again["number"] == op["number"]
        # a FINISH for the expired one still answers SUCCESS (and a 3 counts as a sale)
        assert await env.driver.finish(op["activationId"], 3) == {"status": "SUCCESS"}
        assert svc.book.sold == {RUSSIA[0]: {"vk"}}
        assert again["activationId"] in svc.book.open_by_id
    counts = await operation_counts(env.journal)
    assert counts["operations_expired"] == 1
    assert counts["operations_open"] == 1


async def test_state_survives_a_restart(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    async with env.serving():
        sold = await env.driver.get_number("russia", service="vk")
        await env.driver.finish(sold["activationId"], 3)
        held = await env.driver.get_number("russia", service="vk")
    async with env.serving() as svc:
        assert set(svc.book.open_by_id) == {held["activationId"]}
        counts = any_counts(await env.driver.get_services())
        assert counts == {"vk": 0, "wa": 1, "tg": 1, "rent": 1}
        assert await env.driver.finish(held["activationId"], 4) == {"status": "SUCCESS"}
        assert await env.driver.finish(sold["activationId"], 4) == {"status": "SUCCESS"}
        assert any_counts(await env.driver.get_services())["vk"] == 1


async def test_journal_failure_is_an_error_answer(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving() as svc:
        from muxd.errors import JournalError

        env.journal.failed = JournalError("disk gone")
        status, answer = await env.driver.call(
            "GET_NUMBER", {"country": "russia", "operator": "any", "service": "vk", "sum": 1}
        )
        env.journal.failed = None
        assert (status, answer["status"]) == (500, "ERROR")
        assert svc.book.holding == set()
        assert svc.book.open_by_id == {}
        assert (await env.driver.get_number("russia"))["status"] == "SUCCESS"


async def test_session_reuse(env: Env) -> None:
    """Keep-alive: many requests over one connection."""
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(20):
                body = orjson.dumps({"action": "GET_SERVICES", "key": KEY})
                async with http.post(env.driver.base_url, data=body) as resp:
                    assert resp.status == 200


async def test_out_of_range_values_are_refused_cleanly(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving():
        status, answer = await env.driver.call(
            "FINISH_ACTIVATION", {"activationId": 2**70, "status": 3}
        )
        assert (status, answer) == (200, {"status": "ERROR", "error": "NO_OPERATION"})
        status, answer = await env.driver.call(
            "GET_NUMBER", {"country": "russia", "operator": "any", "service": "vk", "sum": "inf"}
        )
        assert status == 400
        # the journal still answers
        assert (await env.driver.get_number("russia"))["status"] == "SUCCESS"


async def test_a_reservation_answered_too_late_is_released(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal slower than the 10 s budget: GET_NUMBER answers "no number" in time and the
    operation, once committed, is released at the next expiry check."""
    env.ports = ports_for(RUSSIA[:1])
    monkeypatch.setattr(server, "GET_NUMBER_DEADLINE", 0.05)
    release = threading.Event()

    def stall(_conn: object) -> None:  # a disk that hangs, in the writer thread
        release.wait(WAIT)

    async with env.serving() as svc:
        stalled = asyncio.ensure_future(env.journal.execute(stall))
        answer = await env.driver.get_number("russia")
        assert answer == {"status": "NO_NUMBERS"}
        release.set()
        await stalled
        await env.observer.wait_for(lambda: env.observer.open_counts[-1:] == [1])
        await env.clock.advance(EXPIRY_CHECK)
        await env.observer.wait_for(lambda: env.observer.open_counts[-1] == 0)
        assert svc.book.holding == set()
        assert (await env.driver.get_number("russia"))["status"] == "SUCCESS"
    counts = await operation_counts(env.journal)
    assert counts["operations_expired"] == 1
    # never handed out, so closed for SMS too (whatever v1.reservation_expiry says)
    (ended,) = await env.journal.execute(
        lambda c: c.execute(
            "SELECT finished_at IS NOT NULL FROM operations WHERE state = 'expired'"
        ).fetchone()
    )
    assert ended


async def test_totals_and_last_request(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving() as svc:
        assert svc.last_request_at is None
        await env.driver.get_services(key="wrong")
        assert svc.last_request_at is None
        await env.driver.get_number("russia")
        assert svc.last_request_at == env.clock.now
        assert svc.totals() == {
            "last_request_at": env.clock.now,
            "operations_open": 1,
            "sms_waiting_for_operation": 0,
            "pushes_queued": 0,
            "pushed": 0,
            "last_push_error": None,
        }
        # readiness uses the age on the monotonic clock: a wall-clock step does not age it
        env.clock.step(-3600.0)
        assert svc.last_request_age() == 0.0
        await env.clock.advance(5.0)
        assert svc.last_request_age() == 5.0


@pytest.mark.parametrize("size", [1, 2000])
def test_small_and_large_answers_are_gzip_when_accepted(size: int) -> None:
    # Small answers take the small-window compressor, large ones the default: both are gzip
    # any decoder reads.
    payload = {"status": "SUCCESS", "countryList": [{"country": f"c{i}"} for i in range(size)]}
    request = make_mocked_request("POST", "/", headers={"Accept-Encoding": "gzip, deflate"})
    response = json_response(request, payload, 200)
    assert response.headers["Content-Encoding"] == "gzip"
    assert isinstance(response.body, bytes)
    plain = gzip.decompress(response.body)
    assert (len(plain) <= SMALL_ANSWER) == (size == 1)
    assert orjson.loads(plain) == payload
