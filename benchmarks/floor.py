"""The floor under muxd's CPU per SMS on this machine: the same system calls and wake-ups, with
next to no Python between them.

``python -m benchmarks.floor [--ports 256] [--rate 50] [--duration 30] [--exchanges 3]``

What one SMS costs muxd, whatever the code: a +CMTI line to read, ``--exchanges`` AT
exchanges on a pseudo-terminal (muxd makes 3.5 on average at 256 ports × 50 SMS/s: AT+CCID
on about every other SMS, AT+CMGR, AT+CMGD; the periodic polls add 0.3), one durable commit
(SQLite in WAL mode, ``synchronous=FULL``, in a worker thread, as muxd's journal does), and one
keep-alive HTTP/1.1 request to a sink in another process. Here each step is a bare callback:
``loop.add_reader`` on the terminal, ``os.write`` for a command, a ``SimpleQueue`` to the
commit thread and ``call_soon_threadsafe`` back, one ``transport.write`` per request. The
modem peer and the HTTP sink are processes of their own, as in ``benchmarks.e2e``; the figure
is this process's CPU (all its threads) per 1,000 SMS during the load.

Variants: ``--inline-commit`` commits on the event loop (no thread hand-off; the loop blocks on
the disk), ``--no-http``, ``--no-commit``: what each part costs on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

import uvloop

from benchmarks.e2e_core import free_port

URC = b'\r\n+CMTI: "SM",3\r\n'
PDU = (
    "07919730071111F1040B919730123456F700006240114151238048"
    "C8329BFD06DDDF723619D42ECBE5E539A8EE8E8AEDF272599E3FA5C56B"
)
ANSWERS = {
    b"AT+CCID": b"\r\n+CCID: 8970199120612345678\r\n\r\nOK\r\n",
    b"AT+CMGR=3": f"\r\n+CMGR: 0,,48\r\n{PDU}\r\n\r\nOK\r\n".encode(),
    b"AT+CMGD=3": b"\r\nOK\r\n",
}
COMMANDS = [b"AT+CCID", b"AT+CMGR=3", b"AT+CMGD=3"]
HTTP_ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"response":1}'
REQUEST_HEAD = (
    "POST /api/v2/addMessages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
)
SETTLE = 2.0
DRAIN = 5.0


# --- the peers (processes of their own) ------------------------------------------------------


def modem_peer(ports: int, rate: float, duration: float) -> None:
    """Own ``ports`` pseudo-terminals; print their names; inject +CMTI at ``rate`` once a line
    comes on stdin; answer every command line."""
    masters: list[int] = []
    for _ in range(ports):
        master, slave = os.openpty()
        tty.setraw(slave)
        masters.append(master)
        print(os.ttyname(slave), flush=True)
    loop = uvloop.new_event_loop()
    buffers = {fd: b"" for fd in masters}

    def readable(fd: int) -> None:
        data = buffers[fd] + os.read(fd, 4096)
        while b"\r" in data:
            line, data = data.split(b"\r", 1)
            line = line.strip()
            if line:
                os.write(fd, ANSWERS.get(line, b"\r\nERROR\r\n"))
        buffers[fd] = data

    for fd in masters:
        loop.add_reader(fd, readable, fd)

    async def inject() -> None:
        await loop.run_in_executor(None, sys.stdin.readline)
        rng = random.Random(1)
        start = loop.time()
        sent = 0
        while (now := loop.time() - start) < duration:
            due = int(now * rate) + 1
            while sent < due:
                os.write(masters[rng.randrange(ports)], URC)
                sent += 1
            await asyncio.sleep(max(0.0, sent / rate - (loop.time() - start)))
        await asyncio.sleep(3600)

    loop.run_until_complete(inject())


class _Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Requests come one at a time; a read that holds two answers twice.
        for _ in range(max(1, data.count(b"POST "))):
            self.transport.write(HTTP_ANSWER)  # type: ignore[attr-defined]


def http_sink(port: int) -> None:
    loop = uvloop.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Sink, "127.0.0.1", port))
    print("listening", flush=True)
    loop.run_until_complete(server.serve_forever())


# --- the measured process ---------------------------------------------------------------------


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiting: list[Callable[[], None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"HTTP/1.1 ")):
            self.waiting.pop(0)()


class Floor:
    def __init__(self, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.args = args
        self.loop = loop
        self.done = 0
        self.commands = COMMANDS[3 - args.exchanges :] if args.exchanges <= 3 else COMMANDS
        self.db = sqlite3.connect(
            Path(args.dir) / "floor.sqlite3", isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS parts (id INTEGER PRIMARY KEY, pdu TEXT)")
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.client: _Client | None = None
        self.expected = 0
        self.finished = asyncio.Event()

    def commit(self, pdu: str) -> None:
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO parts (pdu) VALUES (?)", (pdu,))
        self.db.execute("COMMIT")

    def worker(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()

    def port(self, fd: int) -> None:
        buffer = b""
        step = -1  # -1: waiting for a +CMTI; k: waiting for the answer to command k

        def send_next() -> None:
            nonlocal step
            step += 1
            if step < len(self.commands):
                os.write(fd, self.commands[step] + b"\r")
            else:
                step = -1
                self.ship()

        def stored() -> None:
            send_next()

        def readable() -> None:
            nonlocal buffer
            buffer += os.read(fd, 4096)
            if step < 0:
                if b"+CMTI" in buffer and buffer.endswith(b"\r\n"):
                    buffer = b""
                    send_next()
            elif buffer.endswith(b"OK\r\n"):
                answer, buffer = buffer, b""
                if self.commands[step].startswith(b"AT+CMGR") and not self.args.no_commit:
                    pdu = answer.split(b"\r\n")[2].decode()
                    if self.args.inline_commit:
                        self.commit(pdu)
                        stored()
                    else:
                        self.jobs.put(lambda: self.done_commit(pdu, stored))
                else:
                    send_next()

        self.loop.add_reader(fd, readable)

    def done_commit(self, pdu: str, then: Callable[[], None]) -> None:
        self.commit(pdu)
        self.loop.call_soon_threadsafe(then)

    def ship(self) -> None:
        if self.client is None:
            self.delivered()
            return
        body = b'{"messages":[{"number":"79001234567","text":"code 1234"}]}'
        head = REQUEST_HEAD.format(len(body)).encode()
        self.client.waiting.append(self.delivered)
        self.client.transport.write(head + body)  # type: ignore[attr-defined]

    def delivered(self) -> None:
        self.done += 1
        if self.done >= self.expected > 0:
            self.finished.set()


def spawn(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], list[str], int | None]:
    """The modem peer (and its terminals' names) and, unless --no-http, the sink (its port)."""
    root = Path(__file__).resolve().parents[1]
    me = [sys.executable, "-m", "benchmarks.floor"]
    modem = subprocess.Popen(
        [*me, "--role", "modem", "--ports", str(args.ports), "--rate", str(args.rate),
         "--duration", str(args.duration)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
    )  # fmt: skip
    assert modem.stdout is not None
    names = [modem.stdout.readline().decode().strip() for _ in range(args.ports)]
    if args.no_http:
        return modem, names, None
    port = free_port()
    args.sink = subprocess.Popen(
        [*me, "--role", "sink", "--port", str(port)], stdout=subprocess.PIPE, cwd=root
    )
    assert args.sink.stdout is not None
    args.sink.stdout.readline()  # listening
    return modem, names, port


async def measure(
    args: argparse.Namespace, modem: subprocess.Popen[bytes], names: list[str], port: int | None
) -> None:
    loop = asyncio.get_running_loop()
    floor = Floor(args, loop)
    if port is not None:
        _, floor.client = await loop.create_connection(_Client, "127.0.0.1", port)
    threading.Thread(target=floor.worker, daemon=True).start()
    for name in names:
        fd = os.open(name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        floor.port(fd)
    await asyncio.sleep(SETTLE)  # the terminals quiet before the load
    expected = int(args.rate * args.duration)
    floor.expected = expected
    cpu0 = time.process_time()
    assert modem.stdin is not None
    modem.stdin.write(b"go\n")
    modem.stdin.flush()
    try:
        async with asyncio.timeout(args.duration + DRAIN):
            await floor.finished.wait()
    except TimeoutError:
        pass
    cpu = time.process_time() - cpu0
    floor.jobs.put(None)
    commit = "none" if args.no_commit else "inline" if args.inline_commit else "thread"
    print(
        f"{floor.done}/{expected} SMS at {args.rate:g}/s over {args.ports} ports, "
        f"{len(floor.commands)} AT exchanges, commit {commit}, "
        f"HTTP {'none' if port is None else 'keep-alive'}: "
        f"{cpu / max(1, floor.done) * 1000:.3f} CPU-s per 1,000 SMS"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["measure", "modem", "sink"], default="measure")
    parser.add_argument("--ports", type=int, default=256)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exchanges", type=int, choices=[1, 2, 3], default=3)
    parser.add_argument("--inline-commit", action="store_true")
    parser.add_argument("--no-commit", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    if args.role == "modem":
        modem_peer(args.ports, args.rate, args.duration)
        return
    if args.role == "sink":
        http_sink(args.port)
        return
    args.sink = None
    modem, names, port = spawn(args)
    try:
        with tempfile.TemporaryDirectory(prefix="muxd-floor-") as tmp:
            args.dir = tmp
            uvloop.run(measure(args, modem, names, port))
    finally:
        for proc in (modem, args.sink):
            if proc is not None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
