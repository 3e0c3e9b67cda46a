"""Fleet harness: pty modems + the Onlinesim stand-in + the Daemon, all in this event loop.

``FleetHarness`` owns a :class:`~muxd_sim.modem.ModemSimulator` (real ptys), the Onlinesim v2
stand-in (served on a free loopback port) and an in-process :class:`~muxd.app.Daemon` reading
every port. It keeps the ground truth of what it injected and checks, in :meth:`settle`, the
receive path's invariants end to end:

* exactly once: the stand-in accepted every injected SMS once, with the right number, sender
  and text, and nothing else (the ground-truth :class:`~muxd_sim.ledger.Ledger`), and counted
  no duplicate;
* never delete before durable: every ``AT+CMGD`` (the simulator's ``on_delete`` hook, called
  before the ``OK`` goes out) found its PDU already committed, seen through a second SQLite
  connection (which sees committed rows only);
* storage is emptied: no message is left in any memory of any simulated modem.

Waiting is event-driven: the stand-in's ``wait_until`` and :meth:`FleetHarness.until`, which
re-checks its condition after every simulator hook (command, delete, event) and every change of
the stand-in. The timeouts below only bound a hang on a loaded CI machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import itertools
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from unittest import mock

import muxd.app
from muxd.app import Daemon
from muxd.config import (
    Config,
    HttpConfig,
    ModemsConfig,
    NumbersConfig,
    UpstreamConfig,
)
from muxd.ports import PortInfo, PortStatus
from muxd.store.journal import JOURNAL_FILE
from muxd.upstream.publisher import NumbersPublisher
from muxd_sim.ledger import Delivery, Ledger
from muxd_sim.modem import FaultPlan, ModemSimulator, SimPort
from muxd_sim.modem_ident import ModemIdentity
from muxd_sim.modem_state import SIM_STORAGE
from muxd_sim.onlinesim import Onlinesim, ServedStub, serve

LOGGER = logging.getLogger(__name__)

KEY = "fleet-key"
ALL_FLAVOURS = ("generic", "quectel", "simcom", "sim800", "huawei", "telit")

# Bounds of the event-driven waits; they only stop a hang (the waits end in well under a second
# to a few seconds here). READY covers port init and the first publication.
READY_TIMEOUT = 20.0
SETTLE_TIMEOUT = 30.0  # every injected SMS is at the stand-in
STORAGE_TIMEOUT = 10.0  # after delivery, the trailing AT+CMGD have emptied every memory
FORWARDED_TIMEOUT = 10.0  # after delivery, the journal has marked them delivered

# Daemon settings for tests: frequent sweeps and rescans, batches leave at once.
SWEEP_INTERVAL = 2.0
RESCAN_INTERVAL = 0.5
BATCH_DELAY = 0.05
# The publisher waits this long after a port change for more changes before it publishes (2 s in
# production, a batching choice with no bearing on correctness): short here, since every test
# waits for at least one publication.
PUBLISH_DEBOUNCE = 0.2
# Huawei-style periodic URCs (^RSSI, ^BOOT...) this often, so silencing is observable quickly.
URC_INTERVAL = 0.2
# Slots per memory: room for what piles up while a port is hung or gone.
SIM_CAPACITY = 60

# The mix: senders (alphanumeric, international, national and short-code numeric) and texts.
SENDERS = (
    "Telegram",
    "+79161234567",
    "WhatsApp",
    "+447700900123",
    "Sber 900",
    "900",
    "89161234567",
    "Ozon.ru",
)
UCS2_PART_UNITS = {8: 67, 16: 66}  # UTF-16 units per concatenated UCS-2 part (8/16-bit ref)


def _gsm_long(tag: str) -> str:
    """A GSM 7-bit text of 3 parts; escape pairs ({, }, €) fall on the part boundaries."""
    body = f"Long GSM text {tag} "
    filler = "abcdefghij" * 16
    # 153 septets per part with an 8-bit ref (152 with 16): put escapes near both limits.
    return body + filler[: 150 - len(body)] + "{€}" + filler + " [end] ~ " + tag


def _ucs2_straddling(tag: str, ref_bits: int) -> str:
    """A UCS-2 text whose emoji (a surrogate pair) straddles the boundary of parts 1 and 2."""
    units = UCS2_PART_UNITS[ref_bits]
    head = f"Ж{tag} "
    pad = "Ю" * (units - 1 - len(head))
    text = head + pad + "😀" + " хвост " + "я" * 40 + f" 🎉 {tag}"
    assert len(text.encode("utf-16-be")) // 2 > units
    return text


# (kind, text template, ref_bits, order): every variant the mix cycles through.
_KINDS: tuple[tuple[str, Callable[[str], str], int | None, str | None], ...] = (
    ("gsm7", lambda t: f"Your code is {t}", None, None),
    ("ucs2", lambda t: f"Ваш код подтверждения: {t}", None, None),
    ("gsm7-ext", lambda t: f"Use {{code}} [ok] ~ €5 | ^\\ {t}", None, None),
    ("emoji", lambda t: f"验证码 {t} 😀👍🏽", None, None),
    ("gsm7-long-8-shuffle", _gsm_long, 8, "shuffle"),
    ("ucs2-long-16-reverse", lambda t: _ucs2_straddling(t, 16), 16, "reverse"),
    ("gsm7-long-16-reverse", _gsm_long, 16, "reverse"),
    ("ucs2-long-8-shuffle", lambda t: _ucs2_straddling(t, 8), 8, "shuffle"),
)


@dataclass(frozen=True)
class Injected:
    """One SMS given to a simulated modem (ground truth)."""

    port: int
    number: str
    sender: str
    text: str
    kind: str
    mem: str  # the memory it was stored in
    parts: int  # parts stored (0: refused)
    complete: bool  # every part stored (else it is not expected upstream)


@dataclass(frozen=True)
class Deleted:
    """One AT+CMGD as the simulator saw it, before its OK was sent."""

    port: int
    mem: str
    index: int
    pdu: str
    committed: bool


@dataclass
class Tick:
    """A periodic-URC round of one port (Huawei) and whether it put anything on the wire."""

    port: int
    emitted: bool
    after_silence: bool  # AT^CURC=0 had been received by then


@dataclass
class FleetHarness:
    """Simulator + stand-in + daemon for one test (see the module docstring).

    ``numbers``: ``"odd"`` writes the numbers file for the ports whose SIM has no number in
    ``AT+CNUM`` (odd indices), ``"all"`` for every port (for ``cnum_empty``). ``extra_numbers``
    adds rows (ICCID, number), e.g. for SIMs inserted later by :meth:`swap_sim`.
    """

    tmp_path: Path
    ports: int
    flavours: Sequence[str] = ALL_FLAVOURS
    faults: FaultPlan | None = None
    fault_share: float = 1.0
    seed: int = 0
    sweep_interval: float = SWEEP_INTERVAL
    rescan_interval: float = RESCAN_INTERVAL
    capacity: int = SIM_CAPACITY
    numbers: str = "odd"
    extra_numbers: Sequence[tuple[str, str]] = ()
    autostart: bool = True

    sim: ModemSimulator = field(init=False)
    stub: Onlinesim = field(init=False)
    daemon: Daemon = field(init=False)
    injected: list[Injected] = field(init=False, default_factory=list)
    ledger: Ledger = field(init=False, default_factory=Ledger)  # injected vs accepted upstream
    deletes: list[Deleted] = field(init=False, default_factory=list)
    commands: list[tuple[int, str]] = field(init=False, default_factory=list)
    events: list[tuple[int, str]] = field(init=False, default_factory=list)
    ticks: list[Tick] = field(init=False, default_factory=list)
    stored_parts: int = field(init=False, default=0)
    discarded_parts: int = field(init=False, default=0)
    _served: ServedStub | None = field(init=False, default=None)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _patches: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)
    _waiters: set[asyncio.Future[None]] = field(init=False, default_factory=set)
    _counter: itertools.count[int] = field(init=False, default_factory=itertools.count)
    _absorbed: int = field(init=False, default=0)  # stand-in messages given to the ledger
    _rng: random.Random = field(init=False)
    _silenced: set[int] = field(init=False, default_factory=set)
    _command_hooks: list[Callable[[SimPort, str], None]] = field(init=False, default_factory=list)

    # ------------------------------------------------------------------ lifecycle

    @property
    def journal_path(self) -> Path:
        return self.tmp_path / "state" / JOURNAL_FILE

    @property
    def dev(self) -> Path:
        return self.tmp_path / "dev"

    async def __aenter__(self) -> Self:
        self._rng = random.Random(f"fleet-harness:{self.seed}")
        self.dev.mkdir(parents=True, exist_ok=True)
        self.stub = Onlinesim(api_key=KEY, seed=self.seed)
        self._served = await serve(self.stub, "127.0.0.1", 0)
        try:
            self.sim = ModemSimulator(
                self.ports,
                self.dev,
                seed=self.seed,
                capacity=self.capacity,
                flavours=self.flavours,
                faults=self.faults,
                fault_share=self.fault_share,
                urc_interval=URC_INTERVAL,
                on_delete=self._on_delete,
                on_command=self._on_command,
                on_event=self._on_event,
            )
            await self.sim.__aenter__()
            self._write_numbers()
            if self.autostart:
                self.start()
        except BaseException:
            await self._served.runner.cleanup()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            try:
                await self.sim.__aexit__(exc_type, exc, tb)
            finally:
                if self._served is not None:
                    await self._served.runner.cleanup()

    def config(self) -> Config:
        assert self._served is not None
        return Config(
            state_dir=str(self.tmp_path / "state"),
            modems=ModemsConfig(
                ports=[str(self.dev / "port*")],
                sweep_interval=self.sweep_interval,
                rescan_interval=self.rescan_interval,
            ),
            numbers=NumbersConfig(file=str(self.tmp_path / "numbers.csv")),
            upstream=UpstreamConfig(
                url=f"http://127.0.0.1:{self._served.port}",
                api_key=KEY,
                batch_delay=BATCH_DELAY,
            ),
            http=HttpConfig(listen="127.0.0.1:0"),
        )

    def start(self) -> None:
        """Start the daemon (it opens every port, sweeps and publishes)."""
        assert self._task is None, "daemon already started"
        publisher = functools.partial(NumbersPublisher, debounce=PUBLISH_DEBOUNCE)
        self._patches.enter_context(mock.patch.object(muxd.app, "NumbersPublisher", publisher))
        self.daemon = Daemon(self.config())
        self._task = asyncio.create_task(self.daemon.run(), name="fleet-daemon")
        self._task.add_done_callback(lambda _t: self._notify())

    async def stop(self) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            self._patches.close()

    def _write_numbers(self) -> None:
        rows: list[tuple[str, str]] = []
        for port in self.sim.ports:
            if self.numbers == "all" or not port.number_in_cnum:
                rows.append((port.iccid, port.number))
        rows.extend(self.extra_numbers)
        path = self.tmp_path / "numbers.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["iccid", "imsi", "number"])
            for iccid, number in rows:
                writer.writerow([iccid, "", number])

    # ------------------------------------------------------------------ hooks and waiting

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _committed(self, pdu_hex: str) -> bool:
        # A second connection sees committed rows only: this is the ordering check.
        if not self.journal_path.exists():
            return False
        conn = sqlite3.connect(self.journal_path)
        try:
            row = conn.execute("SELECT 1 FROM parts WHERE pdu = ?", (pdu_hex.upper(),)).fetchone()
        finally:
            conn.close()
        return row is not None

    def _on_delete(self, port: SimPort, index: int, pdu_hex: str) -> None:
        mem = port.state.cpms[0]
        self.deletes.append(Deleted(port.index, mem, index, pdu_hex, self._committed(pdu_hex)))
        self._notify()

    def _on_command(self, port: SimPort, line: str) -> None:
        self.commands.append((port.index, line))
        if line.upper().replace(" ", "") == "AT^CURC=0":
            self._silenced.add(port.index)
        for hook in list(self._command_hooks):
            hook(port, line)
        self._notify()

    def _on_event(self, port: SimPort, event: str) -> None:
        self.events.append((port.index, event))
        if event == "urc-tick":
            # The tick just emitted state.periodic_urcs() (if not silenced); it is pure.
            emitted = bool(port.state.periodic_urcs())
            self.ticks.append(Tick(port.index, emitted, port.index in self._silenced))
        self._notify()

    def on_command(self, hook: Callable[[SimPort, str], None]) -> None:
        """Also call ``hook(port, line)`` for every command line a modem receives."""
        self._command_hooks.append(hook)

    async def _stub_change(self, version: int, timeout: float) -> None:
        await self.stub.wait_until(lambda: self.stub.version != version, timeout=timeout)

    async def until(
        self, predicate: Callable[[], bool], *, timeout: float, what: str | Callable[[], str]
    ) -> None:
        """Return once ``predicate()`` holds, re-checked after every simulator hook and every
        change of the stand-in; TimeoutError (naming ``what``) after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self._task is not None and self._task.done():
                        self._task.result()  # the daemon died: show why
                    mine: asyncio.Future[None] = loop.create_future()
                    self._waiters.add(mine)
                    theirs = asyncio.ensure_future(self._stub_change(self.stub.version, timeout))
                    try:
                        await asyncio.wait({mine, theirs}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        self._waiters.discard(mine)
                        theirs.cancel()
                        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                            await theirs
        except TimeoutError as exc:
            text = what() if callable(what) else what
            raise TimeoutError(f"fleet harness: {text} not met in {timeout} s") from exc

    # ------------------------------------------------------------------ ports

    def _port_info(self, index: int) -> PortInfo | None:
        fleet = self.daemon.fleet if self._task is not None else None
        return None if fleet is None else fleet.ports.get(str(self.sim.ports[index].path))

    def info(self, index: int) -> PortInfo:
        """The daemon's view of simulated port ``index``."""
        info = self._port_info(index)
        assert info is not None, f"the daemon has not found port {index}"
        return info

    def ready(self, index: int) -> bool:
        info = self._port_info(index)
        return info is not None and info.status is PortStatus.READY

    def numbers_now(self) -> set[str]:
        """Every simulated SIM's current number (ground truth)."""
        return {port.number for port in self.sim.ports}

    async def wait_ready(self, numbers: Iterable[str] | None = None) -> None:
        """Every port is READY and the stand-in lists exactly ``numbers`` (default: all)."""
        wanted = set(numbers) if numbers is not None else self.numbers_now()
        await self.until(
            lambda: all(self.ready(i) for i in range(self.ports)),
            timeout=READY_TIMEOUT,
            what=lambda: (
                "every port ready (not: "
                + ", ".join(
                    f"{i}: {self._port_info(i)}" for i in range(self.ports) if not self.ready(i)
                )
                + ")"
            ),
        )
        await self.stub.wait_until(
            lambda: set(self.stub.numbers) == wanted,
            timeout=READY_TIMEOUT,
            what=lambda: f"numbers {sorted(wanted)} listed (have {sorted(self.stub.numbers)})",
        )

    def swap_sim(self, index: int, *, gap: float = 0.0) -> ModemIdentity:
        """``sim.swap_sim`` that books the SIM-memory parts lost with the old SIM."""
        self.discarded_parts += len(self.sim.ports[index].state.storages[SIM_STORAGE])
        return self.sim.swap_sim(index, gap=gap)

    # ------------------------------------------------------------------ injection

    def inject(
        self,
        index: int,
        sender: str,
        text: str,
        *,
        kind: str = "custom",
        ref_bits: int | None = None,
        order: str | None = None,
    ) -> Injected:
        port = self.sim.ports[index]
        state = port.state
        mem = state.receive_mem
        before = state.used
        refused = self.sim.refused
        number = port.number
        self.sim.inject(index, sender, text, ref_bits=ref_bits, order=order)
        parts = state.used - before
        record = Injected(
            port=index,
            number=number,
            sender=sender,
            text=text,
            kind=kind,
            mem=mem,
            parts=parts,
            complete=self.sim.refused == refused,
        )
        assert record.complete or parts == 0, "a partly stored SMS makes no sense here"
        self.stored_parts += parts
        self.injected.append(record)
        self.ledger.add(
            number, sender, text, t=time.monotonic(), port=port.name,
            excused="" if record.complete else "refused",
        )  # fmt: skip
        return record

    def inject_mix(self, n: int, *, ports: Sequence[int] | None = None) -> list[Injected]:
        """Inject ``n`` SMS round-robin over ``ports`` (default all), cycling through every
        kind of the mix (GSM 7-bit, UCS-2, extension characters, emoji, 3-part GSM 7-bit and
        2- to 3-part UCS-2 with 8- and 16-bit references in shuffled or reversed order) and
        every sender. Texts are unique (a serial number in each)."""
        targets = list(range(self.ports)) if ports is None else list(ports)
        out = []
        for _ in range(n):
            k = next(self._counter)
            kind, make, ref_bits, order = _KINDS[k % len(_KINDS)]
            sender = SENDERS[(k // len(_KINDS) + k) % len(SENDERS)]
            index = targets[k % len(targets)]
            tag = f"#{k}-{self._rng.randrange(10**6):06d}"
            out.append(
                self.inject(index, sender, make(tag), kind=kind, ref_bits=ref_bits, order=order)
            )
        return out

    def received(self) -> Ledger:
        """The ledger, with every message the stand-in accepted so far."""
        messages = self.stub.messages
        now = time.monotonic()
        for m in messages[self._absorbed :]:
            self.ledger.add_delivery(Delivery(now, m.number, m.from_, m.message))
        self._absorbed = len(messages)
        return self.ledger

    def left_in_storage(self) -> dict[str, dict[str, int]]:
        return {
            port.name: {mem: len(slots) for mem, slots in port.state.storages.items() if slots}
            for port in self.sim.ports
            if port.state.used
        }

    async def settle(self) -> None:
        """Wait until every injected SMS arrived, then check exactly once, the stand-in's
        duplicate counter, delete-after-commit and empty storage (every memory)."""
        await self.stub.wait_until(
            lambda: self.received().outstanding() == 0,
            timeout=SETTLE_TIMEOUT,
            what=lambda: (
                f"{self.ledger.outstanding()} SMS still missing, e.g. "
                f"{self.ledger.lost()[:3]}; stored in modems: {self.left_in_storage()}"
            ),
        )
        ledger = self.received()
        refused = [s for s in ledger.sent if s.excused and s.delivered_at is not None]
        extra = ledger.unknown() + list(ledger.duplicates()) + [s.text for s in refused]
        assert not extra, f"unexpected or repeated SMS upstream: {extra[:5]}"
        assert self.stub.duplicates == 0
        # AT+CMGD follows the commit, so it may still be on its way when the SMS arrives.
        await self.until(
            lambda: not any(port.state.used for port in self.sim.ports),
            timeout=STORAGE_TIMEOUT,
            what=lambda: f"empty storage (left: {self.left_in_storage()})",
        )
        early = [d for d in self.deletes if not d.committed]
        assert not early, f"deleted before commit: {early[:3]}"
        assert len(self.deletes) == self.stored_parts - self.discarded_parts
        # Acknowledged means marked delivered in the journal too.
        total = ledger.delivered
        await asyncio.wait_for(self.daemon.status.wait_forwarded(total), FORWARDED_TIMEOUT)
        assert self.daemon.tally.parked == 0
        assert not self.sim.errors, self.sim.errors

    def journal_states(self) -> dict[str, int]:
        conn = sqlite3.connect(self.journal_path)
        try:
            return dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        finally:
            conn.close()
