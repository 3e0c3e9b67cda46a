"""The tolerant readers, the PUSH_SMS verdicts and the learned settings, without a network:
each documented reading accepted, each counted, nothing else taken for success."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from muxd.metrics import Metrics
from muxd.upstream.learned import Learned
from muxd.upstream.readers import KNOWN_READINGS, error_text, read_answer, read_ids
from muxd.upstream.v1.push_policy import Attempt, PushPolicy

PROXY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("text", "ok", "code", "status", "reading"),
    [
        ('{"response": 1}', True, "", 200, ("response", "integer")),
        ('{"response": "1"}', True, "", 200, ("response", "string")),
        ('{"response": " 1 "}', True, "", 200, ("response", "string")),
        ('{"response": "NO_NUMBER"}', False, "NO_NUMBER", 400, ("error", "json_response")),
        (
            '{"response": "ERROR_WRONG_KEY"}',
            False,
            "ERROR_WRONG_KEY",
            401,
            ("error", "json_response"),
        ),
        (
            '{"error": "REQUEST_NOT_FOUND"}',
            False,
            "REQUEST_NOT_FOUND",
            405,
            ("error", "json_error"),
        ),
        ('{"response": "SOMETHING"}', False, "SOMETHING", 200, ("error", "json_response")),
        ("NO_NUMBER", False, "NO_NUMBER", 400, ("error", "text")),
        ("", False, "bad reply: ''", 200, ("error", "empty")),
        ('{"response": true}', False, 'bad reply: {"response": true}', 200, ("error", "other")),
        ('{"response": 2}', False, "2", 200, ("error", "json_response")),
        ("[1]", False, "bad reply: '[1]'", 200, ("error", "other")),
    ],
)
def test_read_answer(text: str, ok: bool, code: str, status: int, reading: tuple[str, str]) -> None:
    seen: list[tuple[str, str]] = []
    answer = read_answer(text, lambda f, r: seen.append((f, r)))
    assert (answer.ok, answer.code, answer.status) == (ok, code, status)
    assert seen == [reading]


def test_a_proxy_page_in_a_200_is_no_success() -> None:
    answer = read_answer(PROXY_PAGE)
    assert not answer.ok
    assert answer.code == "bad reply: HTML page (not an API answer): 502 Bad Gateway"


@pytest.mark.parametrize(
    ("status", "text", "location", "expected", "reading"),
    [
        (400, "NO_NUMBER", None, "NO_NUMBER", "text"),
        (400, '{"response":"NO_NUMBER"}', None, "NO_NUMBER", "json_response"),
        (401, '{"error": "ERROR_WRONG_KEY"}', None, "ERROR_WRONG_KEY", "json_error"),
        (502, PROXY_PAGE, None, "HTML page (not an API answer): 502 Bad Gateway", "html"),
        (503, "", None, "", "empty"),
        (308, "", "https://elsewhere/", "redirect to https://elsewhere/ not followed", "redirect"),
        (400, '{"detail": "x"}', None, '{"detail": "x"}', "other"),
    ],
)
def test_error_text(
    status: int, text: str, location: str | None, expected: str, reading: str
) -> None:
    seen: list[tuple[str, str]] = []
    assert error_text(status, text, location, lambda f, r: seen.append((f, r))) == expected
    assert seen == [("error", reading)]


def test_ids_as_integers_strings_or_an_empty_list() -> None:
    seen: list[tuple[str, str]] = []
    note = lambda f, r: seen.append((f, r))  # noqa: E731
    assert read_ids({"+7900": 1042, "+7901": None}, note) == {"+7900": 1042, "+7901": None}
    assert read_ids({"+7900": "1042", "+7901": "x"}, note) == {"+7900": 1042, "+7901": None}
    assert read_ids([], note) == {}
    assert seen == [("ids", "integer"), ("ids", "string"), ("ids", "empty_list")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.text())
def test_readers_never_raise_on_any_text(text: str) -> None:
    answer = read_answer(text)
    assert isinstance(answer.code, str)
    assert isinstance(error_text(400, text, None), str)


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_only_response_one_is_success(data: dict[str, object]) -> None:
    answer = read_answer(msgspec.json.encode(data).decode())
    response = data.get("response")
    expected = (response == 1 and type(response) is int) or (
        isinstance(response, str) and response.strip() == "1"
    )
    assert answer.ok == expected


@given(st.dictionaries(st.text(), st.one_of(st.none(), st.integers(min_value=0), st.text())))
def test_ids_keep_every_number(ids: dict[str, object]) -> None:
    assert set(read_ids(ids)) == set(ids)


def test_every_reading_is_on_metrics_at_zero() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    for name, values in KNOWN_READINGS.items():
        for value in values:
            sample = registry.get_sample_value(
                "muxd_upstream_reading_total", {"field": name, "reading": value}
            )
            assert sample == 0.0, (name, value)


# --- PUSH_SMS verdicts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "status", "body", "verdict"),
    [
        ("http200", 200, '{"status": "SUCCESS"}', "delivered"),
        ("http200", 200, '{"status": "ERROR"}', "delivered"),
        ("http200", 200, "", "delivered"),
        ("http200", 200, '{"result": "ok"}', "delivered"),
        ("http200", 200, PROXY_PAGE, "retry"),
        ("http200", 200, '{"status": "TOO_MANY_ATTEMPTS"}', "retry"),
        ("http200", 200, '{"status": "NO_OPERATION"}', "no_operation"),
        ("http200", 200, '{"status": "IGNORED"}', "rejected"),
        ("http200", 404, "", "no_operation"),
        ("http200", 404, "<html>Not Found</html>", "retry"),
        ("http200", 503, "", "retry"),
        ("http200", 307, "", "retry"),
        ("status", 200, '{"status": "SUCCESS"}', "delivered"),
        ("status", 200, '{"status": "ERROR"}', "retry"),
        ("status", 200, "", "retry"),
        ("status", 200, '{"result": "ok"}', "retry"),
    ],
)
def test_push_verdicts(rule: str, status: int, body: str, verdict: str) -> None:
    policy = PushPolicy(success=rule, gzip_body=False)  # type: ignore[arg-type]
    assert policy.verdict(status, body, attempt=Attempt(b""))[0] == verdict


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (415, "Unsupported Media Type", True),
        (400, "", True),
        (200, '{"status": "ERROR", "error": "Syntax error"}', True),
        (500, "cannot decode request body", True),
        (200, '{"status": "ERROR"}', False),  # http200: delivered, as the current pages say
        (200, '{"result": "ok", "format": "json"}', False),  # "json" outside the error fields
        (200, '{"status": "ERROR", "message": "Malformed JSON"}', True),
        (200, '{"status": "SUCCESS"}', False),
        (200, '{"status": "NO_OPERATION"}', False),
        (503, PROXY_PAGE, False),
    ],
)
def test_gzip_refusal_switches_to_plain(
    tmp_path: Path, status: int, body: str, refused: bool
) -> None:
    policy = PushPolicy(learned=Learned(tmp_path / "learned.json"))
    attempt = policy.encode({"a": 1})
    assert attempt.gzipped
    verdict, _result = policy.verdict(status, body, attempt=attempt)
    assert policy.gzip is not refused
    if refused:
        assert verdict == "retry"
        assert policy.encode({"a": 1}) == Attempt(b'{"a":1}')
        assert PushPolicy(learned=Learned(tmp_path / "learned.json")).gzip is False
        # A configuration saying plain JSON needs nothing learned; one saying gzip again
        # after an operator's change would start afresh.
        assert PushPolicy(gzip_body=False, learned=Learned(tmp_path / "learned.json")).gzip is False


def test_body_shape_switches() -> None:
    body = {"phone": "79001110001", "service": "rent", "text": "x"}
    assert PushPolicy().shape(dict(body)) == body
    shaped = PushPolicy(phone_type="integer", rent_case="RENT").shape(dict(body))
    assert shaped == {"phone": 79001110001, "service": "RENT", "text": "x"}


def test_learned_file_survives_garbage_and_config_changes(tmp_path: Path) -> None:
    path = tmp_path / "learned.json"
    path.write_text("{not json")
    learned = Learned(path)  # unreadable: learn again, do not fail
    assert learned.get("k", "GET") == "GET"
    learned.learn("k", "GET", "POST", "test")
    assert json.loads(path.read_text()) == {"k": {"configured": "GET", "learned": "POST"}}
    again = Learned(path)
    assert again.get("k", "GET") == "POST"
    assert again.get("k", "POST") == "POST"  # the operator now configures what was learned
    assert again.get("k", "PUT") == "PUT"  # another configured value: start afresh
    again.learn("k", "GET", "GET", "back")  # learned value equals configured: forgotten
    assert json.loads(path.read_text()) == {}


def test_refusals_in_flight_together_move_the_reading_once(tmp_path: Path) -> None:
    policy = PushPolicy(gzip_body=False, learned=Learned(tmp_path / "learned.json"))
    body = {"phone": "79001110001", "service": "rent"}
    first = policy.encode(policy.shape(dict(body)))
    second = policy.encode(policy.shape(dict(body)))
    assert (first.phone_type, first.rent_case) == ("string", "rent")
    assert policy.verdict(400, '{"status": "ERROR"}', attempt=first)[0] == "retry"
    assert policy.verdict(400, '{"status": "ERROR"}', attempt=second)[0] == "retry"
    assert (policy.phone_type, policy.rent_case) == ("integer", "rent")  # one step, not two
    third = policy.encode(policy.shape(dict(body)))
    assert third.data == b'{"phone":79001110001,"service":"rent"}'
    assert policy.verdict(200, "", attempt=third)[0] == "delivered"
    assert PushPolicy(learned=Learned(tmp_path / "learned.json")).phone_type == "integer"
    # A 429-like refusal in a 400 is no reason to change the body.
    assert policy.verdict(400, "TOO_MANY_ATTEMPTS", attempt=policy.encode(body))[0] == "retry"
    assert policy.phone_type == "integer"


def test_an_id_with_a_control_character_is_null_not_a_crash() -> None:
    # str.strip() takes \x1f as white space, int() does not.
    assert read_ids({"+79001234567": "0\x1f", "+79001234568": " 42 "}) == {
        "+79001234567": None,
        "+79001234568": 42,
    }


def test_an_id_the_journal_cannot_store_is_null() -> None:
    assert read_ids(
        {"+7901": "9" * 5000, "+7902": "18446744073709551615", "+7903": 2**64, "+7904": -1}
    ) == dict.fromkeys(("+7901", "+7902", "+7903", "+7904"))
    assert read_ids({"+7905": str(2**63 - 1), "+7906": 2**63 - 1}) == {
        "+7905": 2**63 - 1,
        "+7906": 2**63 - 1,
    }
