"""The PUSH_SMS pusher against every dialect of the v1 stand-in: with the right switch, or by
the automatic gzip fallback, every SMS is stored exactly once (counted at the stand-in)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from muxd.upstream.learned import FILE_NAME, Learned
from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.operations import operation_counts
from muxd.upstream.v1.push_policy import PushPolicy
from muxd.upstream.v1.pusher import PUSH_RETRY
from muxd_sim.onlinesim_dialects import V1_DIALECTS, parse_dialects

from .conftest import KEY, RUSSIA, Env, make_config, ports_for, running

SMS_PER_CASE = 3
# Retry rounds a case may need (a gzip refusal costs one); more means it never delivers.
MAX_ROUNDS = 5

# dialect -> the PushPolicy options that talk it (none: the defaults, or automatic fallback)
MATRIX: dict[str, dict[str, Any]] = {
    "strict": {},
    "push-no-status": {},
    "push-status-error": {},
    "push-empty": {},
    "gzip-refused": {},
    "gzip-garbled": {},
    "phone-integer": {"phone_type": "integer"},
    "rent-upper": {"rent_case": "RENT"},
}
assert set(MATRIX) - {"strict"} == V1_DIALECTS


def learned_path(env: Env) -> Any:
    return env.tmp / "state" / FILE_NAME


def policy(env: Env, **options: Any) -> PushPolicy:
    return PushPolicy(learned=Learned(learned_path(env)), **options)


@contextlib.asynccontextmanager
async def serving(env: Env, push_policy: PushPolicy, **overrides: Any) -> AsyncIterator[V1Service]:
    svc = V1Service(
        make_config(env.driver, **overrides),
        KEY,
        env.journal,
        lambda: env.ports,
        env.http,
        clock=env.clock,
        sleep=env.clock.sleep,
        monotonic=env.clock.monotonic,
        observer=env.observer,
        push_policy=push_policy,
    )
    async with running(svc):
        env.driver.base_url = f"http://127.0.0.1:{svc.port}"
        yield svc


async def deliver(env: Env, count: int) -> None:
    """Until ``count`` pushes were delivered, moving the clock on after each failed round."""
    obs = env.observer
    for _ in range(MAX_ROUNDS):
        retries = obs.pushes.count("retry")
        await obs.wait_for(
            lambda seen=retries: (  # type: ignore[misc]
                obs.pushes.count("success") >= count or obs.pushes.count("retry") > seen
            )
        )
        if obs.pushes.count("success") >= count:
            return
        await env.clock.advance(PUSH_RETRY)
    raise AssertionError(f"not delivered after {MAX_ROUNDS} rounds: {obs.pushes}")


@pytest.mark.parametrize("dialect", sorted(MATRIX))
async def test_pusher_delivers_once_in_every_dialect(env: Env, dialect: str) -> None:
    env.driver.dialects = parse_dialects([] if dialect == "strict" else [dialect], V1_DIALECTS)
    env.ports = ports_for(RUSSIA)
    rent = dialect == "rent-upper"
    async with serving(env, policy(env, **MATRIX[dialect])):
        op = await env.driver.get_number("russia", "any", "rent" if rent else "vk", rent=rent)
        assert op["status"] == "SUCCESS", op
        for k in range(SMS_PER_CASE):
            await env.sms(f"+{op['number']}", "VK", f"code {k}")
        await deliver(env, SMS_PER_CASE)
    stored = env.driver.stored()
    assert sorted(p.text for p in stored) == [f"code {k}" for k in range(SMS_PER_CASE)]
    assert len({p.sms_id for p in stored}) == SMS_PER_CASE  # none stored twice
    counts = await operation_counts(env.journal)
    assert counts["pushes_delivered"] == SMS_PER_CASE
    assert env.journal.backlog == 0
    assert env.driver.failed() == [], env.driver.report()
    if rent:
        assert {p.body["service"] for p in stored} == {"RENT"}
    if dialect == "phone-integer":
        assert {type(p.phone) for p in stored} == {int}


@pytest.mark.parametrize("dialect", ["gzip-refused", "gzip-garbled"])
async def test_gzip_refusal_falls_back_to_plain_json_and_remembers_it(
    env: Env, dialect: str
) -> None:
    env.driver.dialects = frozenset({dialect})
    env.ports = ports_for(RUSSIA)
    async with serving(env, policy(env)):
        op = await env.driver.get_number("russia", "any", "vk")
        await env.sms(f"+{op['number']}", "VK", "code 1")
        await deliver(env, 1)
    first, second = env.driver.pushes
    assert (first.gzip, first.answer) == (True, "GZIP REFUSED")
    assert (second.gzip, second.answer) == (False, "SUCCESS")
    assert first.body == second.body
    saved = json.loads(learned_path(env).read_text())
    assert saved == {"v1.gzip_push": {"configured": True, "learned": False}}
    # After a restart the first push is plain at once.
    async with serving(env, policy(env)):
        await env.sms(f"+{op['number']}", "VK", "code 2")
        await deliver(env, 2)
    assert [p.gzip for p in env.driver.pushes] == [True, False, False]


async def test_status_rule_resends_a_200_without_success(env: Env) -> None:
    # v1.push_success = "status" (the older page): a 200 without status SUCCESS is not
    # delivered; the stand-in speaking "push-no-status" stores it each time.
    env.driver.dialects = frozenset({"push-no-status"})
    env.ports = ports_for(RUSSIA)
    async with serving(env, policy(env, success="status")):
        op = await env.driver.get_number("russia", "any", "vk")
        await env.sms(f"+{op['number']}", "VK", "code")
        await env.observer.wait_for(lambda: env.observer.pushes == ["retry"])
        await env.clock.advance(PUSH_RETRY)
        await env.observer.wait_for(lambda: env.observer.pushes == ["retry", "retry"])
    assert [p.answer for p in env.driver.pushes] == ["SUCCESS", "SUCCESS"]
    assert (await operation_counts(env.journal)).get("pushes_delivered", 0) == 0


async def test_a_redirect_is_not_followed(env: Env) -> None:
    # A 307 to another URL would re-post the key and the SMS text there (aiohttp follows it
    # by default): muxd never follows, the push waits for its retry instead.
    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": env.driver.push_url})

    app = web.Application()
    app.router.add_post("/v1/PUSH_SMS", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/PUSH_SMS"
    env.ports = ports_for(RUSSIA)
    try:
        async with serving(env, policy(env), push_sms_url=url) as svc:
            op = await env.driver.get_number("russia", "any", "vk")
            await env.sms(f"+{op['number']}", "VK", "secret code")
            await env.observer.wait_for(lambda: env.observer.pushes == ["retry"])
            error = svc.pusher.last_error
    finally:
        await runner.cleanup()
    assert env.driver.pushes == []
    assert error == f"HTTP 307: redirect to {env.driver.push_url} not followed"


@pytest.mark.parametrize(
    ("dialect", "key", "learned"),
    [
        ("phone-integer", "upstream.phone_type", "integer"),
        ("rent-upper", "upstream.rent_case", "RENT"),
    ],
)
async def test_a_refused_body_tries_the_other_readings_and_remembers(
    env: Env, dialect: str, key: str, learned: str
) -> None:
    # Default switches against a receiver that only takes the older reading: the 400s make
    # muxd try the other readings; the one delivered is kept, for this and later pushes.
    env.driver.dialects = frozenset({dialect})
    env.ports = ports_for(RUSSIA)
    rent = dialect == "rent-upper"
    async with serving(env, policy(env)):
        op = await env.driver.get_number("russia", "any", "rent" if rent else "vk", rent=rent)
        await env.sms(f"+{op['number']}", "VK", "code 1")
        await deliver(env, 1)
        refused = len(env.driver.pushes) - 1
        await env.sms(f"+{op['number']}", "VK", "code 2")
        await deliver(env, 2)
    assert [p.text for p in env.driver.stored()] == ["code 1", "code 2"]
    assert len(env.driver.pushes) == refused + 2  # the second went out right first time
    assert refused == (3 if rent else 2)  # gzip, then the body's readings in turn
    saved = json.loads(learned_path(env).read_text())
    assert saved[key]["learned"] == learned
    assert {c.name.split(":")[0] for c in env.driver.failed()} <= {"push"}
    # A restart starts with what was learned.
    assert getattr(policy(env), key.split(".")[1]) == learned
