"""V2Client's optional endpoints (checkNumber, takeOffNumbers, saveConfig) against the stand-in."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from muxd.errors import UpstreamError
from muxd.upstream.v2 import V2Client
from tests.upstream.conftest import KEY, NUMBERS, Upstream

A, B, C = NUMBERS
UNLISTED = "+79001119999"
CHECK_NUMBER_KEYS = {
    "id",
    "balance",
    "country_id",
    "errors",
    "number",
    "port_id",
    "sum",
    "used_service",
    "banned_service",
    "banned",
    "reseller_id",
    "rent",
    "status",
    "status_text",
    "clearable",
    "created_at",
}


def canned(up: Upstream, endpoint: str, body: str) -> None:
    """Make the stand-in answer the next request to ``endpoint`` 200 with ``body``."""
    up.stub.fail_next(endpoint, HTTPStatus.OK, body=body, content_type="application/json")


# --- checkNumber --------------------------------------------------------------------------


async def test_check_number_of_a_listed_number(upstream: Upstream) -> None:
    upstream.stub.income[A] = 76.25
    info = await upstream.client.check_number(A)
    assert set(info) == CHECK_NUMBER_KEYS
    assert (info["id"], info["status"], info["status_text"]) == (upstream.stub.ids[A], 1, "work")
    assert (info["number"], info["country_id"], info["port_id"]) == (A[1:], 7, A)
    assert (info["sum"], info["banned"], info["used_service"]) == (76.25, False, {})
    assert info["created_at"]["timezone"] == "Europe/Moscow"
    assert upstream.stub.requests[-1].endpoint == "checkNumber"


async def test_check_number_of_a_number_not_on_the_account(upstream: Upstream) -> None:
    info = await upstream.client.check_number(UNLISTED)
    assert (info["status"], info["id"], info["number"]) == (4, 0, UNLISTED[1:])


async def test_check_number_of_a_malformed_number_is_an_upstream_error(
    upstream: Upstream,
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await upstream.client.check_number("79001110001")
    assert (caught.value.endpoint, caught.value.status) == ("checkNumber", 400)
    assert caught.value.body == "NUMBER_FORMAT_ERROR"


async def test_check_number_decodes_leniently(upstream: Upstream) -> None:
    # What a PHP server may plausibly send: [] for an empty object, money as a string, fields
    # the spec does not name, documented ones left out.
    canned(
        upstream,
        "checkNumber",
        '{"response":1,"id":5,"number":"79001110001","status":6,"sum":"12.50",'
        '"used_service":[],"banned_service":{"telegram":"tg"},"operator_name":"MTS"}',
    )
    info = await upstream.client.check_number(A)
    assert (info["id"], info["status"], info["sum"]) == (5, 6, "12.50")
    assert (info["used_service"], info["banned_service"]) == ({}, {"telegram": "tg"})
    assert info["balance"] is None
    assert "operator_name" not in info


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"response":"ERROR_WRONG_NUMBER"}', "ERROR_WRONG_NUMBER"),
        ('{"response":1,"id":"x","number":"7","status":1}', "bad reply"),
        ('{"response":1}', "bad reply"),
        ("<html>oops</html>", "bad reply"),
    ],
    ids=["refused", "wrong-type", "missing-fields", "not-json"],
)
async def test_check_number_rejects_a_bad_200_reply(
    upstream: Upstream, body: str, message: str
) -> None:
    canned(upstream, "checkNumber", body)
    with pytest.raises(UpstreamError, match=message) as caught:
        await upstream.client.check_number(A)
    assert caught.value.status == HTTPStatus.OK


# --- takeOffNumbers -----------------------------------------------------------------------


async def test_take_off_numbers(upstream: Upstream) -> None:
    stub = upstream.stub
    stub.income.update({A: 75.76, B: 58.76, C: 12.0})
    found = await upstream.client.take_off_numbers()
    assert found == [
        {"id": str(stub.ids[A]), "number": A[1:], "sum": "75.76", "country": "7"},
        {"id": str(stub.ids[B]), "number": B[1:], "sum": "58.76", "country": "7"},
    ]
    assert [row["number"] for row in await upstream.client.take_off_numbers("60")] == [A[1:]]
    assert len(await upstream.client.take_off_numbers("0")) == 3
    assert await upstream.client.take_off_numbers("100") == []


async def test_take_off_numbers_normalises_to_strings(upstream: Upstream) -> None:
    canned(
        upstream,
        "takeOffNumbers",
        '{"response":1,"list":[{"id":40516575,"number":2203830000,"sum":75.76,"country":220}]}',
    )
    assert await upstream.client.take_off_numbers() == [
        {"id": "40516575", "number": "2203830000", "sum": "75.76", "country": "220"}
    ]
    canned(upstream, "takeOffNumbers", '{"response":1}')
    assert await upstream.client.take_off_numbers() == []


async def test_take_off_numbers_with_a_bad_sum(upstream: Upstream) -> None:
    with pytest.raises(UpstreamError) as caught:
        await upstream.client.take_off_numbers("-5")
    assert (caught.value.endpoint, caught.value.status, caught.value.body) == (
        "takeOffNumbers",
        400,
        "ERROR_PARAMS",
    )


# --- saveConfig ---------------------------------------------------------------------------


async def test_save_config_replaces_the_blacklist(upstream: Upstream) -> None:
    await upstream.client.save_config(["vkcom", "facebook"])
    assert upstream.stub.blacklist == {"vkcom", "facebook"}
    assert upstream.stub.requests[-1].path == "/api/auth/me"
    info = await upstream.client.check_number(A)
    assert info["used_service"] == {"facebook": "facebook", "vkcom": "vkcom"}
    await upstream.client.save_config([])
    assert upstream.stub.blacklist == set()


async def test_save_config_with_a_bad_name_is_an_upstream_error(upstream: Upstream) -> None:
    with pytest.raises(UpstreamError) as caught:
        await upstream.client.save_config(["telegram "])
    assert (caught.value.endpoint, caught.value.status) == ("saveConfig", 400)


async def test_test_mode_reaches_save_config_only(upstream: Upstream) -> None:
    client = V2Client(upstream.http, upstream.url, KEY, test="test1")
    await client.save_config(["vkcom"])
    assert upstream.stub.blacklist == set()  # test1: validated, not executed
    # read-only calls do not send `test` (undocumented there): they still answer in full
    assert (await client.check_number(A))["status"] == 1
    assert isinstance(await client.take_off_numbers("0"), list)


# --- transport errors and the observer ----------------------------------------------------


async def test_errors_are_upstream_errors(upstream: Upstream) -> None:
    stub, client = upstream.stub, upstream.client
    wrong = V2Client(upstream.http, upstream.url, "wrong-key")
    with pytest.raises(UpstreamError) as caught:
        await wrong.take_off_numbers()
    assert (caught.value.status, caught.value.body) == (401, "ERROR_WRONG_KEY")

    stub.set_down(True)
    with pytest.raises(UpstreamError) as caught:
        await client.save_config(["vkcom"])
    assert caught.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    stub.set_down(False)

    stub.rate_limit(1)
    await client.check_number(A)
    with pytest.raises(UpstreamError) as caught:
        await client.check_number(A)
    assert (caught.value.status, caught.value.body) == (429, "TOO_MANY_ATTEMPTS")
    stub.rate_limit(None)


async def test_dropped_connections_are_status_0(upstream: Upstream) -> None:
    stub, client = upstream.stub, upstream.client
    stub.reset_connections(1, "saveConfig")
    with pytest.raises(UpstreamError) as caught:
        await client.save_config(["vkcom"])
    assert (caught.value.endpoint, caught.value.status) == ("saveConfig", 0)
    # aiohttp resends a GET once by itself: one reset passes unnoticed, two do not
    stub.reset_connections(1, "checkNumber")
    assert (await client.check_number(A))["status"] == 1
    stub.reset_connections(2, "checkNumber")
    with pytest.raises(UpstreamError) as caught:
        await client.check_number(A)
    assert caught.value.status == 0


async def test_observer_sees_each_optional_call(upstream: Upstream) -> None:
    seen: list[tuple[str, str]] = []
    client = V2Client(
        upstream.http, upstream.url, KEY, observer=lambda ep, result, _s: seen.append((ep, result))
    )
    await client.check_number(A)
    await client.take_off_numbers()
    await client.save_config(["vkcom"])
    canned(upstream, "checkNumber", '{"response":"NO"}')
    with pytest.raises(UpstreamError):
        await client.check_number(A)
    upstream.stub.fail_next("saveConfig", HTTPStatus.BAD_GATEWAY)
    with pytest.raises(UpstreamError):
        await client.save_config([])
    assert seen == [
        ("checkNumber", "ok"),
        ("takeOffNumbers", "ok"),
        ("saveConfig", "ok"),
        ("checkNumber", "refused"),
        ("saveConfig", "502"),
    ]
