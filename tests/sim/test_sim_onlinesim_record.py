"""``run_stub(record_path=...)`` and ``muxd stand-in --record``: one JSON line per accepted SMS."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from muxd.cli import build_parser, main
from muxd_sim.onlinesim import API_PREFIX, Onlinesim, run_stub

API_KEY = "record-key"
A = "+79161234567"
B = "+79161234568"
# Bounds that only stop a hang; nothing here waits for them on the happy path.
READY_TIMEOUT_S = 5.0
FILE_TIMEOUT_S = 5.0
PROCESS_TIMEOUT_S = 20.0
POLL_S = 0.01


def sms(number: str, sender: str, text: str) -> dict[str, Any]:
    return {"date": str(int(time.time()) - 30), "number": number, "from": sender, "message": text}


class Client:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.root = f"http://127.0.0.1:{port}{API_PREFIX}"

    async def post(self, endpoint: str, payload: Any) -> int:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.session.post(
            f"{self.root}/{endpoint}", json=payload, headers=headers
        ) as resp:
            await resp.read()
            return resp.status

    async def publish(self, *numbers: str) -> None:
        items = [{"number": n, "country_id": 7} for n in numbers]
        assert await self.post("sendNumbersOnline", {"numbers": items}) == 200


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """Poll the file (another writer's view) until it holds ``count`` lines."""
    for _ in range(int(FILE_TIMEOUT_S / POLL_S)):
        lines = read_lines(path)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{path}: {len(read_lines(path))} lines, expected {count}")


def listing(path: Path) -> list[Path]:
    return list(path.iterdir())


class Running:
    def __init__(self, task: asyncio.Task[None], stub: Onlinesim, port: int) -> None:
        self.task, self.stub, self.port = task, stub, port

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def start(record: Path | str | None) -> Running:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[tuple[Onlinesim, int]] = loop.create_future()

    def on_ready(stub: Onlinesim, port: int) -> None:
        ready.set_result((stub, port))

    task = asyncio.create_task(
        run_stub("127.0.0.1", 0, API_KEY, on_ready=on_ready, record_path=record)
    )
    async with asyncio.timeout(READY_TIMEOUT_S):
        stub, port = await ready
    return Running(task, stub, port)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_every_accepted_message_is_one_line_written_while_running(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    record = tmp_path / "record.jsonl"
    stand_in = await start(record)
    try:
        client = Client(session, stand_in.port)
        await client.publish(A, B)
        before = time.time()
        batch = [sms(A, "Telegram", "Ваш код 123456 😀"), sms(B, "+79031112233", "code 1")]
        assert await client.post("addMessages", {"messages": batch}) == 200
        assert await client.post("addMessage", sms(A, "Google", "G-777")) == 200
        after = time.time()
        # Readable before the stand-in stops: flushed as the messages were accepted.
        lines = await wait_for_lines(record, 3)
    finally:
        await stand_in.stop()
    assert [(x["number"], x["from"], x["message"]) for x in lines] == [
        (A, "Telegram", "Ваш код 123456 😀"),
        (B, "+79031112233", "code 1"),
        (A, "Google", "G-777"),
    ]
    assert [list(x) for x in lines] == [["t", "number", "from", "message"]] * 3
    for line, accepted in zip(lines, stand_in.stub.messages, strict=True):
        assert isinstance(line["t"], float)
        assert before <= line["t"] <= after
        assert line["t"] == accepted.received_at
    assert "Ваш код" in record.read_text(encoding="utf-8")  # UTF-8, not \\u escapes


async def test_a_rejected_batch_writes_nothing(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    record = tmp_path / "record.jsonl"
    stand_in = await start(record)
    try:
        client = Client(session, stand_in.port)
        await client.publish(A)
        unlisted = [sms(A, "Telegram", "one"), sms(B, "Telegram", "two")]
        assert await client.post("addMessages", {"messages": unlisted}) == 400
        assert await client.post("addMessages", {"messages": [sms(A, "X", "ok")]}) == 200
        lines = await wait_for_lines(record, 1)
    finally:
        await stand_in.stop()
    assert [x["message"] for x in read_lines(record)] == ["ok"] == [x["message"] for x in lines]


async def test_the_file_is_appended_to_and_complete_after_a_stop(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    record = tmp_path / "record.jsonl"
    record.write_text('{"t": 1.0, "number": "+1", "from": "old", "message": "kept"}\n')
    stand_in = await start(str(record))  # a str path works too
    try:
        client = Client(session, stand_in.port)
        await client.publish(A)
        for k in range(5):
            assert await client.post("addMessage", sms(A, "S", f"m{k}")) == 200
    finally:
        await stand_in.stop()
    assert [x["message"] for x in read_lines(record)] == ["kept", "m0", "m1", "m2", "m3", "m4"]


async def test_an_unwritable_record_path_fails_before_listening(tmp_path: Path) -> None:
    called: list[int] = []
    with pytest.raises(FileNotFoundError):
        await run_stub(
            "127.0.0.1",
            0,
            API_KEY,
            on_ready=lambda stub, port: called.append(port),
            record_path=tmp_path / "missing" / "record.jsonl",
        )
    assert called == []


async def test_without_a_record_path_nothing_is_written(
    tmp_path: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stand_in = await start(None)
    try:
        client = Client(session, stand_in.port)
        await client.publish(A)
        assert await client.post("addMessage", sms(A, "S", "m")) == 200
        assert len(stand_in.stub.messages) == 1
    finally:
        await stand_in.stop()
    assert listing(tmp_path) == []


def test_the_cli_option_is_parsed() -> None:
    args = build_parser().parse_args(["stand-in", "--record", "/tmp/x.jsonl"])
    assert args.record == "/tmp/x.jsonl"
    assert build_parser().parse_args(["stand-in"]).record is None


def test_the_cli_refuses_an_unwritable_record_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "missing" / "record.jsonl"
    assert main(["stand-in", "--listen", "127.0.0.1:0", "--record", str(bad)]) == 2
    assert "--record" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_muxd_stand_in_records_over_http(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    record = tmp_path / "record.jsonl"
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "muxd",
        "stand-in",
        "--listen",
        f"127.0.0.1:{port}",
        "--api-key",
        API_KEY,
        "--record",
        str(record),
        "--log-level",
        "warning",
    )
    try:
        client = Client(session, port)
        async with asyncio.timeout(PROCESS_TIMEOUT_S):
            while True:
                try:
                    await client.publish(A)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        assert await client.post("addMessages", {"messages": [sms(A, "Telegram", "c 42")]}) == 200
        lines = await wait_for_lines(record, 1)
        assert (lines[0]["number"], lines[0]["from"], lines[0]["message"]) == (
            A,
            "Telegram",
            "c 42",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(PROCESS_TIMEOUT_S):
            assert await proc.wait() == 0
