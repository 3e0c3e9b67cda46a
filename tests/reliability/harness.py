"""Crash harness: pty modems and the Onlinesim stand-in in this event loop, muxd as a subprocess.

``Harness`` owns a :class:`~muxd_sim.modem.ModemSimulator` (N ptys), the stand-in (served on a
free loopback port, with :class:`AckGate` in front of it) and a ``muxd run`` child process
configured by a TOML file it writes itself. It records the ground truth of every SMS it injects
and compares it with what the stand-in accepted and what the journal holds.

Waiting is event-driven: the stand-in's ``wait_until``, the simulator's hooks (``AT+CMGL`` seen,
``AT+CMGD`` done), the child's exit (a pidfd in the loop). The only poll is the bounded one on the
journal file once everything was delivered. The ``asyncio.sleep`` calls in :func:`crash_round`
choose the random kill moments and downtimes: they are the experiment, not synchronisation.

Used by ``tests/reliability`` (pytest) and ``benchmarks/crash_campaign.py`` (plain asyncio).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiohttp import web

from muxd.store.journal import JOURNAL_FILE
from muxd_sim.changes import Changes
from muxd_sim.ledger import Delivery, Key, Ledger
from muxd_sim.modem import ModemSimulator, SimPort, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, make_app

LOGGER = logging.getLogger(__name__)

KEY = "reliability-key"
DEFAULT_PORTS = 8
DEFAULT_RATE = 30.0  # SMS per second, over all ports
# Slots per simulated SIM. SMS pile up while muxd is dead or starting; 120 slots per port hold
# well over 20 s of 30 SMS/s over 8 ports (1.6 parts per SMS on average). An SMS refused for
# lack of room would be a half-stored set, a defect of the set-up, not of muxd: it is counted
# and reported as a failure of the run.
SIM_CAPACITY = 120
# Daemon settings: a short sweep finds SMS whose +CMTI went to a dead process; batches leave fast.
SWEEP_INTERVAL = 2.0
RESCAN_INTERVAL = 1.0
BATCH_MAX = 100
BATCH_DELAY = 0.05

# Bounds of the event-driven waits. They only stop a hang on a loaded CI machine.
PUBLISH_TIMEOUT = 20.0  # first start: interpreter, port init, the publisher's 2 s debounce
READY_TIMEOUT = 20.0  # a fresh process has swept every port once
EXIT_TIMEOUT = 10.0  # a signalled process is reaped (SIGTERM: graceful stop included)
DELIVERY_TIMEOUT = 40.0  # after the injection stopped, every SMS is at the stand-in
STORAGE_TIMEOUT = 10.0  # after delivery, the trailing AT+CMGD have emptied every SIM
JOURNAL_TIMEOUT = 10.0  # after delivery, the journal has committed "delivered" for all
JOURNAL_POLL_INTERVAL = 0.05  # the bounded poll of the journal file
# How long the stand-in's runner lets a held request finish when the harness closes.
STAND_IN_SHUTDOWN_TIMEOUT = 2.0
LOG_TAIL_LINES = 30
# While catching up on a late schedule, yield to the loop at least this often.
INJECT_YIELD_EVERY = 16

# Kill moments (crash_round). A share of the kills hit start-up (interpreter start, journal open,
# port init and the first sweep), measured from the spawn; the rest hit steady state, measured
# from the moment the new process has swept every port once. After a share of the kills the
# daemon stays down for a moment while SMS keep arriving.
STARTUP_KILL_SHARE = 0.25
STARTUP_KILL_WINDOW = 0.8  # seconds after spawn
STEADY_KILL_WINDOW = 2.0  # seconds after ready
RESTART_PAUSE_SHARE = 0.5
RESTART_PAUSE_MAX = 0.5  # seconds

SENDERS = ("Telegram", "+79161234567", "WhatsApp", "+447700900123", "Google")
_GSM7_FILLER = "Lorem ipsum dolor sit amet, elit."
_GSM7_EXT_FILLER = "Use {x} [y] ~ |z| €5 ^ \\ ok."
_UCS2_FILLER = "Съешь ещё булок, выпей чаю."
_UCS2_EMOJI_FILLER = "Код 😀 ещё 验证码 ок."


def make_text(k: int, rng: random.Random) -> str:
    """The k-th test text: unique, cycling through 7-bit/UCS-2, short/2-part/3-part kinds.

    Long texts repeat a ``<k>`` marker often enough that every part carries it, so no part's
    PDU can equal a part of another SMS (the journal deduplicates parts by raw PDU).
    """
    code = f"{rng.randrange(10**6):06d}"
    kind = k % 8
    if kind == 0:
        return f"Your code is {code} #{k}"  # GSM 7-bit
    if kind == 1:
        return f"Ваш код подтверждения: {code} #{k}"  # UCS-2
    if kind == 2:
        return f"Use {{code}} [ok] ~ €5 {code} #{k}"  # GSM 7-bit with extension characters
    if kind == 3:
        return f"验证码 {code} 😀 #{k}"  # UCS-2 with a surrogate pair
    if kind == 4:
        return _long(k, _GSM7_FILLER, 250)  # GSM 7-bit, 2 parts
    if kind == 5:
        return _long(k, _UCS2_FILLER, 110)  # UCS-2, 2 parts
    if kind == 6:
        return _long(k, _GSM7_EXT_FILLER, 300)  # GSM 7-bit with escapes, 3 parts
    return _long(k, _UCS2_EMOJI_FILLER, 170)  # UCS-2 with surrogate pairs across parts, 3 parts


def _long(k: int, filler: str, length: int) -> str:
    chunk = f"<{k}> {filler} "
    return (chunk * (length // len(chunk) + 1))[:length] + f" #{k}"


def _toml_str(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for anything a path contains.
    return json.dumps(value, ensure_ascii=False)


class DaemonError(RuntimeError):
    """The daemon did something the experiment did not ask for (exited, hung)."""


class AckGate:
    """Holds the stand-in's answers to addMessages while closed.

    The stand-in has accepted the batch (it is in ``stub.messages``) but muxd has not heard the
    acknowledgement yet: the window in which only muxd's shutdown behaviour decides between
    "delivered once" and "sent again after the restart".
    """

    def __init__(self, changes: Changes) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._changes = changes
        self.held = 0  # answers held so far

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def hold(self, request: web.Request) -> None:
        if self._open.is_set() or not request.path.endswith("/addMessages"):
            return
        self.held += 1
        self._changes.bump()
        await self._open.wait()


async def serve_stand_in(stub: Onlinesim, gate: AckGate) -> tuple[web.AppRunner, int]:
    """Serve ``stub`` on a free loopback port behind ``gate``; (runner, port)."""

    @web.middleware
    async def gated(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        await gate.hold(request)
        return response

    app = make_app(stub)
    app.middlewares.append(gated)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=STAND_IN_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    port: int = runner.addresses[0][1]
    return runner, port


@dataclass(frozen=True)
class Injected:
    key: Key
    port: int
    parts: int


@dataclass(frozen=True)
class JournalMessage:
    key: Key
    state: str
    attempts: int


@dataclass
class Verdict:
    """Ground truth against the stand-in and the journal, after the daemon stopped."""

    injected: int
    multipart: int  # injected SMS of 2 or more parts
    accepted: int  # messages the stand-in accepted, copies included
    delivered: int  # distinct injected SMS at the stand-in
    lost: list[Key]
    corrupted: list[Key]  # at the stand-in, never injected
    duplicated: dict[Key, int]  # key -> copies at the stand-in (> 1)
    # (key, copies, journal attempts) where copies exceed what the attempts can explain
    unexplained: list[tuple[Key, int, int]]
    stub_duplicates: int  # the stand-in's own counter
    journal_states: dict[str, int]
    part_states: dict[str, int]
    journal_missing: list[Key]  # injected, never journaled
    journal_doubles: list[Key]  # journaled as more than one message
    max_attempts: int
    resent: int  # journal messages with attempts >= 2
    storage_left: int
    refused: int
    sim_errors: list[str]
    rejected_requests: int  # requests the stand-in refused (4xx other than faults)

    @property
    def duplicate_copies(self) -> int:
        return sum(copies - 1 for copies in self.duplicated.values())


class Harness:
    """Simulator + stand-in in this loop, ``muxd run`` as a child process (module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        ports: int = DEFAULT_PORTS,
        rate: float = DEFAULT_RATE,
        seed: int = 0,
    ) -> None:
        self.workdir = workdir
        self.n_ports = ports
        self.rate = rate
        self.dev_dir = workdir / "dev"
        self.state_dir = workdir / "state"
        self.journal_path = self.state_dir / JOURNAL_FILE
        self.numbers_path = workdir / "numbers.csv"
        self.config_path = workdir / "muxd.toml"
        self.log_path = workdir / "muxd.log"
        self.changes = Changes()
        self.gate = AckGate(self.changes)
        self.stub = Onlinesim(api_key=KEY)
        self.sim = ModemSimulator(
            ports,
            self.dev_dir,
            capacity=SIM_CAPACITY,
            on_command=self._on_command,
            on_delete=self._on_delete,
        )
        self.injected: list[Injected] = []
        self.starts = 0
        self.exit_statuses: list[int] = []
        self.settle_seconds = 0.0
        self.last_exit_seconds = 0.0  # from wait_exit's start to the reaping
        self._inject_rng = random.Random(f"{seed}/inject")
        self.ledger = Ledger()  # injected SMS against what the stand-in accepted
        self._absorbed = 0
        self._sweeps: Counter[int] = Counter()
        self._sweeps_at_start: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._exit: asyncio.Future[int] | None = None
        self._injector: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._runner, port = await serve_stand_in(self.stub, self.gate)
            self.sim.start()
            write_numbers_csv(self.sim, self.numbers_path, share=1.0)
            self.config_path.write_text(self.config_text(port), encoding="utf-8")
            self._log = self.log_path.open("ab")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop everything this harness started; safe to call more than once."""
        await self.stop_injecting()
        if self._proc is not None:
            with contextlib.suppress(DaemonError):
                await self.kill_daemon(signal.SIGKILL)
        self.gate.open()
        self.sim.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def config_text(self, stand_in_port: int) -> str:
        ports = _toml_str(str(self.dev_dir / "port*"))
        return (
            f"state_dir = {_toml_str(str(self.state_dir))}\n"
            "\n[modems]\n"
            f"ports = [{ports}]\n"
            f"sweep_interval = {SWEEP_INTERVAL}\n"
            f"rescan_interval = {RESCAN_INTERVAL}\n"
            "\n[numbers]\n"
            f"file = {_toml_str(str(self.numbers_path))}\n"
            "\n[upstream]\n"
            f'url = "http://127.0.0.1:{stand_in_port}"\n'
            f"api_key = {_toml_str(KEY)}\n"
            f"batch_max = {BATCH_MAX}\n"
            f"batch_delay = {BATCH_DELAY}\n"
            "\n[http]\n"
            'listen = "127.0.0.1:0"\n'
        )

    # -- simulator hooks (synchronous, inside the simulator's pty handling) -------------------

    def _on_command(self, port: SimPort, line: str) -> None:
        if line.upper().startswith("AT+CMGL"):
            self._sweeps[port.index] += 1
            self.changes.bump()

    def _on_delete(self, port: SimPort, index: int, pdu_hex: str) -> None:
        self.changes.bump()

    # -- the daemon ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start_daemon(self) -> None:
        """Spawn ``muxd run`` (output appended to ``muxd.log``); returns at once."""
        if self._proc is not None:
            raise DaemonError("the daemon is already running")
        assert self._log is not None
        self.starts += 1
        self._sweeps_at_start = Counter(self._sweeps)
        self._log.write(f"--- harness: start {self.starts} ---\n".encode())
        self._log.flush()
        loop = asyncio.get_running_loop()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "muxd",
                "run",
                "-c",
                str(self.config_path),
                "--no-uvloop",
                "--log-level",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        exited: asyncio.Future[int] = loop.create_future()
        self._proc, self._exit = proc, exited
        self._watch_exit(proc, exited)

    def _watch_exit(self, proc: subprocess.Popen[bytes], exited: asyncio.Future[int]) -> None:
        loop = asyncio.get_running_loop()

        def done(status: int) -> None:
            if not exited.done():
                exited.set_result(status)
            self.changes.bump()

        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): a thread waits instead

            def wait() -> None:
                status = proc.wait()
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    loop.call_soon_threadsafe(done, status)

            threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            done(proc.wait())

        loop.add_reader(pidfd, readable)

    def signal_daemon(self, sig: int) -> None:
        """Send ``sig`` to the running daemon (no-op once it has exited)."""
        if self._proc is None or self._exit is None:
            raise DaemonError("the daemon is not running")
        if not self._exit.done():
            self._proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int | None:
        """Wait until the daemon was reaped; its status (-N: signal N), None on timeout."""
        proc, exited = self._proc, self._exit
        if proc is None or exited is None:
            raise DaemonError("the daemon is not running")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                status = await asyncio.shield(exited)
        except TimeoutError:
            return None
        self._proc = self._exit = None
        self.exit_statuses.append(status)
        self.last_exit_seconds = loop.time() - started
        return status

    async def kill_daemon(self, sig: int = signal.SIGKILL, *, timeout: float = EXIT_TIMEOUT) -> int:
        """Send ``sig`` and wait until the process is reaped; return its status (-N: signal N).

        Raises DaemonError (after a SIGKILL) when it did not exit within ``timeout``.
        """
        self.signal_daemon(sig)
        status = await self.wait_exit(timeout)
        if status is None:
            self.signal_daemon(signal.SIGKILL)
            await self.wait_exit(EXIT_TIMEOUT)
            raise DaemonError(
                f"muxd did not exit within {timeout} s of signal {sig}\n{self.log_tail()}"
            )
        return status

    async def wait_ready(self, *, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the current process has swept (AT+CMGL) every port at least once."""
        exited = self._exit
        if exited is None:
            raise DaemonError("the daemon is not running")

        def swept() -> int:
            return sum(1 for i in range(self.n_ports) if self._sweeps[i] > self._sweeps_at_start[i])

        await self.changes.wait_until(
            lambda: exited.done() or swept() == self.n_ports,
            timeout=timeout,
            what=lambda: f"every port swept ({swept()}/{self.n_ports})",
        )
        if exited.done():
            raise DaemonError(
                f"muxd exited ({exited.result()}) before it was ready\n{self.log_tail()}"
            )

    async def wait_published(self, *, timeout: float = PUBLISH_TIMEOUT) -> None:
        """Wait until the stand-in lists every port's number (the daemon published them)."""
        wanted = {port.number for port in self.sim.ports}
        await self.stub.wait_until(
            lambda: set(self.stub.numbers) == wanted,
            timeout=timeout,
            what=lambda: f"{len(wanted)} numbers listed (have {len(self.stub.numbers)})",
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no daemon log)"
        return "daemon log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Daemon log lines that point at a bug rather than at a kill (tracebacks, CRITICAL)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        markers = ("Traceback", "CRITICAL", "unexpected failure", "never retrieved")
        return [line for line in text.splitlines() if any(m in line for m in markers)]

    # -- injection -------------------------------------------------------------------------

    def inject_one(self) -> Injected:
        """Put one new unique SMS on a random port's SIM and record it as ground truth."""
        rng = self._inject_rng
        k = len(self.injected)
        port = self.sim.ports[rng.randrange(self.n_ports)]
        sender = SENDERS[rng.randrange(len(SENDERS))]
        text = make_text(k, rng)
        used = port.state.used
        self.sim.inject(port.index, sender, text)
        injected = Injected((port.number, sender, text), port.index, port.state.used - used)
        self.injected.append(injected)
        self.ledger.add(*injected.key, t=time.monotonic(), port=port.name)
        return injected

    def start_injecting(self, rate: float | None = None) -> None:
        """Inject at ``rate`` SMS/s (default: the harness's) until :meth:`stop_injecting`."""
        if self._injector is not None:
            raise RuntimeError("already injecting")
        self._injector = asyncio.create_task(self._inject_loop(rate or self.rate), name="inject")

    async def _inject_loop(self, rate: float) -> None:
        # Paced on loop.time() targets (the k-th SMS is due at start + k / rate).
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in itertools.count():
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif k % INJECT_YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self.inject_one()

    async def stop_injecting(self) -> None:
        task, self._injector = self._injector, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- waiting for the outcome -----------------------------------------------------------

    def _absorb(self) -> None:
        messages = self.stub.messages
        now = time.monotonic()
        for message in messages[self._absorbed :]:
            self.ledger.add_delivery(Delivery(now, message.number, message.from_, message.message))
        self._absorbed = len(messages)

    def outstanding(self) -> int:
        """Injected SMS not (yet) at the stand-in."""
        self._absorb()
        return self.ledger.outstanding()

    async def wait_delivered(self, *, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until every injected SMS is at the stand-in."""
        try:
            await self.stub.wait_until(
                lambda: self.outstanding() == 0,
                timeout=timeout,
                what=lambda: f"every SMS delivered ({self.outstanding()} outstanding)",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def storage_used(self) -> int:
        return sum(port.state.used for port in self.sim.ports)

    async def wait_storage_empty(self, *, timeout: float = STORAGE_TIMEOUT) -> None:
        """Wait until every SIM's storage is empty (the AT+CMGD after each commit arrived)."""
        await self.changes.wait_until(
            lambda: self.storage_used() == 0,
            timeout=timeout,
            what=lambda: f"empty SIM storage ({self.storage_used()} slots used)",
        )

    def _journal(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.journal_path.as_uri()}?mode=ro", uri=True)

    def journal_unsettled(self) -> int:
        """Pending messages plus parts still waiting for their set, read from the journal file."""
        conn = self._journal()
        try:
            (pending,) = conn.execute(
                "SELECT count(*) FROM messages WHERE state = 'pending'"
            ).fetchone()
            (waiting,) = conn.execute(
                "SELECT count(*) FROM parts WHERE state = 'waiting'"
            ).fetchone()
        finally:
            conn.close()
        return int(pending) + int(waiting)

    async def wait_journal_settled(self, *, timeout: float = JOURNAL_TIMEOUT) -> None:
        """Bounded poll of the journal file until nothing is pending or waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := self.journal_unsettled()) > 0:
            if loop.time() >= deadline:
                raise TimeoutError(f"journal still has {left} unsettled rows after {timeout} s")
            await asyncio.sleep(JOURNAL_POLL_INTERVAL)

    async def settle(self) -> Verdict:
        """Stop injecting, wait until everything is delivered and committed, stop the daemon
        (SIGTERM, must exit 0) and return the verdict."""
        await self.stop_injecting()
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self.running:
            self.start_daemon()
        await self.wait_delivered()
        await self.wait_storage_empty()
        await self.wait_journal_settled()
        self.settle_seconds = loop.time() - started
        status = await self.kill_daemon(signal.SIGTERM)
        if status != 0:
            raise DaemonError(f"muxd exited {status} on SIGTERM\n{self.log_tail()}")
        return self.verdict()

    # -- the verdict -----------------------------------------------------------------------

    def journal_messages(self) -> list[JournalMessage]:
        conn = self._journal()
        try:
            rows = conn.execute(
                "SELECT number, sender, text, state, attempts FROM messages ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        return [JournalMessage((n, s, t), state, attempts) for n, s, t, state, attempts in rows]

    def journal_part_states(self) -> dict[str, int]:
        conn = self._journal()
        try:
            rows = conn.execute("SELECT state, count(*) FROM parts GROUP BY state").fetchall()
        finally:
            conn.close()
        return {str(state): int(n) for state, n in rows}

    def verdict(self) -> Verdict:
        """Compare ground truth, stand-in and journal (call once the daemon has stopped)."""
        self._absorb()
        ledger = self.ledger
        journal = self.journal_messages()
        journaled: dict[Key, list[JournalMessage]] = {}
        for row in journal:
            journaled.setdefault(row.key, []).append(row)
        duplicated = ledger.duplicates()
        unexplained = []
        for key, copies in sorted(duplicated.items()):
            # Each attempt puts at most one copy upstream. The count is a deferred write
            # (committed within DEFERRED_WITHIN of the send): a kill -9 in that window leaves
            # the copy it sent uncounted, so one copy more than the attempts is explained.
            attempts = sum(row.attempts for row in journaled.get(key, []))
            if attempts + 1 < copies:
                unexplained.append((key, copies, attempts))
        return Verdict(
            injected=len(self.injected),
            multipart=sum(1 for i in self.injected if i.parts > 1),
            accepted=ledger.received(),
            delivered=ledger.delivered,
            lost=ledger.lost(),
            corrupted=ledger.unknown(),
            duplicated=duplicated,
            unexplained=unexplained,
            stub_duplicates=self.stub.duplicates,
            journal_states=dict(Counter(row.state for row in journal)),
            part_states=self.journal_part_states(),
            journal_missing=sorted(key for key in ledger.by_key if key not in journaled),
            journal_doubles=sorted(key for key, rows in journaled.items() if len(rows) > 1),
            max_attempts=max((row.attempts for row in journal), default=0),
            resent=sum(1 for row in journal if row.attempts >= 2),
            storage_left=self.storage_used(),
            refused=self.sim.refused,
            sim_errors=[repr(e) for e in self.sim.errors],
            rejected_requests=sum(
                1
                for r in self.stub.requests
                if r.status >= 400 and r.reason not in ("fault", "down", "disabled")
            ),
        )


# -- the crash campaign ------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    index: int
    phase: str  # "startup" (measured from spawn) or "steady" (measured from ready)
    delay: float  # seconds from that moment to SIGKILL
    pause: float  # seconds the daemon stayed down
    status: int  # exit status of the killed process (-9 expected)
    injected: int  # SMS injected so far


@dataclass
class CampaignResult:
    seed: int
    ports: int
    rate: float
    rounds: list[Round]
    verdict: Verdict
    elapsed: float
    settle_seconds: float  # from the end of the injection until all was delivered and committed
    log_problems: list[str] = field(default_factory=list)

    @property
    def duplicate_bound(self) -> int:
        # Per crash at most one batch can be acknowledged upstream but not yet committed.
        return len(self.rounds) * BATCH_MAX

    def problems(self) -> list[str]:
        """Every violated promise, in words (empty: the run passed)."""
        v = self.verdict
        out = []
        if v.lost:
            out.append(f"{len(v.lost)} SMS lost, e.g. {v.lost[:3]}")
        if v.corrupted:
            out.append(f"{len(v.corrupted)} messages never injected, e.g. {v.corrupted[:3]}")
        if v.unexplained:
            out.append(f"duplicates without enough journal attempts: {v.unexplained[:5]}")
        if v.duplicate_copies > self.duplicate_bound:
            out.append(f"{v.duplicate_copies} duplicates > bound {self.duplicate_bound}")
        if v.journal_missing or v.journal_doubles:
            out.append(
                f"journal: {len(v.journal_missing)} SMS missing, {len(v.journal_doubles)} "
                f"journaled twice, e.g. {(v.journal_missing + v.journal_doubles)[:3]}"
            )
        if set(v.journal_states) != {"delivered"}:
            out.append(f"journal message states {v.journal_states}")
        if set(v.part_states) - {"assembled"}:
            out.append(f"journal part states {v.part_states}")
        if v.storage_left:
            out.append(f"{v.storage_left} SMS left on the SIMs")
        if v.refused:
            out.append(f"{v.refused} SMS refused by full SIM storage (set-up too tight)")
        if v.sim_errors:
            out.append(f"simulator errors: {v.sim_errors[:3]}")
        bad_kills = [r for r in self.rounds if r.status != -signal.SIGKILL]
        if bad_kills:
            out.append(f"rounds whose process did not die of SIGKILL: {bad_kills[:3]}")
        if self.log_problems:
            out.append(f"daemon log: {self.log_problems[:5]}")
        return out

    def summary(self) -> str:
        v = self.verdict
        phases = Counter(r.phase for r in self.rounds)
        paused = sum(1 for r in self.rounds if r.pause > 0)
        return "\n".join(
            [
                f"seed        {self.seed}",
                f"rounds      {len(self.rounds)} SIGKILLs ({phases['startup']} in start-up, "
                f"{phases['steady']} in steady state; {paused} followed by a pause)",
                f"ports/rate  {self.ports} ports, {self.rate:g} SMS/s",
                f"injected    {v.injected} ({v.multipart} multipart)",
                f"delivered   {v.delivered} distinct, {v.accepted} accepted upstream",
                f"lost        {len(v.lost)}",
                f"duplicated  {len(v.duplicated)} SMS, {v.duplicate_copies} extra copies "
                f"(each with journal attempts >= 2: {not v.unexplained}; "
                f"bound {self.duplicate_bound}; stand-in counter {v.stub_duplicates})",
                f"corrupted   {len(v.corrupted)}",
                f"resent      {v.resent} journal messages with attempts >= 2, "
                f"max attempts {v.max_attempts}",
                f"journal     messages {v.journal_states}, parts {v.part_states}",
                f"sim storage {v.storage_left} left, {v.refused} refused",
                f"rejected    {v.rejected_requests} upstream requests refused",
                f"elapsed     {self.elapsed:.1f} s (settling after the last SMS: "
                f"{self.settle_seconds:.1f} s)",
                f"problems    {self.problems() or 'none'}",
            ]
        )


async def crash_round(harness: Harness, rng: random.Random, index: int) -> Round:
    """SIGKILL the running daemon at a random moment, maybe pause, start a new one."""
    if rng.random() < STARTUP_KILL_SHARE:
        phase, delay = "startup", rng.uniform(0.0, STARTUP_KILL_WINDOW)
    else:
        phase, delay = "steady", rng.uniform(0.0, STEADY_KILL_WINDOW)
        await harness.wait_ready()
    await asyncio.sleep(delay)  # the experiment: the random kill moment
    status = await harness.kill_daemon(signal.SIGKILL)
    pause = rng.uniform(0.0, RESTART_PAUSE_MAX) if rng.random() < RESTART_PAUSE_SHARE else 0.0
    if pause > 0:
        await asyncio.sleep(pause)  # the experiment: downtime while SMS keep arriving
    harness.start_daemon()
    return Round(index, phase, delay, pause, status, len(harness.injected))


async def crash_campaign(
    workdir: Path,
    *,
    rounds: int,
    seed: int,
    ports: int = DEFAULT_PORTS,
    rate: float = DEFAULT_RATE,
    progress: Callable[[str], None] | None = None,
    progress_every: int = 10,
) -> CampaignResult:
    """Inject steadily, SIGKILL and restart the daemon ``rounds`` times, then settle and judge."""
    say = progress or LOGGER.info
    rng = random.Random(f"{seed}/kill")
    loop = asyncio.get_running_loop()
    started = loop.time()
    say(f"crash campaign: seed {seed}, {rounds} rounds, {ports} ports, {rate:g} SMS/s")
    async with Harness(workdir, ports=ports, rate=rate, seed=seed) as harness:
        harness.start_daemon()
        await harness.wait_published()
        harness.start_injecting()
        done: list[Round] = []
        for index in range(rounds):
            done.append(await crash_round(harness, rng, index))
            if (index + 1) % progress_every == 0:
                say(
                    f"round {index + 1}/{rounds}: {len(harness.injected)} injected, "
                    f"{harness.outstanding()} not yet upstream, "
                    f"{loop.time() - started:.1f} s"
                )
        # The last process is still starting: let it sweep once while SMS keep arriving, so
        # the settle below measures delivery, not the shipper's idle poll (see test_sigterm).
        await harness.wait_ready()
        verdict = await harness.settle()
        problems = harness.log_problems()
    return CampaignResult(
        seed=seed,
        ports=ports,
        rate=rate,
        rounds=done,
        verdict=verdict,
        elapsed=loop.time() - started,
        settle_seconds=harness.settle_seconds,
        log_problems=problems,
    )
