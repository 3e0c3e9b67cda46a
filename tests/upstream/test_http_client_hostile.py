"""HttpClient and V2Client over it against servers that behave as real ones may (from a
hostile review): TLS without close_notify, an answer that arrives with its deadline, repeated
headers, bare LF heads, IDN hosts, and connect failures of every kind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import aiohttp
import pytest
import uvloop

from muxd.errors import UpstreamError
from muxd.upstream.http_client import HttpClient, HttpError, Origin
from muxd.upstream.v2 import MessageItem, V2Client
from tests.v1.test_v1_exposure import self_signed

ACK = b'{"response":1}'
ITEM = MessageItem(date="1", number="+79001110001", sender="Bank", message="code 1")
# Bounds the server thread's waits (real seconds); only stops a hang.
HANG = 10.0
# The client's deadline in the late-answer tests; the loop is held past it on purpose.
DEADLINE = 0.3


class ThreadServer:
    """A server in its own thread (it answers while the test holds the loop): each connection
    reads one request and is handed to ``answer(sock)``, then closed."""

    def __init__(
        self, answer: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer, self.tls = answer, tls
        self.requests = 0
        self.got = threading.Event()  # a request was read
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen()
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            raw.settimeout(HANG)
            sock = raw
            try:
                sock = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed before a whole request")
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(body) < length:
                    body += sock.recv(65536)
                self.requests += 1
                self.got.set()
                self.answer(sock)
            except OSError:
                pass
            finally:
                sock.close()
                raw.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing does not)
        self.lsock.close()
        self.thread.join(HANG)
        assert not self.thread.is_alive()


def until_client_closes(sock: socket.socket) -> None:
    """Keep the connection open until the client ends it (or HANG passes)."""
    try:
        sock.recv(1)
    except OSError:
        pass


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_close_delimited_tls_answer_without_close_notify_is_read(
    tmp_path: Path, loop: str
) -> None:
    # No Content-Length, and the TCP connection ends without TLS close_notify: asyncio reports
    # eof_received, uvloop only connection_lost(None). Both must read the answer whole, or the
    # stored SMS is reported HTTP 0 and sent again.
    cert, key = self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    def answer(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + ACK)
        sock.shutdown(socket.SHUT_RDWR)  # no close_notify

    server = ThreadServer(answer, served)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        async with HttpClient(ssl_context=trusting) as http:
            await V2Client(http, f"https://localhost:{server.port}", "KEY").add_message(ITEM)

    try:
        uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())
    finally:
        server.close()
    assert server.requests == 1


async def test_no_protocol_callback_raises_on_a_huge_content_length() -> None:
    loop = asyncio.get_running_loop()
    handled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: handled.append(context))

    def answer(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n")
        until_client_closes(sock)

    server = ThreadServer(answer)
    origin = Origin.from_url(f"http://127.0.0.1:{server.port}")
    try:
        async with HttpClient() as http:
            with pytest.raises(HttpError, match="Content-Length"):
                await http.request(origin, "POST", "/", body=b"{}", timeout=HANG)
    finally:
        loop.set_exception_handler(None)
        server.close()
    assert handled == []


def held_answer() -> tuple[ThreadServer, threading.Event, threading.Event]:
    """A server that answers 200 when ``go`` is set, then sets ``sent``."""
    go, sent = threading.Event(), threading.Event()

    def answer(sock: socket.socket) -> None:
        go.wait(HANG)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ACK), ACK))
        sent.set()

    return ThreadServer(answer), go, sent


async def an_answer_in_hand_at_the_deadline(http: HttpClient | aiohttp.ClientSession) -> None:
    server, go, sent = held_answer()
    try:
        client = V2Client(http, f"http://127.0.0.1:{server.port}", "KEY", timeout=DEADLINE)
        task = asyncio.create_task(client.add_message(ITEM))
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(HANG):
            while not server.got.is_set():  # noqa: ASYNC110 - a thread's event
                await asyncio.sleep(0.001)
        go.set()
        # The loop is busy (a slow callback): the answer arrives and the deadline passes
        # before it looks again; both are seen in the same pass.
        assert sent.wait(HANG)
        while loop.time() <= started + DEADLINE:
            threading.Event().wait(0.01)
        await task  # the acknowledgement that came first wins: no UpstreamError
    finally:
        server.close()


async def test_an_answer_in_hand_when_the_deadline_fires_is_not_thrown_away() -> None:
    async with HttpClient() as http:
        await an_answer_in_hand_at_the_deadline(http)


def test_an_answer_in_hand_when_the_deadline_fires_is_not_thrown_away_on_uvloop() -> None:
    async def main() -> None:
        async with HttpClient() as http:
            await an_answer_in_hand_at_the_deadline(http)

    uvloop.run(main())


@pytest.mark.parametrize("carrier", ["lean", "aiohttp"])
async def test_a_repeated_retry_after_is_still_read(carrier: str) -> None:
    def answer(sock: socket.socket) -> None:
        sock.sendall(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nRetry-After: 60\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )

    server = ThreadServer(answer)
    http: HttpClient | aiohttp.ClientSession = (
        HttpClient() if carrier == "lean" else aiohttp.ClientSession()
    )
    try:
        async with http:
            client = V2Client(http, f"http://127.0.0.1:{server.port}", "KEY")
            with pytest.raises(UpstreamError) as caught:
                await client.add_message(ITEM)
    finally:
        server.close()
    assert (caught.value.status, caught.value.retry_after) == (429, 60.0)


@pytest.mark.parametrize("carrier", ["lean", "aiohttp"])
async def test_a_bare_lf_answer_acknowledges_the_sms(carrier: str) -> None:
    def answer(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\nContent-Length: %d\n\n%s" % (len(ACK), ACK))
        until_client_closes(sock)

    server = ThreadServer(answer)
    http: HttpClient | aiohttp.ClientSession = (
        HttpClient() if carrier == "lean" else aiohttp.ClientSession()
    )
    try:
        async with http:
            await V2Client(http, f"http://127.0.0.1:{server.port}", "KEY").add_message(ITEM)
    finally:
        server.close()
    assert server.requests == 1


def test_an_idn_host_goes_out_in_its_ascii_form() -> None:
    origin = Origin.from_url("https://пример.испытание:8443/api")
    assert (origin.host, origin.host_header) == (
        "xn--e1afmkfd.xn--80akhbyknj4f",
        "xn--e1afmkfd.xn--80akhbyknj4f:8443",
    )
    with pytest.raises(ValueError, match="bad host name"):
        Origin.from_url("http://" + "я" * 70 + ".example")


@pytest.mark.parametrize(
    "failure",
    [
        # uvloop's sock_connect after a cancelled connect:
        RuntimeError("File descriptor 59 is used by transport <TCPTransport closed=False>"),
        ValueError("addr_infos must not be empty"),  # the name gave no address
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
async def test_every_connect_failure_reaches_v2client_as_upstream_error(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    # Anything but HttpError or TimeoutError would pass V2Client's except and end the
    # shipper's task, and with it the daemon.
    async def connect(*_args: object, **_kwargs: object) -> socket.socket:
        raise failure

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", connect)
    async with HttpClient() as http:
        client = V2Client(http, "http://127.0.0.1:9", "KEY")
        with pytest.raises(UpstreamError) as caught:
            await client.add_message(ITEM)
    assert caught.value.status == 0
