"""PUSH_SMS against the stand-in: exact fields, once, retries on the injected clock, the answers
that stop retries, filtering, rent, and restarts."""

from __future__ import annotations

from muxd.config import FilterRule
from muxd.upstream.v1.operations import operation_counts
from muxd.upstream.v1.opmatch import SMSC_SKEW, UNMATCHED_WAIT
from muxd.upstream.v1.pusher import IDLE_POLL, PUSH_RETRY

from .conftest import KEY, RUSSIA, Env, ports_for, wait_stats


async def open_one(env: Env, service: str = "vk", **kw: object) -> dict[str, object]:
    answer = await env.driver.get_number("russia", "any", service, **kw)  # type: ignore[arg-type]
    assert answer["status"] == "SUCCESS", answer
    return answer


def plus(answer: dict[str, object]) -> str:
    return f"+{answer['number']}"


async def test_sms_is_pushed_once_with_exact_fields(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving() as svc:
        op = await open_one(env)
        await env.sms(plus(op), "VK", "Ваш код 123456")
        (push,) = await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: "success" in env.observer.pushes)
        assert push.answer == "SUCCESS"
        assert push.gzip
        assert not push.rent_url
        assert push.body == {
            "smsId": push.sms_id,
            "phoneFrom": "VK",
            "phone": str(op["number"]),
            "text": "Ваш код 123456",
            "action": "PUSH_SMS",
            "key": KEY,
        }
        assert push.user_agent is not None
        assert push.user_agent.startswith("muxd/")
        assert svc.pusher.queued == 0
    stats = await env.journal.stats()
    assert stats["messages_delivered"] == 1
    assert env.journal.backlog == 0
    assert env.driver.failed() == [], env.driver.report()


async def test_failed_push_is_resent_identically_after_10_s(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    env.driver.script(503, (500, "oops"))
    async with env.serving():
        op = await open_one(env)
        await env.sms(plus(op), "VK", "code 1")
        await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: env.observer.pushes.count("retry") == 1)
        await env.clock.advance(PUSH_RETRY - 1)
        await env.driver.get_services()  # a round trip: the pusher had every chance to run
        assert len(env.driver.pushes) == 1
        await env.clock.advance(1)
        await env.driver.wait_pushes(2)
        await env.observer.wait_for(lambda: env.observer.pushes.count("retry") == 2)
        await env.clock.advance(PUSH_RETRY)
        first, second, third = await env.driver.wait_pushes(3)
    assert [p.answer for p in (first, second, third)] == ["HTTP 503", "HTTP 500", "SUCCESS"]
    assert first.body == second.body == third.body
    counts = await operation_counts(env.journal)
    assert counts["pushes_delivered"] == 1
    assert env.driver.failed() == [], env.driver.report()


async def test_answers_that_end_retries_are_recorded(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    env.driver.script("NO_OPERATION", "BAD_SERVICE", "IGNORED", "SERVICE_BAN")
    async with env.serving():
        op = await open_one(env)
        for k in range(4):
            await env.sms(plus(op), "VK", f"code {k}")
            await env.driver.wait_pushes(k + 1)
        await env.observer.wait_for(lambda: len(env.observer.pushes) == 4)
        await env.clock.advance(PUSH_RETRY * 3)
        # a fifth SMS goes through; none of the four refused ones was sent again
        await env.sms(plus(op), "VK", "code 4")
        pushes = await env.driver.wait_pushes(5)
        await env.observer.wait_for(lambda: "success" in env.observer.pushes)
    assert [p.answer for p in pushes] == [
        "NO_OPERATION",
        "BAD_SERVICE",
        "IGNORED",
        "SERVICE_BAN",
        "SUCCESS",
    ]
    assert len({p.sms_id for p in pushes}) == 5
    assert env.observer.pushes[:4] == ["no_operation", "bad_service", "ignored", "service_ban"]
    counts = await operation_counts(env.journal)
    assert counts == {
        "operations_open": 1,
        "pushes_no_operation": 1,
        "pushes_rejected": 3,
        "pushes_delivered": 1,
        "sold": 0,
    }
    stats = await env.journal.stats()
    assert stats["messages_no_operation"] == 1
    assert stats["messages_rejected"] == 3
    assert env.journal.backlog == 0


async def test_ignored_is_retried_with_the_switch(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    env.driver.script("IGNORED")
    async with env.serving(retry_verdicts=True):
        op = await open_one(env)
        await env.sms(plus(op), "VK", "code")
        await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: env.observer.pushes == ["retry"])
        await env.clock.advance(PUSH_RETRY)
        pushes = await env.driver.wait_pushes(2)
    assert [p.answer for p in pushes] == ["IGNORED", "SUCCESS"]


async def test_sms_without_an_operation_stays_in_the_journal(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving():
        await env.sms(RUSSIA[0], "VK", "nobody asked")
        await env.observer.wait_for(lambda: env.observer.pushes == ["unassigned"])
        await env.clock.advance(SMSC_SKEW + 1)  # reached the SIM before the operation
        op = await open_one(env)
        await env.sms(plus(op), "VK", "code")
        pushes = await env.driver.wait_pushes(1)
        stats = await env.journal.stats()
        assert stats["messages_unmatched"] == 1  # looked at again while operations change
        await env.clock.advance(UNMATCHED_WAIT)
        await wait_stats(env, "messages_no_operation", 1, tick=IDLE_POLL)
    assert [p.text for p in pushes] == ["code"]
    stats = await env.journal.stats()
    assert stats == {"messages_no_operation": 1, "messages_delivered": 1, "parts_assembled": 2}


async def test_local_filter(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    rules = {"vk": FilterRule(senders=["^vk$"], text=[r"\bvk\b"])}
    async with env.serving(filter=rules):
        op = await open_one(env, "vk")
        await env.sms(plus(op), "Telegram", "Telegram code 1")
        await env.observer.wait_for(lambda: env.observer.pushes == ["filtered"])
        await env.sms(plus(op), "+79161234567", "Your VK code 2")
        await env.sms(plus(op), "VK", "code 3")
        pushes = await env.driver.wait_pushes(2)
    assert [p.text for p in pushes] == ["Your VK code 2", "code 3"]
    assert (await operation_counts(env.journal))["pushes_filtered"] == 1
    assert (await env.journal.stats())["messages_filtered"] == 1


async def test_rent_goes_to_the_rent_url_unfiltered(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    rules = {"rent": FilterRule(senders=["^nobody$"]), "vk": FilterRule(senders=["^nobody$"])}
    async with env.serving(filter=rules):
        op = await open_one(env, "rent", rent=True)
        await env.sms(plus(op), "Instagram", "784958 is your code")
        (push,) = await env.driver.wait_pushes(1)
    assert push.rent_url
    assert push.answer == "SUCCESS"
    assert push.body["service"] == "rent"
    assert push.body["phone"] == str(op["number"])
    assert env.driver.failed() == [], env.driver.report()


async def test_pushes_of_one_number_keep_their_order(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    env.driver.script(503)
    async with env.serving():
        op = await open_one(env)
        await env.sms(plus(op), "VK", "first")
        await env.driver.wait_pushes(1)
        await env.sms(plus(op), "VK", "second")
        other = await open_one(env, "wa")
        await env.sms(plus(other), "WA", "other number")
        await env.driver.wait_pushes(2)  # the other number is not held up
        assert env.driver.pushes[1].text == "other number"
        await env.clock.advance(PUSH_RETRY)
        pushes = await env.driver.wait_pushes(4)
    assert [p.text for p in pushes] == ["first", "other number", "first", "second"]


async def test_restarts_resend_unacknowledged_and_never_acknowledged(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    env.driver.script(503)
    async with env.serving():
        op = await open_one(env)
        await env.sms(plus(op), "VK", "delivered later")
        await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: env.observer.pushes == ["retry"])
    async with env.serving():  # restart: the pending push goes out at once, same smsId
        first, second = await env.driver.wait_pushes(2)
        assert first.body == second.body
        assert second.answer == "SUCCESS"
        await env.observer.wait_for(lambda: "success" in env.observer.pushes)
    async with env.serving():  # restart: nothing is sent again
        await env.sms(plus(op), "VK", "next")
        pushes = await env.driver.wait_pushes(3)
    assert [p.text for p in pushes] == ["delivered later"] * 2 + ["next"]
    assert env.driver.failed() == [], env.driver.report()


async def test_sms_id_switch_and_plain_bodies(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    async with env.serving(sms_id="activation", gzip_push=False):
        op = await open_one(env)
        await env.sms(plus(op), "VK", "code")
        (push,) = await env.driver.wait_pushes(1)
    assert push.sms_id == op["activationId"]
    assert not push.gzip
