"""`muxd upstream` end to end against a stand-in served by the test's event loop.

The command runs its own event loop (asyncio.run), so it is called in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from muxd.cli import main
from muxd.config import load
from muxd.store import Journal
from muxd.upstream.v1 import V1Service
from muxd_sim.onlinesim import Onlinesim, serve
from muxd_sim.onlinesim_model import NumberSpec
from tests.v1.conftest import running

KEY = "cli-key"
A = "+79001110001"
B = "+79001110002"


@dataclass
class Env:
    stub: Onlinesim
    url: str
    tmp: Path
    capsys: pytest.CaptureFixture[str]

    def config(self, *, url: str | None = None, key: str = KEY, test: str | None = None) -> Path:
        lines = [
            f'state_dir = "{self.tmp / "state"}"',
            "[modems]",
            'ports = ["/dev/null*"]',
            "[upstream]",
            f'url = "{url or self.url}"',
            f'api_key = "{key}"',
        ]
        if test is not None:
            lines.append(f'test = "{test}"')
        path = self.tmp / "muxd.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def run(self, *argv: str, config: Path | None = None) -> tuple[int, str, str]:
        cfg = config or self.config()
        code = await asyncio.to_thread(main, ["upstream", "-c", str(cfg), *argv])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
async def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Env]:
    stub = Onlinesim(KEY)
    stub.publish(
        NumberSpec(number=n, country_id=7, operator=None, date_start=None, port_id=f"P{i}", rent=0)
        for i, n in enumerate((A, B))
    )
    served = await serve(stub, "127.0.0.1", 0)
    try:
        yield Env(stub, f"http://127.0.0.1:{served.port}", tmp_path, capsys)
    finally:
        await served.runner.cleanup()


async def test_check_number(env: Env) -> None:
    env.stub.income[A] = 76.25
    code, out, err = await env.run("check-number", A)
    assert (code, err) == (0, "")
    info = json.loads(out)
    assert (info["status"], info["number"], info["sum"], info["port_id"]) == (1, A[1:], 76.25, "P0")
    assert out.startswith("{\n  ")  # indented


async def test_take_off(env: Env) -> None:
    env.stub.income.update({A: 75.76, B: 55.0})
    code, out, _ = await env.run("take-off")
    assert code == 0
    assert [row["sum"] for row in json.loads(out)] == ["75.76", "55.00"]
    code, out, _ = await env.run("take-off", "--sum", "60")
    assert json.loads(out) == [
        {"id": str(env.stub.ids[A]), "number": A[1:], "sum": "75.76", "country": "7"}
    ]


async def test_blacklist_replaces_and_clears(env: Env) -> None:
    code, out, _ = await env.run("blacklist", "vkcom", "facebook", "vkcom")
    assert (code, json.loads(out)) == (0, {"blacklist": ["vkcom", "facebook"]})
    assert env.stub.blacklist == {"vkcom", "facebook"}
    code, out, _ = await env.run("blacklist", "--clear")
    assert (code, json.loads(out)) == (0, {"blacklist": []})
    assert env.stub.blacklist == set()


@pytest.mark.parametrize("argv", [(), ("--clear", "vkcom")], ids=["nothing", "both"])
async def test_blacklist_needs_services_or_clear_alone(env: Env, argv: tuple[str, ...]) -> None:
    code, out, err = await env.run("blacklist", *argv)
    assert (code, out) == (2, "")
    assert "--clear" in err
    assert env.stub.requests == []


async def test_blacklist_in_test_mode_stores_nothing(env: Env) -> None:
    code, _, _ = await env.run("blacklist", "vkcom", config=env.config(test="test1"))
    assert code == 0
    assert env.stub.blacklist == set()
    assert env.stub.requests[-1].endpoint == "saveConfig"


async def test_refusal_is_exit_1_with_the_reason_on_stderr(env: Env) -> None:
    code, out, err = await env.run("check-number", "79001110001")
    assert (code, out) == (1, "")
    assert err.strip() == "checkNumber: HTTP 400: NUMBER_FORMAT_ERROR"
    code, _, err = await env.run("take-off", config=env.config(key="wrong"))
    assert code == 1
    assert "HTTP 401" in err


async def test_unreachable_or_failing_server_is_exit_1(env: Env) -> None:
    env.stub.set_down(True)
    code, _, err = await env.run("take-off")
    assert (code, err.strip()) == (1, "takeOffNumbers: HTTP 503: Service Unavailable")
    env.stub.set_down(False)
    env.stub.reset_connections(1, "saveConfig")
    code, _, err = await env.run("blacklist", "vkcom")
    assert code == 1
    assert err.startswith("saveConfig: HTTP 0: ")
    closed = env.config(url="http://127.0.0.1:1")  # nothing listens on port 1
    code, _, err = await env.run("check-number", A, config=closed)
    assert code == 1
    assert "HTTP 0" in err


async def test_bad_config_is_exit_2(env: Env) -> None:
    code, out, err = await env.run("take-off", config=env.tmp / "missing.toml")
    assert (code, out) == (2, "")
    assert "cannot read" in err
    bad = env.tmp / "bad.toml"
    bad.write_text('state_dir = "x"\n[modems]\nports = ["x"]\n[upstream]\nurl = "ftp://x"\n')
    code, _, err = await env.run("take-off", config=bad)
    assert code == 2
    assert "upstream." in err
    assert env.stub.requests == []


# -- muxd upstream preflight ---------------------------------------------------------------


async def preflight(env: Env, config: Path, *extra: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["upstream", "preflight", "-c", str(config), *extra])
    captured = env.capsys.readouterr()
    return code, captured.out, captured.err


def rows(out: str) -> dict[str, str]:
    """Table line per call (first column)."""
    found: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        call = line.split("  ")[0].strip()
        if call:
            found[call] = line
    return found


def with_lines(env: Env, *extra: str, **kw: str) -> Path:
    path = env.config(**kw)
    path.write_text(path.read_text() + "\n".join(extra) + "\n", encoding="utf-8")
    return path


async def test_preflight_v2_list_mode_against_the_stand_in(env: Env) -> None:
    before = dict(env.stub.numbers)
    code, out, err = await preflight(env, env.config(), "--number", A)
    assert (code, err) == (0, ""), out
    table = rows(out)
    assert out.splitlines()[0].split() == ["CALL", "SENT", "GOT", "VERDICT", "SET"]
    for call in ("checkWork (authentication)", "sendNumbersOnline", "addMessages"):
        assert " OK" in table[call], out
    assert '"test":"test2"' not in table["sendNumbersOnline"]  # sent: the real body
    assert '"request"' in table["sendNumbersOnline"]  # got: the test2 echo
    assert "gzip" in table
    # test mode: nothing listed, nothing stored, every request authenticated
    assert env.stub.numbers == before
    assert env.stub.messages == []
    assert {r.endpoint for r in env.stub.requests} == {
        "checkWork",
        "sendNumbersOnline",
        "addMessages",
    }


async def test_preflight_v2_incremental_with_addmessages_refused(env: Env) -> None:
    env.stub.disable_add_messages(True)
    config = with_lines(env, 'numbers_mode = "incremental"')
    code, out, _ = await preflight(env, config, "--number", A)
    assert code == 0, out
    table = rows(out)
    for call in ("addNumber", "removeNumber", "addMessage (muxd's fallback)"):
        assert " OK" in table[call], out
    assert " WARN" in table["addMessages"]
    assert "sendNumbersOnline" not in table
    assert env.stub.messages == []
    assert set(env.stub.numbers) == {A, B}


async def test_preflight_unlisted_number_is_a_warning(env: Env) -> None:
    code, out, _ = await preflight(env, env.config(), "--number", "+79005550000")
    assert code == 0
    assert "a listed number" in rows(out)["addMessages"]


async def test_preflight_wrong_key_names_the_key_and_stops(env: Env) -> None:
    code, out, _ = await preflight(env, env.config(key="wrong"))
    assert code == 1
    table = rows(out)
    assert " FAIL" in table["checkWork (authentication)"]
    assert "upstream.api_key" in table["checkWork (authentication)"]
    assert "skipped" in table["(the other calls)"]
    assert {r.endpoint for r in env.stub.requests} == {"checkWork"}


async def test_preflight_test_mode_left_on_is_a_warning(env: Env) -> None:
    code, out, _ = await preflight(env, env.config(test="test1"), "--number", A)
    assert code == 0
    assert "upstream.test" in rows(out)["test mode"]


async def refusing_server(status: int, headers: dict[str, str] | None = None) -> web.AppRunner:
    async def refuse(_request: web.Request) -> web.Response:
        return web.Response(status=status, text="refused", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize(
    ("status", "headers", "key"),
    [
        (503, None, ""),
        (307, {"Location": "https://elsewhere.example/api/resellers"}, "upstream.url"),
        (403, None, "upstream.api_key"),
    ],
    ids=["503", "redirect", "403"],
)
async def test_preflight_against_a_refusing_server(
    env: Env, status: int, headers: dict[str, str] | None, key: str
) -> None:
    runner = await refusing_server(status, headers)
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        code, out, _ = await preflight(env, env.config(url=url))
    finally:
        await runner.cleanup()
    assert code == 1
    line = rows(out)["checkWork (authentication)"]
    assert " FAIL" in line
    assert key in line
    assert str(status) in line


async def test_preflight_nobody_listening(env: Env) -> None:
    code, out, _ = await preflight(env, env.config(url="http://127.0.0.1:1"))
    assert code == 1
    line = rows(out)["checkWork (authentication)"]
    assert "no answer" in line
    assert "upstream.url" in line


def v1_config(env: Env, public_url: str, *, rent: bool = True) -> Path:
    lines = [
        f'state_dir = "{env.tmp / "state"}"',
        "[modems]",
        'ports = ["/dev/null*"]',
        "[upstream]",
        'api = "v1"',
        f'api_key = "{KEY}"',
        "[v1]",
        'listen = "127.0.0.1:0"',
        f'public_url = "{public_url}"',
        'push_sms_url = "https://push.example/v1/PUSH_SMS"',
        'push_sms_rent_url = "https://push.example/pushSmsRent"',
        'services = ["vk"]',
        f"rent = {'true' if rent else 'false'}",
    ]
    path = env.tmp / "v1.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_preflight_v1_reaches_the_partner_server_and_says_what_to_tell(env: Env) -> None:
    config = v1_config(env, "http://placeholder")
    cfg = load(config)
    journal = await Journal.open(env.tmp / "state")
    try:
        async with aiohttp.ClientSession() as http:
            svc = V1Service(cfg.v1, KEY, journal, list, http)
            async with running(svc):
                public = f"http://127.0.0.1:{svc.port}"
                code, out, _ = await preflight(env, v1_config(env, public + "/"))
    finally:
        await journal.close()
    assert code == 0, out
    table = rows(out)
    for call in ("GET_SERVICES via /", "GET_SERVICES via /getServices", "wrong key refused"):
        assert " OK" in table[call], out
    assert KEY not in out  # the key is never printed
    assert f"{public}/getNumber" in out
    assert f"{public}/finishActivationRent" in out
    assert 'JSON body field "key"' in out
    assert "https://push.example/v1/PUSH_SMS" in out
    assert "https://push.example/pushSmsRent" in out


async def test_preflight_v1_without_a_running_server(env: Env) -> None:
    code, out, _ = await preflight(env, v1_config(env, "http://127.0.0.1:1", rent=False))
    assert code == 1
    line = rows(out)["GET_SERVICES via /"]
    assert " FAIL" in line
    assert "muxd run -c FILE" in line
    assert "getNumberRent" not in out
