"""A real stand-in server, a real client session and a real journal for upstream tests.

The ``upstream`` fixture runs each test twice: with the daemon's HTTP/1.1 client
(:class:`muxd.upstream.http_client.HttpClient`) and with an aiohttp session (the one-off
commands' carrier)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd.upstream.http_client import HttpClient
from muxd.upstream.v2 import NumberEntry, V2Client
from muxd_sim.onlinesim import Onlinesim, serve

KEY = "upstream-key"
NUMBERS = ("+79001110001", "+79001110002", "+79001110003")

# What V2Client's requests travel by (the ``carrier`` fixture).
Carrier = aiohttp.ClientSession | HttpClient


@dataclass
class Upstream:
    stub: Onlinesim
    client: V2Client
    journal: Journal
    url: str
    http: Carrier
    counter: int = 0

    async def receive(self, number: str, sender: str, text: str) -> int:
        """Journal one SMS as if read off a modem; return its message id."""
        self.counter += 1
        scts = datetime(2026, 11, 25, 12, 0, self.counter % 60, tzinfo=UTC)
        (enc,) = encode_deliver(sender, text, scts=scts)
        result = await self.journal.put_part(
            PartIn(
                sim=f"sim-{number}",
                port="port000",
                number=number,
                storage="SM",
                index=self.counter,
                pdu=enc.hex,
                tpdu_length=enc.tpdu_length,
                # Read just after the SMSC stamped it (a plausible stamp is the date sent).
                received_at=scts.replace(second=0).timestamp() + self.counter,
            )
        )
        assert result.message_id is not None
        return result.message_id


@pytest.fixture(params=["lean", "aiohttp"])
async def carrier(request: pytest.FixtureRequest) -> AsyncIterator[Carrier]:
    """What V2Client's requests travel by: the daemon's HTTP/1.1 client, or aiohttp."""
    http: Carrier = HttpClient() if request.param == "lean" else aiohttp.ClientSession()
    async with http:
        yield http


@pytest.fixture
async def upstream(tmp_path: Path, carrier: Carrier) -> AsyncIterator[Upstream]:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    journal = await Journal.open(tmp_path)
    url = f"http://127.0.0.1:{served.port}"
    try:
        client = V2Client(carrier, url, KEY)
        await client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in NUMBERS])
        yield Upstream(stub=stub, client=client, journal=journal, url=url, http=carrier)
    finally:
        await journal.close()
        await served.runner.cleanup()
