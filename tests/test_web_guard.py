"""The operator endpoint's token and Host check, over a real socket; the config rule."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd.config import load
from muxd.errors import ConfigError
from muxd.web import make_app, make_metrics_app
from muxd.web_guard import FAILED_LOG_INTERVAL, FailedLogins, host_allowed
from tests.test_web import FakeSource

TOKEN = "s3cret-token"


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()


@pytest.mark.parametrize("path", ["/", "/api/ports", "/api/numbers", "/metrics"])
async def test_token_guards_everything_but_the_probes(path: str) -> None:
    app = make_app(CollectorRegistry(), FakeSource(), token=TOKEN)
    async with serving(app) as url:
        assert await _status(url + path) == 401
        assert await _status(url + path, {"Authorization": "Bearer wrong"}) == 401
        assert await _status(url + path, {"Authorization": f"Bearer {TOKEN}"}) == 200
        assert await _status(url + path, {"Authorization": _basic(TOKEN)}) == 200  # a browser
        assert await _status(url + path, {"Authorization": _basic("wrong")}) == 401
        for probe in ("/healthz", "/readyz"):
            assert await _status(url + probe) == 200


async def test_a_browser_is_asked_for_the_token() -> None:
    app = make_app(CollectorRegistry(), FakeSource(), token=TOKEN)
    async with serving(app) as url, aiohttp.ClientSession() as http, http.get(url + "/") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")


async def test_without_a_token_everything_is_open_on_loopback() -> None:
    async with serving(make_app(CollectorRegistry(), FakeSource())) as url:
        assert await _status(url + "/api/ports") == 200


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:9108", True),
        ("localhost:9108", True),
        ("[::1]:9108", True),
        ("10.0.0.5", True),
        ("muxd.rack1.lan:9108", True),  # listed in http.hosts
        ("evil.example:9108", False),  # DNS rebinding: a foreign name resolving to us
        ("", False),
    ],
)
async def test_host_check_against_dns_rebinding(host: str, ok: bool) -> None:
    app = make_app(CollectorRegistry(), FakeSource(), hosts=["muxd.rack1.lan"])
    async with serving(app) as url:
        assert await _status(url + "/api/ports", {"Host": host}) == (200 if ok else 421)


def test_host_names_are_compared_without_port_and_case() -> None:
    assert host_allowed("MUXD.Rack1.LAN:80", frozenset({"muxd.rack1.lan"}))
    assert not host_allowed(None, frozenset())


async def test_metrics_on_their_own_listener_need_no_token() -> None:
    registry = CollectorRegistry()
    async with serving(make_metrics_app(registry)) as url:
        assert await _status(url + "/metrics") == 200
        assert await _status(url + "/api/ports") == 404
        assert await _status(url + "/metrics", {"Host": "evil.example"}) == 421


def test_failed_logins_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failed = FailedLogins(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="muxd.web_guard"):
        for _ in range(1000):
            failed.failed("203.0.113.9")
            now[0] += 0.01  # 1000 refusals in 10 s: one line
        now[0] = FAILED_LOG_INTERVAL + 1
        failed.failed("203.0.113.9")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[1].startswith("http: 1000 request(s) refused")


def _config(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "muxd.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n[modems]\nports = ["/dev/null*"]\n'
        f'[upstream]\nurl = "http://127.0.0.1:9"\napi_key = "k"\n[http]\n{http}\n'
    )
    return path


def test_a_token_is_required_beyond_loopback(tmp_path: Path) -> None:
    path = _config(tmp_path, 'listen = "0.0.0.0:9108"')
    with pytest.raises(ConfigError, match=r"http\.token: required when http\.listen"):
        load(path)
    load(_config(tmp_path, f'listen = "0.0.0.0:9108"\ntoken = "{TOKEN}"'))
    load(_config(tmp_path, 'listen = "[::1]:9108"'))
    with pytest.raises(ConfigError, match=r"http\.metrics_listen"):
        load(_config(tmp_path, 'metrics_listen = "nope"'))
