"""The v2 loops against every dialect of the stand-in: the shipper, the publisher in list and in
incremental mode deliver everything once, whichever reading of the docs the upstream speaks.
Counted at the stand-in (accepted messages, duplicates, the published list)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd.errors import UpstreamError
from muxd.metrics import Metrics
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd.upstream.learned import FILE_NAME, Learned
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import NO_NUMBER_ATTEMPTS, Shipper
from muxd.upstream.v2 import TEST_MODE_REASON, MessageItem, NumberEntry, V2Client
from muxd_sim.onlinesim import Onlinesim, serve
from muxd_sim.onlinesim_dialects import V2_DIALECTS
from tests.upstream.conftest import Carrier
from tests.upstream.test_publisher import ready_port

KEY = "dialect-key"
NUMBERS = ("+79001110001", "+79001110002")
WAIT = 10.0
# Every failed attempt sleeps on the injected sleep; this many mean a loop that never ends.
MAX_SLEEPS = 50
DIALECTS = ["strict", *sorted(V2_DIALECTS)]


@dataclass
class Rig:
    stub: Onlinesim
    client: V2Client
    journal: Journal
    http: Carrier
    url: str
    learned_path: Path
    readings: list[tuple[str, str]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    counter: int = 0

    def new_client(self, **kw: object) -> V2Client:
        return V2Client(
            self.http,
            self.url,
            KEY,
            reading=lambda f, r: self.readings.append((f, r)),
            learned=Learned(self.learned_path),
            **kw,  # type: ignore[arg-type]
        )

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        assert len(self.sleeps) < MAX_SLEEPS, f"retrying forever: {self.sleeps}"
        await asyncio.sleep(0)

    async def receive(self, number: str, text: str) -> int:
        self.counter += 1
        scts = datetime(2026, 11, 25, 12, 0, self.counter % 60, tzinfo=UTC)
        (enc,) = encode_deliver("VK", text, scts=scts)
        result = await self.journal.put_part(
            PartIn(
                sim=f"sim-{number}",
                port="port000",
                number=number,
                storage="SM",
                index=self.counter,
                pdu=enc.hex,
                tpdu_length=enc.tpdu_length,
                received_at=scts.timestamp() + 1.0,  # read a second after its stamp
            )
        )
        assert result.message_id is not None
        return result.message_id

    def shipper(self, client: V2Client | None = None, **kw: object) -> Shipper:
        return Shipper(
            self.journal,
            client or self.client,
            batch_max=10,
            batch_delay=0,
            sleep=self.sleep,
            **kw,  # type: ignore[arg-type]
        )


@contextlib.asynccontextmanager
async def rig_for(tmp_path: Path, dialect: str, http: Carrier) -> AsyncIterator[Rig]:
    stub = Onlinesim(api_key=KEY)
    if dialect != "strict":
        stub.set_dialects(dialect)
    served = await serve(stub, "127.0.0.1", 0)
    journal = await Journal.open(tmp_path / "state")
    url = f"http://127.0.0.1:{served.port}"
    try:
        learned_path = tmp_path / "state" / FILE_NAME
        rig = Rig(stub, V2Client(http, url, KEY), journal, http, url, learned_path)
        rig.client = rig.new_client()
        yield rig
    finally:
        await journal.close()
        await served.runner.cleanup()


class Published:
    """The publisher's on_published callback; ``wait(n)`` until a round ended with n listed."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self._event = asyncio.Event()

    def __call__(self, listed: int) -> None:
        self.counts.append(listed)
        self._event.set()

    async def wait(self, listed: int) -> None:
        async with asyncio.timeout(WAIT):
            while not self.counts or self.counts[-1] != listed:
                self._event.clear()
                await self._event.wait()


@contextlib.asynccontextmanager
async def running(publisher: NumbersPublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_shipper_delivers_once_in_every_dialect(
    tmp_path: Path, dialect: str, carrier: Carrier
) -> None:
    async with rig_for(tmp_path, dialect, carrier) as rig:
        ids = await rig.client.send_numbers_online([NumberEntry(n, 7) for n in NUMBERS])
        assert all(isinstance(i, int) for i in ids.values()), ids
        sent = [await rig.receive(NUMBERS[k % 2], f"code {k}") for k in range(7)]
        shipper = rig.shipper()
        await shipper.drain()
        stats = await rig.journal.stats()
    assert stats.get("messages_delivered") == len(sent), (stats, shipper.last_error)
    assert sorted(m.message for m in rig.stub.messages) == sorted(f"code {k}" for k in range(7))
    assert rig.stub.duplicates == 0
    assert rig.sleeps == []  # nothing had to be retried


@pytest.mark.parametrize("dialect", ["strict", "json-errors", "errors-in-200"])
async def test_a_refused_sms_is_read_the_same_in_every_error_shape(
    tmp_path: Path, dialect: str, carrier: Carrier
) -> None:
    # NO_NUMBER as a bare text/html code, as {"response": "NO_NUMBER"} with 400, or inside a
    # 200 answer: the shipper republishes, retries a bounded number of times, then parks it,
    # and everything else is delivered.
    async with rig_for(tmp_path, dialect, carrier) as rig:
        await rig.client.send_numbers_online([NumberEntry(NUMBERS[0], 7)])
        await rig.receive(NUMBERS[0], "good 1")
        await rig.receive("+79001119999", "to an unlisted number")
        await rig.receive(NUMBERS[0], "good 2")
        republished: list[int] = []
        shipper = rig.shipper(republish=lambda: republished.append(1))
        await shipper.drain()
        stats = await rig.journal.stats()
    assert (stats.get("messages_delivered"), stats.get("messages_parked")) == (2, 1), stats
    assert len(republished) == NO_NUMBER_ATTEMPTS - 1
    assert sorted(m.message for m in rig.stub.messages) == ["good 1", "good 2"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_list_publisher_in_every_dialect(
    tmp_path: Path, dialect: str, carrier: Carrier
) -> None:
    async with rig_for(tmp_path, dialect, carrier) as rig:
        ports = {i: ready_port(i) for i in range(5)}
        changed = asyncio.Event()
        published = Published()
        publisher = NumbersPublisher(
            rig.client,
            lambda: ports.values(),
            changed,
            rig.journal,
            interval=3600,
            rent=False,
            debounce=0.0,
            startup_grace=0.0,
            on_published=published,
        )
        async with running(publisher):
            await published.wait(5)
            del ports[0]
            changed.set()
            await published.wait(4)
    assert publisher.ids == {n: e.id for n, e in rig.stub.numbers.items()}
    assert set(publisher.published) == set(rig.stub.numbers)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_incremental_publisher_in_every_dialect(
    tmp_path: Path, dialect: str, carrier: Carrier
) -> None:
    async with rig_for(tmp_path, dialect, carrier) as rig:
        ports = {i: ready_port(i) for i in range(4)}
        changed = asyncio.Event()
        published = Published()
        publisher = NumbersPublisher(
            rig.client,
            lambda: ports.values(),
            changed,
            rig.journal,
            interval=3600,
            rent=False,
            incremental=True,
            debounce=0.0,
            startup_grace=0.0,
            on_published=published,
        )
        async with running(publisher):
            await published.wait(4)
            del ports[3]
            changed.set()
            await published.wait(3)
    assert rig.stub.last_heartbeat is not None  # checkWork answered, by whichever method
    assert publisher.ids == {n: e.id for n, e in rig.stub.numbers.items()}
    assert [r for r in rig.stub.requests if r.status not in (200, 405)] == []


# --- readings, checkWork, test mode, redirects ------------------------------------------------


async def test_string_response_is_read_and_counted(tmp_path: Path, carrier: Carrier) -> None:
    async with rig_for(tmp_path, "string-response", carrier) as rig:
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        client = V2Client(rig.http, rig.url, KEY, reading=metrics.count_reading)
        await client.send_numbers_online([NumberEntry(NUMBERS[0], 7)])
    value = registry.get_sample_value(
        "muxd_upstream_reading_total", {"field": "response", "reading": "string"}
    )
    zero = registry.get_sample_value(
        "muxd_upstream_reading_total", {"field": "error", "reading": "html"}
    )
    assert (value, zero) == (1.0, 0.0)


async def test_check_work_falls_back_to_post_and_remembers(
    tmp_path: Path, carrier: Carrier
) -> None:
    async with rig_for(tmp_path, "post-checkwork", carrier) as rig:
        await rig.client.check_work()
        first = [(r.method, r.status) for r in rig.stub.requests]
        assert first == [("GET", 405), ("POST", 200)]
        # A restart: a new client on the same state directory goes straight to POST.
        await rig.new_client().check_work()
        assert [(r.method, r.status) for r in rig.stub.requests[2:]] == [("POST", 200)]
        learned = json.loads(rig.learned_path.read_text())
        # An operator who configures POST starts afresh; so does one configuring GET again
        # after the upstream changed back (the fallback works both ways).
        rig.stub.set_dialects([])
        await rig.new_client().check_work()
        assert [(r.method, r.status) for r in rig.stub.requests[3:]] == [
            ("POST", 405),
            ("GET", 200),
        ]
    assert learned == {"upstream.check_work_method": {"configured": "GET", "learned": "POST"}}
    assert ("check_work", "POST") in rig.readings


async def test_test_mode_keeps_sms_pending_until_it_is_switched_off(
    tmp_path: Path, carrier: Carrier
) -> None:
    async with rig_for(tmp_path, "strict", carrier) as rig:
        await rig.client.send_numbers_online([NumberEntry(n, 7) for n in NUMBERS])
        for k in range(3):
            await rig.receive(NUMBERS[0], f"code {k}")
        testing = rig.shipper(rig.new_client(test="test1"))
        with pytest.raises(AssertionError, match="retrying forever"):
            await testing.drain()
        assert TEST_MODE_REASON in str(testing.last_error)
        assert rig.stub.messages == []  # Onlinesim stored nothing...
        assert (await rig.journal.stats()).get("messages_pending") == 3  # ...nor did we lose it
        # Backoff between the attempts: a test-mode box does not hammer the platform.
        assert rig.sleeps[:3] == sorted(rig.sleeps[:3])
        assert rig.sleeps[0] >= 0.5
        rig.sleeps.clear()
        await rig.shipper().drain()
        stats = await rig.journal.stats()
    assert stats.get("messages_delivered") == 3
    assert [m.message for m in rig.stub.messages] == ["code 0", "code 1", "code 2"]


async def test_a_redirect_is_never_followed(tmp_path: Path, carrier: Carrier) -> None:
    stolen: list[bytes] = []

    async def elsewhere(request: web.Request) -> web.Response:
        stolen.append(await request.read())
        return web.json_response({"response": 1})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    await web.TCPSite(other_runner, "127.0.0.1", 0).start()
    target = f"http://127.0.0.1:{other_runner.addresses[0][1]}/api/resellers/addMessage"

    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": target})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        client = V2Client(carrier, f"http://127.0.0.1:{runner.addresses[0][1]}", KEY)
        item = MessageItem(date="1", number=NUMBERS[0], sender="VK", message="secret 1")
        with pytest.raises(UpstreamError) as caught:
            await client.add_message(item)
    finally:
        await runner.cleanup()
        await other_runner.cleanup()
    assert stolen == []
    assert caught.value.status == 307
    assert caught.value.body == f"redirect to {target} not followed"


async def test_a_proxy_page_in_a_stray_charset_is_an_upstream_error(carrier: Carrier) -> None:
    # A proxy's page in Latin-1 without a charset: read as text anyway, never a crash of the
    # delivery loop (which only expects UpstreamError).
    async def proxy(_request: web.Request) -> web.Response:
        body = b"<html><title>Passerelle d\xe9faillante</title>\xff</html>"
        return web.Response(status=502, body=body, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        client = V2Client(carrier, f"http://127.0.0.1:{runner.addresses[0][1]}", KEY)
        item = MessageItem(date="1", number=NUMBERS[0], sender="VK", message="x")
        with pytest.raises(UpstreamError) as caught:
            await client.add_message(item)
    finally:
        await runner.cleanup()
    assert caught.value.status == 502
    assert caught.value.body.startswith("HTML page (not an API answer): Passerelle d")


async def test_test2_echo_without_response_still_publishes(
    tmp_path: Path, carrier: Carrier
) -> None:
    # test2's answer shape is unpublished: an echo of the request without "response" counts
    # as accepted in test mode (and only there); SMS stay pending all the same.
    async with rig_for(tmp_path, "strict", carrier) as rig:
        echo = '{"numbers": [{"number": "+79001110001", "country_id": 7}], "test": "test2"}'
        rig.stub.fail_next("sendNumbersOnline", 200, 2, echo, content_type="application/json")
        await rig.new_client(test="test2").send_numbers_online([NumberEntry(NUMBERS[0], 7)])
        with pytest.raises(UpstreamError, match="bad reply"):
            await rig.new_client().send_numbers_online([NumberEntry(NUMBERS[0], 7)])
    assert ("response", "echo") in rig.readings
