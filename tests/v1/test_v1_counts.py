"""Counting, number choice, masks, names, push-answer classification, filters (pure)."""

from __future__ import annotations

import pytest

from muxd.config import FilterRule
from muxd.ports import PortStatus
from muxd.upstream.v1.counts import (
    Book,
    LiveNumbers,
    candidates,
    choose,
    count_services,
    live_numbers,
    masked,
    parse_masks,
)
from muxd.upstream.v1.names import UNKNOWN_OPERATOR, Names
from muxd.upstream.v1.operations import Operation, V1State
from muxd.upstream.v1.pusher import classify, compile_filters

from .conftest import port, ports_for


def op(number: str, service: str = "vk", aid: int = 1, *, rent: bool = False) -> Operation:
    return Operation(
        aid, number, service, "russia", "mts", 10.0, rent, "open", None, 100.0, 1000.0, None
    )


def test_names_longest_prefix_and_overrides() -> None:
    names = Names({"1": "canada", "+44": "england"}, {"25001": "MTS-RU", "bad": "x"})
    assert names.country("+79001234567", 7) == "russia"
    assert names.country("+77011234567", 7) == "kazakhstan"
    assert names.country("+380501234567", 380) == "ukraine"
    assert names.country("+4915112345678", 49) == "germany"
    assert names.country("+14165550000", 1) == "canada"
    assert names.country("+447700900123", 44) == "england"
    assert names.country("+8881234567", 888) == "888"  # unknown code: the code itself
    assert names.operator(25001) == "mts-ru"
    assert names.operator(25099) == "beeline"
    assert names.operator(25502) == "kyivstar"
    assert names.operator(99999) == "99999"
    assert names.operator(None) == UNKNOWN_OPERATOR


def test_counts_any_is_the_sum_and_busy_or_sold_numbers_drop_out() -> None:
    ports = [
        port("+79001110001", 25001, index=0),
        port("+79001110002", 25001, index=1),
        port("+79001110003", 25099, index=2),
        port("+380501110004", 25501, index=3),
        port("+79001110001", 25001, index=4),  # the same number twice counts once
    ]
    down = port("+79001110009", 25002, index=5)
    down.status = PortStatus.BACKOFF
    ports.append(down)
    book = Book()
    book.opened(op("+79001110002", "wa"))
    book.mark_sold("+79001110003", "vk")
    live = live_numbers(ports, Names())
    (russia, ukraine) = count_services(live, book, ["vk", "wa"], rent=True)
    assert russia == {
        "country": "russia",
        "operatorMap": {
            "any": {"vk": 1, "wa": 2, "rent": 2},
            "beeline": {"vk": 0, "wa": 1, "rent": 1},
            "mts": {"vk": 1, "wa": 1, "rent": 1},
        },
    }
    assert ukraine["operatorMap"] == {
        "any": {"vk": 1, "wa": 1, "rent": 1},
        "vodafone": {"vk": 1, "wa": 1, "rent": 1},
    }
    (rent_only, _) = count_services(live, book, ["vk", "wa"], rent=True, rent_only=True)
    assert rent_only["operatorMap"]["any"] == {"rent": 2}
    (no_rent, _) = count_services(live, book, ["vk"], rent=False)
    assert no_rent["operatorMap"]["any"] == {"vk": 1}


def test_holding_counts_as_busy() -> None:
    book = Book()
    book.holding.add("+79001110001")
    live = live_numbers(ports_for(["+79001110001", "+79001110002"]), Names())
    (russia,) = count_services(live, book, ["vk"], rent=False)
    assert russia["operatorMap"]["any"] == {"vk": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ([], ()),
        ([46950, "7918", "+79281", " 7900 "], ("46950", "7918", "79281", "7900")),
    ],
)
def test_masks_accept_integers_and_strings(value: object, expected: tuple[str, ...]) -> None:
    assert parse_masks(value) == expected


@pytest.mark.parametrize("value", ["7900", [True], [1.5], ["79a"], [""], [-7], [[7]], {"a": 1}])
def test_unreadable_masks_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="exceptionPhoneSet"):
        parse_masks(value)


def test_candidates_honour_country_operator_masks_sales_and_use_order() -> None:
    numbers = ["+79001110001", "+79001120002", "+79001130003", "+79011110004"]
    ports = [*ports_for(numbers[:3]), port(numbers[3], 25099, index=9)]
    book = Book(
        V1State(
            open=[],
            sold=[("+79001130003", "vk")],
            last_used={"+79001110001": 50.0, "+79001120002": 10.0},
        )
    )
    live = live_numbers(ports, Names())

    def pick(**kw: object) -> list[str]:
        args: dict[str, object] = {
            "country": "russia",
            "operator": "any",
            "service": "vk",
            "masks": (),
            "rent": False,
        }
        args.update(kw)
        return [c.number for c in candidates(live, book, **args)]  # type: ignore[arg-type]

    # never used first, then least recently used; the number sold for vk is left out
    assert pick() == ["+79011110004", "+79001120002", "+79001110001"]
    assert pick(service="wa")[-1] == "+79001110001"
    assert "+79001130003" in pick(service="wa")
    assert "+79001130003" in pick(rent=True)
    assert pick(operator="Beeline") == ["+79011110004"]
    assert pick(country="RUSSIA ", operator="mts", masks=("7900112", "7900111")) == []
    assert pick(masks=("79011",)) == ["+79001120002", "+79001110001"]
    assert pick(country="ukraine") == []
    book.opened(op("+79001120002"))
    assert "+79001120002" not in pick()
    assert masked("+79001110001", ("7900",))
    assert not masked("+79001110001", ("7901",))


@pytest.mark.parametrize(
    ("status", "body", "verdict", "result"),
    [
        (200, '{"status": "SUCCESS"}', "delivered", "SUCCESS"),
        (200, '{"status":"NO_OPERATION"}', "no_operation", "NO_OPERATION"),
        (404, '{"status":"ERROR","error":"NO_OP"}', "no_operation", "NO_OP"),
        (404, "", "no_operation", "HTTP 404"),
        (404, '{"status": "ERROR"}', "no_operation", "HTTP 404"),
        (404, "<html>Not Found</html>", "retry", "HTTP 404 <html>Not Found</html>"),
        (400, '{"response": "BAD_SERVICE"}', "rejected", "BAD_SERVICE"),
        (200, "IGNORED", "rejected", "IGNORED"),
        (200, '{"status": "SERVICE_BAN"}', "rejected", "SERVICE_BAN"),
        (200, '{"status": "ERROR"}', "retry", "HTTP 200 ERROR"),
        (200, "not json at all", "retry", "HTTP 200 not json at all"),
        (429, '{"status": "TOO_MANY_ATTEMPTS"}', "retry", "HTTP 429 TOO_MANY_ATTEMPTS"),
        (503, "", "retry", "HTTP 503"),
        (201, '{"status": "SUCCESS"}', "retry", "HTTP 201 SUCCESS"),
    ],
)
def test_push_answers(status: int, body: str, verdict: str, result: str) -> None:
    assert classify(status, body) == (verdict, result)


def test_ignored_can_be_retried_by_switch() -> None:
    assert classify(200, '{"status":"IGNORED"}', retry_verdicts=True) == ("retry", "IGNORED")
    assert classify(200, '{"status":"BAD_SERVICE"}', retry_verdicts=True)[0] == "rejected"


def test_filters_match_sender_or_text_case_insensitively() -> None:
    matches = compile_filters(
        {
            "vk": FilterRule(senders=["^vk$", "vkontakte"], text=[r"\bvk\b"]),
            "wa": FilterRule(),  # no pattern: no filtering
        }
    )
    assert matches("vk", "VK", "code 1")
    assert matches("vk", "+7900", "Your VK code 12")
    assert not matches("vk", "Telegram", "code 12")
    assert matches("wa", "anyone", "anything")
    assert matches("tg", "anyone", "anything")


def test_live_numbers_are_cached_briefly_and_kept_in_use_order() -> None:
    now = [0.0]
    ports = ports_for(["+79001110001", "+79001110002", "+77011110003"])
    book = Book(V1State(open=[], sold=[], last_used={"+79001110001": 5.0}))
    live = LiveNumbers(lambda: ports, Names(), book, ttl=1.0, monotonic=lambda: now[0])
    russia = [e.number for e in live.refresh().pool("Russia")]
    assert russia == ["+79001110002", "+79001110001"]  # never used first
    assert [e.number for e in live.pool("kazakhstan")] == ["+77011110003"]
    first = next(iter(live.pool("russia")))
    live.used(first)
    assert [e.number for e in live.pool("russia")] == ["+79001110002", "+79001110001"][::-1]
    ports[1].registered = False
    now[0] = 0.5
    assert len(live.refresh().entries) == 3  # cached
    assert len(live.refresh(fresh=True).entries) == 2  # GET_SERVICES reads afresh
    ports[1].registered = True
    now[0] = 2.0
    assert len(live.refresh().entries) == 3
    assert list(live.pool("ukraine")) == []
    picked = choose(
        live.pool("russia"),
        book,
        operator="any",
        service="vk",
        masks=(),
        rent=False,
        skip={"+79001110001"},
    )
    assert picked is not None
    assert picked.number == "+79001110002"
