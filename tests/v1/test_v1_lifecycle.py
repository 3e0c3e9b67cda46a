"""The v1 operation lifecycle on a real service, journal and stand-in: only FINISH closes by
default; the optional local expiry frees the number but keeps pushing; SMS are matched by
their own time; wall-clock steps neither expire nor orphan anything; old rows are pruned."""

from __future__ import annotations

from muxd.upstream.v1.operations import operation_counts
from muxd.upstream.v1.opmatch import SMSC_SKEW, UNMATCHED_WAIT
from muxd.upstream.v1.pusher import IDLE_POLL
from muxd.upstream.v1.server import RESERVATION
from muxd.upstream.v1.service import EXPIRY_CHECK

from .conftest import RUSSIA, Env, ports_for, wait_stats

HOUR = 3600.0
GRACE = 60.0
HOLD = RESERVATION + GRACE


def plus(answer: dict[str, object]) -> str:
    return f"+{answer['number']}"


async def test_by_default_only_finish_closes(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_grace=GRACE) as svc:
        op = await env.driver.get_number("russia", service="vk")
        await env.clock.advance(2 * HOUR)  # far past 15 minutes: nothing expires
        assert await svc.expire_due() == []
        assert op["activationId"] in svc.book.open_by_id
        assert (await env.driver.get_number("russia", service="wa"))["status"] == "NO_NUMBERS"
        await env.sms(plus(op), "VK", "late but wanted")
        (push,) = await env.driver.wait_pushes(1)
        assert push.body["smsId"] == push.sms_id
        assert await env.driver.finish(op["activationId"], 3) == {"status": "SUCCESS"}
        assert svc.book.open_by_id == {}
    counts = await operation_counts(env.journal)
    assert counts["operations_finished"] == 1
    assert "operations_expired" not in counts
    assert env.driver.failed() == [], env.driver.report()


async def test_local_expiry_frees_the_number_but_keeps_pushing(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_grace=GRACE, reservation_expiry=True) as svc:
        first = await env.driver.get_number("russia", service="vk")
        await env.clock.advance(HOLD + EXPIRY_CHECK)
        await env.observer.wait_for(lambda: env.observer.open_counts[-1] == 0)
        # expired here, still open upstream: an SMS now is the first client's
        await env.clock.advance(SMSC_SKEW * 2)
        await env.sms(plus(first), "VK", "for the first client")
        (p1,) = await env.driver.wait_pushes(1)
        # the number is for sale again; SMS from the new operation on go to it
        await env.clock.advance(SMSC_SKEW * 2)
        second = await env.driver.get_number("russia", service="wa")
        assert second["number"] == first["number"]
        await env.clock.advance(SMSC_SKEW * 2)
        await env.sms(plus(second), "WhatsApp", "for the second client")
        _, p2 = await env.driver.wait_pushes(2)
        # the late FINISH of the first is recorded; the second stays open
        assert await env.driver.finish(first["activationId"], 3) == {"status": "SUCCESS"}
        assert second["activationId"] in svc.book.open_by_id
    assert p1.text == "for the first client"
    assert p2.text == "for the second client"
    rows = await env.journal.execute(
        lambda c: c.execute("SELECT p.activation_id FROM pushes p ORDER BY p.sms_id").fetchall()
    )
    assert [r[0] for r in rows] == [first["activationId"], second["activationId"]]


async def test_no_operation_answer_ends_an_expired_window(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_grace=GRACE, reservation_expiry=True):
        op = await env.driver.get_number("russia", service="vk")
        await env.clock.advance(HOLD + EXPIRY_CHECK)
        await env.observer.wait_for(lambda: env.observer.open_counts[-1] == 0)
        env.driver.script((404, '{"status": "NO_OPERATION"}'))
        await env.sms(plus(op), "VK", "Onlinesim closed it already")
        await env.observer.wait_for(lambda: "no_operation" in env.observer.pushes)
        await env.clock.advance(SMSC_SKEW * 2)
        await env.sms(plus(op), "VK", "not pushed again")
        await env.observer.wait_for(lambda: "unassigned" in env.observer.pushes)
    assert len(env.driver.pushes) == 1


async def push_targets(env: Env) -> list[tuple[str, int]]:
    rows = await env.journal.execute(
        lambda c: c.execute(
            "SELECT m.text, p.activation_id FROM pushes p JOIN messages m ON m.id = p.message_id"
            " ORDER BY p.sms_id"
        ).fetchall()
    )
    return [(str(t), int(a)) for t, a in rows]


async def test_sms_are_matched_by_their_own_time(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_grace=GRACE, reservation_expiry=True):
        before = env.clock() - 10 * SMSC_SKEW
        await env.clock.advance(SMSC_SKEW)
        first = await env.driver.get_number("russia", service="vk")
        during_first = env.clock() + 30
        # reached the SIM before the operation, read during it: not the client's
        await env.sms(plus(first), "VK", "previous owner's code", stamp=before)
        await env.observer.wait_for(lambda: "unassigned" in env.observer.pushes)
        # expired locally, sold again: a code that reached the SIM during the first
        # operation but is read now belongs to the first client, not to the second
        await env.clock.advance(HOLD + EXPIRY_CHECK)
        await env.observer.wait_for(lambda: env.observer.open_counts[-1] == 0)
        second = await env.driver.get_number("russia", service="wa")
        assert second["number"] == first["number"]
        await env.clock.advance(60)
        await env.sms(plus(first), "VK", "read late", stamp=during_first)
        await env.driver.wait_pushes(1)
    assert await push_targets(env) == [("read late", first["activationId"])]


async def test_a_wall_clock_step_expires_nothing_early(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    async with env.serving(reservation_grace=GRACE, reservation_expiry=True) as svc:
        a = await env.driver.get_number("russia", service="vk")
        env.clock.step(+HOUR)
        await env.clock.advance(60)
        await env.driver.get_services()  # a round trip: the expiry loop had every chance
        b = await env.driver.get_number("russia", service="vk")
        assert b["status"] == "SUCCESS"
        env.clock.step(-2 * HOUR)
        await env.clock.advance(HOLD - 2 * EXPIRY_CHECK)
        await env.driver.get_services()
        assert set(svc.book.open_by_id) == {a["activationId"], b["activationId"]}
        # and nothing is kept late either: each ends one hold after it began
        await env.clock.advance(2 * EXPIRY_CHECK + 1)
        await env.observer.wait_for(lambda: set(svc.book.open_by_id) == {b["activationId"]})
        await env.clock.advance(60)
        await env.observer.wait_for(lambda: svc.book.open_by_id == {})


async def test_a_wall_clock_step_orphans_no_sms(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    async with env.serving() as svc:
        a = await env.driver.get_number("russia", service="vk")
        b = await env.driver.get_number("russia", service="wa")
        await env.clock.advance(60)
        env.clock.step(-HOUR)
        # read after the step; its stamp is no help (the read time stands in for it)
        await env.sms(plus(a), "VK", "code after a step back")
        env.clock.step(+2 * HOUR)
        await env.clock.advance(60)
        await env.sms(plus(b), "WhatsApp", "code after a step forward")
        pushes = await env.driver.wait_pushes(2)
        await env.observer.wait_for(lambda: env.observer.pushes.count("success") == 2)
        assert sorted(p.text for p in pushes) == [
            "code after a step back",
            "code after a step forward",
        ]
        assert svc.pusher.queued == 0
    stats = await env.journal.stats()
    assert stats["messages_delivered"] == 2
    assert "messages_no_operation" not in stats
    assert "messages_unmatched" not in stats


async def test_sms_without_operation_is_looked_at_again_after_a_step(env: Env) -> None:
    """Restarted with the wall clock an hour behind: an SMS read then finds no operation;
    once the clock is set right (a step), it finds the one it belongs to."""
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving():
        op = await env.driver.get_number("russia", service="vk")
    await env.clock.advance(60)
    env.clock.step(-HOUR)
    async with env.serving():
        await env.sms(plus(op), "VK", "code")  # its stamp is no help: read time stands in
        await env.observer.wait_for(lambda: "unassigned" in env.observer.pushes)
        assert env.driver.pushes == []
        env.clock.step(+HOUR)  # NTP
        await env.clock.advance(IDLE_POLL)
        (push,) = await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: "success" in env.observer.pushes)
    assert push.text == "code"
    assert env.journal.backlog == 0


async def test_unmatched_sms_wait_a_bounded_time(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving():
        await env.sms(RUSSIA[0], "Spam", "nobody's")
        await env.observer.wait_for(lambda: "unassigned" in env.observer.pushes)
        await env.clock.advance(UNMATCHED_WAIT - 1)
        assert (await env.journal.stats())["messages_unmatched"] == 1
        await wait_stats(env, "messages_no_operation", 1, tick=IDLE_POLL)
    assert env.driver.pushes == []
    assert env.journal.backlog == 0


async def test_restart_keeps_what_is_left_of_a_hold(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:1])
    async with env.serving(reservation_expiry=True, reservation_grace=GRACE):
        op = await env.driver.get_number("russia", service="vk")
    await env.clock.advance(HOLD / 2)
    env.clock.step(-HOUR)  # the box restarted with its clock an hour behind
    async with env.serving(reservation_expiry=True, reservation_grace=GRACE) as svc:
        await env.clock.advance(HOLD - EXPIRY_CHECK - 1)
        await env.driver.get_services()
        assert op["activationId"] in svc.book.open_by_id
        await env.clock.advance(2 * EXPIRY_CHECK)  # never more than one whole hold
        await env.observer.wait_for(lambda: svc.book.open_by_id == {})


async def test_closed_operations_pushes_and_sales_are_pruned(env: Env) -> None:
    env.ports = ports_for(RUSSIA[:2])
    retention = 7 * 86400.0
    async with env.serving(retention=retention) as svc:
        sold = await env.driver.get_number("russia", service="vk")
        await env.sms(plus(sold), "VK", "code")
        await env.driver.wait_pushes(1)
        await env.observer.wait_for(lambda: "success" in env.observer.pushes)
        await env.driver.finish(sold["activationId"], 3)
        kept = await env.driver.get_number("russia", service="wa")
        assert svc.book.is_sold(plus(sold), "vk")
        await env.clock.advance(retention - 60)
        await svc.prune_once(retention)
        counts = await operation_counts(env.journal)
        assert (counts["operations_finished"], counts["pushes_delivered"]) == (1, 1)
        await env.clock.advance(120)
        await svc.prune_once(retention)
        counts = await operation_counts(env.journal)
        assert counts == {"operations_open": 1, "sold": 0}
        assert not svc.book.is_sold(plus(sold), "vk")
        assert kept["activationId"] in svc.book.open_by_id
