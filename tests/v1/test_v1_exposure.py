"""The v1 partner server facing the Internet, over real sockets: TLS from the config, a body
cap, a cap on requests at once, no key in the URL, failed logins logged once a minute, phone
numbers masked in INFO lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from muxd.config import load
from muxd.errors import ConfigError
from muxd.upstream.v1 import edge
from muxd.upstream.v1.edge import (
    BUSY_RETRY_AFTER,
    MAX_BODY_BYTES,
    MAX_CONCURRENT_REQUESTS,
    tls_context,
)
from muxd.web_guard import FAILED_LOG_INTERVAL

from .conftest import KEY, RUSSIA, WAIT, Env, ports_for

SERVER_LOGGER = "muxd.upstream.v1.server"
GET_NUMBER = {
    "action": "GET_NUMBER",
    "key": KEY,
    "country": "russia",
    "operator": "any",
    "service": "vk",
    "sum": 10,
}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(tmp: Path, name: str = "server") -> tuple[Path, Path]:
    """A fresh P-256 key and a self-signed certificate for 127.0.0.1 and localhost."""
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    )  # fmt: skip
    return cert, key


async def post(
    env: Env, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with env.http.post(url, data=body, headers=headers or {}) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def held_open(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` requests whose headers promise 100 bytes of body and only 10 arrive: each
    sits in the handler, reading, until the rest comes."""
    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"action":'
        )
        await writer.drain()
        held.append((reader, writer))
    return held


async def until(predicate: object, timeout: float = WAIT) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the server's own counter, nothing to await
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def closing(writers: list[asyncio.StreamWriter]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for writer in writers:
            writer.close()


# -- TLS ------------------------------------------------------------------------------------------


async def test_tls_from_the_config_serves_https(env: Env, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    env.ports = ports_for(RUSSIA)
    trust = ssl.create_default_context(cafile=str(cert))
    async with (
        env.serving(tls_cert=str(cert), tls_key=str(key)) as svc,
        aiohttp.ClientSession() as https,
    ):
        url = f"https://127.0.0.1:{svc.port}/"
        body = orjson.dumps({"action": "GET_SERVICES", "key": KEY})
        async with https.post(url, data=body, ssl=trust) as resp:
            assert resp.status == 200
            assert orjson.loads(await resp.read())["status"] == "SUCCESS"
        # plain HTTP on the TLS port gets no v1 answer
        with pytest.raises(aiohttp.ClientError):
            async with https.post(f"http://127.0.0.1:{svc.port}/", data=body) as resp:
                await resp.read()
        # a client that does not trust the certificate is not served either
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with https.post(url, data=body) as resp:
                await resp.read()


def base_config(tmp: Path, lines: str) -> Path:
    path = tmp / "muxd.toml"
    path.write_text(
        'state_dir = "/tmp/x"\n[modems]\nports = ["/dev/null*"]\n'
        '[upstream]\napi = "v1"\napi_key = "k"\n'
        '[v1]\npush_sms_url = "https://push.example/v1/PUSH_SMS"\nservices = ["vk"]\n' + lines
    )
    return path


def test_tls_keys_load_from_a_config(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    cfg = load(base_config(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{key}"\n'))
    assert (cfg.v1.tls_cert, cfg.v1.tls_key) == (str(cert), str(key))
    assert isinstance(tls_context(cfg.v1.tls_cert, cfg.v1.tls_key), ssl.SSLContext)


def test_bad_tls_settings_name_the_key_and_the_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    encrypted = tmp_path / "encrypted.key"
    openssl("pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:secret")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (f'tls_cert = "{cert}"\n', r"v1\.tls_key: set v1\.tls_cert and v1\.tls_key together"),
        (f'tls_key = "{key}"\n', r"v1\.tls_cert: set v1\.tls_cert and v1\.tls_key together"),
        (
            f'tls_cert = "{tmp_path}/missing.crt"\ntls_key = "{key}"\n',
            r"v1\.tls_cert: cannot read .*missing\.crt: No such file",
        ),
        (
            f'tls_cert = "{cert}"\ntls_key = "{tmp_path}/missing.key"\n',
            r"v1\.tls_key: cannot read .*missing\.key: No such file",
        ),
        (f'tls_cert = "{garbage}"\ntls_key = "{key}"\n', r"v1\.tls_cert: no PEM certificate"),
        (f'tls_cert = "{cert}"\ntls_key = "{other_key}"\n', r"v1\.tls_key: .*other\.key is not"),
        (f'tls_cert = "{cert}"\ntls_key = "{encrypted}"\n', r"v1\.tls_key: .*encrypted\.key"),
        (f'tls_cert = "{cert}"\ntls_key = "{cert}"\n', r"v1\.tls_key: .*server\.crt is not"),
    ]
    for lines, message in cases:
        with pytest.raises(ConfigError, match=r"muxd\.toml: " + message):
            load(base_config(tmp_path, lines))


async def test_plain_http_beyond_loopback_warns_that_a_tls_proxy_is_required(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "muxd.upstream.v1.service")
    async with env.serving():
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    async with env.serving(listen="0.0.0.0:0"):
        pass
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "TLS reverse proxy" in warning.getMessage()
    assert "v1.tls_cert" in warning.getMessage()


# -- limits ---------------------------------------------------------------------------------------


async def test_a_body_over_64_kib_is_refused(env: Env) -> None:
    env.ports = ports_for(RUSSIA)
    assert MAX_BODY_BYTES == 64 * 1024
    async with env.serving() as svc:
        url = f"http://127.0.0.1:{svc.port}/"
        padded = orjson.dumps({**GET_NUMBER, "pad": "x" * MAX_BODY_BYTES})
        status, _, answer = await post(env, url, padded)
        assert (status, answer) == (413, {"status": "ERROR", "error": "body too large"})
        just_under = orjson.dumps({**GET_NUMBER, "pad": "x" * (MAX_BODY_BYTES - 200)})
        assert len(just_under) <= MAX_BODY_BYTES
        status, _, answer = await post(env, url, just_under)
        assert (status, answer["status"]) == (200, "SUCCESS")
        assert len(svc.book.open_by_id) == 1


async def test_requests_beyond_the_cap_are_answered_503_at_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.ports = ports_for(RUSSIA)
    caplog.set_level(logging.WARNING, "muxd.upstream.v1.edge")
    async with env.serving() as svc:
        admission = svc.handlers.admission
        writers = [w for _, w in await held_open(svc.port, MAX_CONCURRENT_REQUESTS)]
        async with closing(writers):
            await until(lambda: admission.in_flight == MAX_CONCURRENT_REQUESTS)
            url = f"http://127.0.0.1:{svc.port}/"
            started = time.perf_counter()
            for _ in range(3):
                status, headers, answer = await post(env, url, orjson.dumps(GET_NUMBER))
                assert (status, answer) == (503, {"status": "ERROR", "error": "busy"})
                assert headers["Retry-After"] == str(BUSY_RETRY_AFTER)
            assert time.perf_counter() - started < 1.0  # answered, not queued
            assert len(svc.book.open_by_id) == 0
            # the held requests complete (their bodies are not JSON objects: 400) ...
            for writer in writers:
                writer.write(b" " * 90)
            await asyncio.gather(*(w.drain() for w in writers))
            await until(lambda: admission.in_flight == 0)
        # ... and the server takes requests again
        status, _, answer = await post(env, url, orjson.dumps(GET_NUMBER))
        assert (status, answer["status"]) == (200, "SUCCESS")
    lines = [r.getMessage() for r in caplog.records if r.name == "muxd.upstream.v1.edge"]
    assert lines[0].startswith(f"v1: {MAX_CONCURRENT_REQUESTS} requests in progress; refusing")
    assert lines[1] == "v1: served again; 3 requests were refused with 503"
    assert len(lines) == 2


async def test_a_body_that_does_not_arrive_in_time_is_answered_408(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge, "BODY_TIMEOUT", 0.2)  # the deadline itself, shortened
    async with env.serving() as svc:
        ((reader, writer),) = await held_open(svc.port, 1)
        async with closing([writer]), asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            rest = await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 408 ")
        assert orjson.loads(rest) == {"status": "ERROR", "error": "body not received in time"}
        assert svc.handlers.admission.in_flight == 0


# -- keys and logs --------------------------------------------------------------------------------


async def test_a_key_in_the_url_is_not_looked_at(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.ports = ports_for(RUSSIA)
    caplog.set_level(logging.WARNING, SERVER_LOGGER)
    async with env.serving() as svc:
        base = f"http://127.0.0.1:{svc.port}/"
        # a wrong key in the URL does not spoil the body key ...
        status, _, answer = await post(env, base + "?apikey=nope", orjson.dumps(GET_NUMBER))
        assert (status, answer["status"]) == (200, "SUCCESS")
        # ... and the right one does not stand in for it
        no_key = orjson.dumps({k: v for k, v in GET_NUMBER.items() if k != "key"})
        status, _, answer = await post(env, base + f"?apikey={KEY}", no_key)
        assert (status, answer["error"]) == (401, "ERROR_NO_KEY")
        assert not [r for r in caplog.records if "URL" in r.getMessage()]
        for _ in range(2):  # the key itself in a URL: said once, the key is not repeated
            await post(env, base + f"?apikey={KEY}", orjson.dumps(GET_NUMBER))
    (leak,) = [r.getMessage() for r in caplog.records if "URL" in r.getMessage()]
    assert "consider the key leaked" in leak
    assert KEY not in leak


async def test_failed_logins_are_logged_once_a_minute_with_a_count(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, SERVER_LOGGER)
    async with env.serving():
        for _ in range(5):
            await env.driver.get_services(key="wrong")
        await env.clock.advance(FAILED_LOG_INTERVAL - 1)
        await env.driver.get_services(key="wrong")
        await env.clock.advance(1)
        await env.driver.get_services(key="wrong")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == [
        "v1: 1 request(s) refused for a wrong or missing key (latest from 127.0.0.1)",
        "v1: 6 request(s) refused for a wrong or missing key (latest from 127.0.0.1)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "refused" in r.message)


async def test_numbers_are_masked_in_info_lines(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.ports = ports_for(RUSSIA[:1])
    caplog.set_level(logging.DEBUG, SERVER_LOGGER)
    async with env.serving():
        answer = await env.driver.get_number("russia", "any", "vk")
    number = RUSSIA[0]
    assert str(answer["number"]) == number.lstrip("+")
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert f"operation {answer['activationId']}: +7900***0000 for vk" in info
    assert not [line for line in info if number.lstrip("+") in line]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(number in line for line in debug)


async def test_listen_problems_are_one_line_naming_the_key(env: Env, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        taken_message = rf"^v1\.listen: cannot listen on 127\.0\.0\.1:{port}"
        with pytest.raises(ConfigError, match=taken_message):
            async with env.serving(listen=f"127.0.0.1:{port}"):
                pass
    cert, key = self_signed(tmp_path)
    key.unlink()  # gone between the config check and the start
    with pytest.raises(ConfigError, match=r"^v1\.tls_key: cannot read .*server\.key"):
        async with env.serving(tls_cert=str(cert), tls_key=str(key)):
            pass


async def test_junk_from_anyone_is_logged_once_a_minute_with_the_latest_reason(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, SERVER_LOGGER)
    async with env.serving() as svc:
        url = f"http://127.0.0.1:{svc.port}/"
        for junk in (b"not json", b"[1]", b"{"):
            status, _, _ = await post(env, url, junk)
            assert status == 400
        await env.clock.advance(FAILED_LOG_INTERVAL)
        status, _, _ = await post(env, url, b"x" * (MAX_BODY_BYTES + 1))
        assert status == 413
    lines = [r.getMessage() for r in caplog.records if r.name == SERVER_LOGGER]
    assert lines[0].startswith("v1: 1 unreadable request(s) refused (latest from 127.0.0.1: ")
    assert lines[1] == (
        "v1: 3 unreadable request(s) refused (latest from 127.0.0.1: body too large)"
    )
    assert len(lines) == 2
