"""`muxd upstream` end to end against a stand-in served by the test's event loop.

The command runs its own event loop (asyncio.run), so it is called in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from muxd.cli import main
from muxd.sim.onlinesim import Onlinesim, serve
from muxd.sim.onlinesim_model import NumberSpec

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
