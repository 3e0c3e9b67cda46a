"""The daemon's HTTP/1.1 client against real servers: keep-alive reuse, and every way a
connection ends badly (a late answer, a reset, garbage, stray bytes, TLS)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from muxd.upstream import http_client
from muxd.upstream.http1 import Answer
from muxd.upstream.http_client import HttpClient, HttpError, Origin
from tests.v1.test_v1_exposure import self_signed

# Bounds a test's own waits (real seconds); only stops a hang.
HANG = 10.0
# A deadline the held answer is sure to miss: the server answers only after it passed.
SHORT = 0.05


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# answer(connection number, request number on it, the request's head, body) -> bytes to send,
# or None to send nothing and close.
Answerer = Callable[[int, int, bytes, bytes], Awaitable[bytes | None]]


class RawServer:
    """A keep-alive HTTP/1.1 server on asyncio streams, answering by ``answer``."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []  # each request's head
        self.closed = asyncio.Event()  # a connection ended
        self.close_after: set[int] = set()  # connections ended after their first answer
        self.on_answer: Callable[[asyncio.StreamWriter], object] = lambda _writer: None
        self.server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Origin.from_url(f"http://127.0.0.1:{port}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            for k in range(1, 1000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head)
                out = await self.answer(number, k, head, body)
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                self.on_answer(writer)
                if number in self.close_after:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            self.closed.set()

    async def close(self) -> None:
        """Stop listening and end every connection's handler."""
        assert self.server is not None
        self.server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient() as http:
        yield http


async def serve(answer: Answerer) -> tuple[RawServer, Origin]:
    server = RawServer(answer)
    return server, await server.start()


async def two_posts(client: HttpClient, answer: Answerer) -> tuple[Answer, Answer]:
    """Two POSTs in a row to a server answering with ``answer``."""
    server, origin = await serve(answer)
    try:
        first = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
        second = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
    finally:
        await server.close()
    return first, second


async def echo_numbers(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
    return ok(b"%d.%d" % (conn, k))


async def test_requests_share_one_keep_alive_connection(client: HttpClient) -> None:
    server, origin = await serve(echo_numbers)
    try:
        bodies = [
            (await client.request(origin, "POST", "/a", body=b"{}", timeout=HANG)).body
            for _ in range(3)
        ]
    finally:
        await server.close()
    assert bodies == [b"1.1", b"1.2", b"1.3"]
    head = server.requests[0].decode()
    assert head.startswith("POST /a HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{origin.port}\r\n" in head
    assert "Content-Length: 2\r\n" in head


async def test_a_connection_close_answer_is_not_reused(client: HttpClient) -> None:
    async def closing(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        return ok(b"%d.%d" % (conn, k), b"Connection: close\r\n")

    first, second = await two_posts(client, closing)
    assert (first.body, second.body, first.keep_alive) == (b"1.1", b"2.1", False)


async def test_a_connection_idle_too_long_is_not_reused(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_client, "KEEPALIVE_IDLE", 0.0)
    server, origin = await serve(echo_numbers)
    try:
        bodies = [(await client.request(origin, "GET", "/", timeout=HANG)).body for _ in "ab"]
    finally:
        await server.close()
    assert bodies == [b"1.1", b"2.1"]


async def test_a_connection_the_server_closed_while_idle_is_not_used(
    client: HttpClient,
) -> None:
    server, origin = await serve(echo_numbers)
    server.close_after = {1}  # the server ends the first connection after its answer
    try:
        assert (await client.request(origin, "POST", "/", body=b"", timeout=HANG)).body == b"1.1"
        async with asyncio.timeout(HANG):
            await server.closed.wait()
            while client.idle(origin):  # noqa: ASYNC110 - the client's own state, no event
                await asyncio.sleep(0)
        # A POST is never sent again by the client: written into the closed connection, it
        # would fail. It goes out on a new one.
        answer = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"


async def test_a_late_answer_is_never_read_as_the_next_requests(client: HttpClient) -> None:
    release = asyncio.Event()

    async def held(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        if conn == 1:
            await release.wait()  # answers only after the client gave up
        return ok(b"%d.%d" % (conn, k))

    server, origin = await serve(held)
    try:
        with pytest.raises(TimeoutError):
            await client.request(origin, "POST", "/", body=b"1", timeout=SHORT)
        release.set()
        answer = await client.request(origin, "POST", "/", body=b"2", timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"  # its own answer, on a new connection


async def test_a_cancelled_request_drops_its_connection(client: HttpClient) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def held(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        if conn == 1:
            started.set()
            await release.wait()
        return ok(b"%d.%d" % (conn, k))

    server, origin = await serve(held)
    try:
        task = asyncio.create_task(client.request(origin, "POST", "/", body=b"", timeout=HANG))
        await asyncio.wait_for(started.wait(), HANG)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        answer = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"


async def test_refused_is_an_http_error(client: HttpClient) -> None:
    server, origin = await serve(echo_numbers)
    await server.close()
    with pytest.raises(HttpError, match="ConnectionRefusedError"):
        await client.request(origin, "POST", "/", body=b"", timeout=HANG)


@pytest.mark.parametrize(("method", "sent"), [("POST", 1), ("GET", 2), ("DELETE", 2)])
async def test_a_reset_is_retried_once_only_when_idempotent(
    client: HttpClient, method: str, sent: int
) -> None:
    async def reset(_conn: int, _k: int, _head: bytes, _body: bytes) -> bytes | None:
        return None  # close without an answer

    server, origin = await serve(reset)
    try:
        with pytest.raises(HttpError, match="closed"):
            await client.request(origin, method, "/", timeout=HANG)
    finally:
        await server.close()
    assert len(server.requests) == sent


async def test_a_reset_idempotent_request_succeeds_on_its_second_try(client: HttpClient) -> None:
    async def first_fails(conn: int, k: int, _head: bytes, _body: bytes) -> bytes | None:
        return None if conn == 1 else ok(b"%d.%d" % (conn, k))

    server, origin = await serve(first_fails)
    try:
        answer = await client.request(origin, "GET", "/", query={"n": "+7 9"}, timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"
    assert server.requests[1].startswith(b"GET /?n=%2B7+9 HTTP/1.1\r\n")


async def test_garbage_is_an_http_error_and_the_connection_is_dropped(
    client: HttpClient,
) -> None:
    async def garbage(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        return b"SSH-2.0-OpenSSH\r\n\r\n" if conn == 1 else ok(b"%d.%d" % (conn, k))

    server, origin = await serve(garbage)
    try:
        with pytest.raises(HttpError, match="bad answer"):
            await client.request(origin, "POST", "/", body=b"", timeout=HANG)
        answer = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"


async def test_stray_bytes_after_an_answer_never_answer_the_next_request(
    client: HttpClient,
) -> None:
    async def doubled(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        if conn == 1:
            return ok(b"1.1") + ok(b"stray")  # two answers to one request
        return ok(b"%d.%d" % (conn, k))

    first, second = await two_posts(client, doubled)
    assert (first.body, second.body) == (b"1.1", b"2.1")


async def test_bytes_on_an_idle_connection_end_it(client: HttpClient) -> None:
    answered = asyncio.Event()
    strays: list[asyncio.StreamWriter] = []

    async def then_stray(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        return ok(b"%d.%d" % (conn, k))

    server, origin = await serve(then_stray)

    def note(writer: asyncio.StreamWriter) -> None:
        strays.append(writer)
        answered.set()

    server.on_answer = note
    try:
        assert (await client.request(origin, "POST", "/", body=b"", timeout=HANG)).body == b"1.1"
        await asyncio.wait_for(answered.wait(), HANG)
        strays[0].write(ok(b"stray"))  # an answer to no request, while the connection idles
        async with asyncio.timeout(HANG):
            while client.idle(origin):  # noqa: ASYNC110 - the client's own state, no event
                await asyncio.sleep(0)
        server.on_answer = lambda _writer: None
        answer = await client.request(origin, "POST", "/", body=b"", timeout=HANG)
    finally:
        await server.close()
    assert answer.body == b"2.1"


async def test_a_closed_client_refuses_requests() -> None:
    server, origin = await serve(echo_numbers)
    http = HttpClient()
    try:
        assert (await http.request(origin, "GET", "/", timeout=HANG)).body == b"1.1"
        await http.close()
        with pytest.raises(HttpError, match="closed"):
            await http.request(origin, "GET", "/", timeout=HANG)
    finally:
        await server.close()


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_closing_the_client_fails_a_request_in_flight_saying_so(method: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def held(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        started.set()
        await release.wait()
        return ok(b"%d.%d" % (conn, k))

    server, origin = await serve(held)
    http = HttpClient()
    try:
        task = asyncio.create_task(http.request(origin, method, "/", body=b"", timeout=HANG))
        await asyncio.wait_for(started.wait(), HANG)
        await http.close()
        with pytest.raises(HttpError, match="client closed"):
            await task
    finally:
        release.set()
        await server.close()
    assert server.connections == 1  # a GET is not sent again on a new connection


async def test_tls_checks_the_certificate_and_reads_chunked_gzip(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(gzip.compress(request.query["number"].encode()))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/api/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served)
    await site.start()
    port = runner.addresses[0][1]
    origin = Origin.from_url(f"https://localhost:{port}/api")
    try:
        async with HttpClient() as untrusting:
            with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.request(origin, "GET", "/x", query={"number": "+7"}, timeout=HANG)
        trusting = ssl.create_default_context(cafile=str(cert))
        async with HttpClient(ssl_context=trusting) as http:
            answer = await http.request(origin, "GET", "/x", query={"number": "+7"}, timeout=HANG)
    finally:
        await runner.cleanup()
    assert (answer.status, answer.body) == (200, b"+7")


def test_origins_from_urls() -> None:
    assert Origin.from_url("https://api.example.org/base/") == Origin(
        "api.example.org", 443, True, "/base", "api.example.org"
    )
    assert Origin.from_url("http://[::1]:8080") == Origin("::1", 8080, False, "", "[::1]:8080")
    with pytest.raises(ValueError, match="http"):
        Origin.from_url("ftp://example.org")


async def test_a_request_cancelled_as_its_connection_fails_leaves_no_unretrieved_error() -> None:
    # Cancelled (a stop), and its connection fails before the request's task runs again (the
    # client closed, a reset read in the same pass): the failure is nobody's to report, and
    # must not be logged as "Future exception was never retrieved".
    started, release = asyncio.Event(), asyncio.Event()

    async def held(conn: int, k: int, _head: bytes, _body: bytes) -> bytes:
        started.set()
        await release.wait()
        return ok(b"%d.%d" % (conn, k))

    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    server, origin = await serve(held)
    http = HttpClient()
    try:
        task = asyncio.create_task(http.request(origin, "POST", "/", body=b"", timeout=HANG))
        await asyncio.wait_for(started.wait(), HANG)
        task.cancel()
        await http.close()  # fails the request's answer before its task sees the cancel
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        gc.collect()
    finally:
        loop.set_exception_handler(None)
        release.set()
        await server.close()
    assert [c["message"] for c in reported] == []
