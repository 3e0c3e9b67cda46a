"""Schemathesis against muxd's v1 partner server, from its published OpenAPI document.

    python -m tests.fuzz.schemathesis_v1 [--examples 2000] [--seed N] [--workers 2]

Starts a :class:`V1Service` on a free loopback port (a real journal in a temp dir, fake
sellable ports in three countries, rent offered) in a thread of this process, then runs
``st run`` (schemathesis' CLI, a child process) against ``openapi.json`` as served, bounded
to about ``--examples`` generated requests spread over the documented operations, plus the
deterministic examples and coverage cases. Everything stays on 127.0.0.1.

The document's ``Key`` schema is pinned to the server's key for the run, so the requests
schemathesis means as valid get past authentication (the negative ones still try others and
must get 401). Every check schemathesis has is on: no 5xx, status codes, content types and
response bodies as documented, schema-violating requests refused (4xx) and schema-valid ones
accepted (2xx). Afterwards the server itself is checked: no request answered 500, no
unhandled exception logged by aiohttp, and the service's in-memory Book equal to what the
journal holds (nothing half made, nothing held). Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from muxd.config import V1Config
from muxd.numbering import calling_code
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal
from muxd.upstream.v1 import V1Observer, V1Service
from muxd.upstream.v1.operations import load_state

KEY = "schemathesis-v1-key"
# Countries and MCC+MNC of the fake SIMs (names.py: russia mts/beeline/megafon, ukraine
# kyivstar, germany telekom): enough numbers that GET_NUMBER keeps succeeding all run.
FLEET = [
    ("+7900", 25001, 60),
    ("+7901", 25099, 60),
    ("+7902", 25002, 40),
    ("+38067", 25503, 40),
    ("+49151", 26201, 40),
]
SERVICES = ["vk", "wa", "tg", "facebook"]
# Documented operations: seven POST paths and GET /openapi.json.
OPERATIONS = 8
STARTUP = 10.0
# Bounds the whole schemathesis run (it ends by itself far sooner).
RUN_LIMIT = 1800.0


def fleet() -> list[PortInfo]:
    ports: list[PortInfo] = []
    for prefix, operator, count in FLEET:
        for i in range(count):
            number = f"{prefix}{i:07d}"
            ports.append(
                PortInfo(
                    name=f"port{len(ports):03d}",
                    path=f"/dev/fake{len(ports)}",
                    status=PortStatus.READY,
                    number=number,
                    operator=operator,
                    country_id=calling_code(number),
                    registered=True,
                )
            )
    return ports


class Tally(V1Observer):
    """Counts the server's answers by (action, result); called on the server's loop only."""

    def __init__(self) -> None:
        self.results: Counter[tuple[str, str]] = Counter()

    def request(self, action: str, result: str, seconds: float) -> None:
        self.results[(action, result)] += 1


class Unhandled(logging.Handler):
    """aiohttp logs an exception a handler let through (answered 500) at ERROR."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.protocol_errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            # aiohttp's HTTP parser refused the message itself (a NUL in a header, say) and
            # answered 400 before muxd saw it
            self.protocol_errors += 1
            return
        self.records.append(self.format(record))


class Server:
    """The v1 service on its own event loop in a thread."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = 0
        self.tally = Tally()
        self.problems: list[str] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="v1-server", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(STARTUP) or self._error is not None:
            raise RuntimeError(f"the v1 server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP * 3)
        if self._thread.is_alive():
            self.problems.append("the v1 server did not stop")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self.problems.append(f"the v1 server died: {exc!r}")
            self._ready.set()
            raise  # the thread's traceback, printed

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ports = fleet()
        cfg = V1Config(
            listen="127.0.0.1:0",
            # never called: no SMS arrives in this run (and 9 is the discard port)
            push_sms_url="http://127.0.0.1:9/v1/PUSH_SMS",
            push_sms_rent_url="http://127.0.0.1:9/pushSmsRent",
            services=SERVICES,
            rent=True,
        )
        journal = await Journal.open(self.state_dir)
        try:
            async with aiohttp.ClientSession() as http:
                svc = V1Service(cfg, KEY, journal, lambda: ports, http, observer=self.tally)
                task = asyncio.create_task(svc.run())
                started = asyncio.ensure_future(svc.started.wait())
                await asyncio.wait((started, task), timeout=STARTUP, return_when="FIRST_COMPLETED")
                if task.done():
                    task.result()
                self.port = svc.port
                self._ready.set()
                await self._stop.wait()
                await self._check_book(svc, journal)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await journal.close()

    async def _check_book(self, svc: V1Service, journal: Journal) -> None:
        state = await load_state(journal)
        book = svc.book
        if {op.activation_id: op for op in state.open} != book.open_by_id:
            self.problems.append("open operations in the Book differ from the journal's")
        sold: dict[str, set[str]] = {}
        for number, service in state.sold:
            sold.setdefault(number, set()).add(service)
        if sold != book.sold:
            self.problems.append("sales in the Book differ from the journal's")
        if book.holding:
            self.problems.append(f"numbers still held after the run: {sorted(book.holding)}")
        by_number = {op.number: op for op in book.open_by_id.values()}
        if by_number != book.open_by_number:
            self.problems.append("the Book's two indexes of open operations disagree")


def fetch(url: str) -> bytes:
    """A plain GET (this thread has no event loop); loopback only."""
    with urllib.request.urlopen(url, timeout=STARTUP) as resp:
        body: bytes = resp.read()
    return body


def pinned_document(path: Path, base_url: str) -> Path:
    """The served document, the key pinned to the server's (see the module docstring)."""
    doc: dict[str, Any] = json.loads(fetch(base_url + "/openapi.json"))
    shipped = json.loads(
        resources.files("muxd.upstream.v1").joinpath("openapi.json").read_text("utf-8")
    )
    if doc != shipped:
        raise RuntimeError("GET /openapi.json is not the shipped openapi.json")
    doc["components"]["schemas"]["Key"] = {"type": "string", "enum": [KEY]}
    path.write_text(json.dumps(doc))
    return path


def schemathesis_command(document: Path, base_url: str, args: argparse.Namespace) -> list[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        raise SystemExit("schemathesis is not installed: pip install -e '.[fuzz]'")
    per_operation = max(1, args.examples // OPERATIONS)
    command = [
        st,
        "run",
        str(document),
        "--url",
        base_url,
        "--checks",
        "all",
        "--max-examples",
        str(per_operation),
        "--workers",
        str(args.workers),
        "--request-timeout",
        "15",
        "--generation-database",
        "none",
        "--no-color",
        "--suppress-health-check",
        "too_slow,filter_too_much",
    ]
    if args.report_dir is not None:
        command += ["--report", "junit", "--report-dir", str(args.report_dir.resolve())]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="generated requests, about")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-dir", type=Path, default=None, help="write a JUnit report here")
    args = parser.parse_args(argv)

    unhandled = Unhandled()
    for name in ("aiohttp.server", "aiohttp.web", "muxd"):
        logging.getLogger(name).addHandler(unhandled)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # 401s and 400s are logged at WARNING/INFO: thousands of them are the point of the run
    logging.getLogger("muxd").setLevel(logging.ERROR)
    # aiohttp's tracebacks for malformed HTTP go to the tally only (unhandled ones are printed)
    logging.getLogger("aiohttp.server").propagate = False

    with tempfile.TemporaryDirectory(prefix="muxd-st-v1-") as tmp:
        with Server(Path(tmp) / "state") as server:
            base_url = f"http://127.0.0.1:{server.port}"
            document = pinned_document(Path(tmp) / "openapi.json", base_url)
            command = schemathesis_command(document, base_url, args)
            print("$", " ".join(command), flush=True)
            started = time.monotonic()
            env = {**os.environ, "NO_COLOR": "1"}
            try:
                # in the temp dir: schemathesis keeps a cache (.schemathesis/) in its cwd
                code = subprocess.run(
                    command, cwd=tmp, timeout=RUN_LIMIT, env=env, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                print(f"schemathesis did not finish in {RUN_LIMIT:.0f} s")
                code = -1
            elapsed = time.monotonic() - started
        problems = list(server.problems)

    results = server.tally.results
    served = sum(results.values())
    errors = sum(n for (_, result), n in results.items() if result == "error")
    print(f"\nmuxd v1 server: {served} requests answered in {elapsed:.0f} s")
    for (action, result), n in sorted(results.items()):
        print(f"  {action:<18} {result:<18} {n}")
    if unhandled.protocol_errors:
        print(f"  ({unhandled.protocol_errors} malformed HTTP messages refused 400 by aiohttp)")
    if errors:
        problems.append(f"{errors} requests answered 500")
    if unhandled.records:
        problems.append(f"{len(unhandled.records)} errors logged, first: {unhandled.records[0]}")
        for record in unhandled.records[:5]:
            print(record)
    if code != 0:
        problems.append(f"schemathesis exited {code}")
    for problem in problems:
        print("FAIL:", problem)
    print("PASS" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
