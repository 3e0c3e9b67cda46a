"""Pseudo-terminal modem simulator: N fake GSM/LTE modems behind real ptys.

``async with ModemSimulator(16, Path("/tmp/ports")) as sim`` creates 16 pty pairs
and symlinks ``/tmp/ports/port000`` … ``port015`` to the slave ends; a host opens
those paths with pyserial exactly like USB modems. Behind every master end a
:class:`~muxd.sim.modem_state.SimModemState` answers AT commands. ``inject`` puts a
received SMS (encoded by :func:`muxd.pdu.encode_deliver`) into a modem's storage
and announces it with ``+CMTI``; ``run_load`` does so at a steady rate. Every
injected SMS is appended as one JSON line to ``log_path`` (the ground truth); SMS
still stored in a SIM's memory when :meth:`ModemSimulator.swap_sim` takes that SIM
away get a second line ``{"event": "discarded", "id": ..., "reason": "sim-swap"}``.

Identity scheme (see :mod:`muxd.sim.modem_ident`): deterministic per ``(seed, i)``.
With ``numbers_in_cnum=True`` even-indexed ports answer ``AT+CNUM`` with their number
and odd-indexed ports answer a bare ``OK`` (the SIM stores no number);
:func:`write_numbers_csv` writes the numbers of those odd ports (within the first
``share`` of all ports) to a CSV keyed alternately by ICCID and by IMSI. With
``numbers_in_cnum=False`` no port answers ``AT+CNUM`` with a number.

Vendor flavours (:mod:`muxd.sim.modem_flavours`): ``flavours=["quectel", "huawei"]``
gives port ``i`` the flavour ``flavours[i % len(flavours)]``; the default
``("generic",)`` is the behaviour of the simulator before flavours existed.

Faults (:mod:`muxd.sim.modem_faults`): every port has ``port.faults``, all off, which
may be switched at run time. ``faults=FaultPlan(...)`` with ``fault_share`` gives a
seeded random share of the ports those faults at start (``sim.faulty`` lists them)
and schedules the plan's hangs, vanishings and SIM swaps. The time-based faults are
methods: :meth:`ModemSimulator.mute_for`, :meth:`~ModemSimulator.vanish`,
:meth:`~ModemSimulator.swap_sim`.

Capacity: the simulator holds both ends of every pty (2 descriptors per port, 3 with
a host attached in the same process), so ``start`` raises the RLIMIT_NOFILE soft
limit to the hard limit. Linux also caps ptys system-wide (``/proc/sys/kernel/pty/max``,
4096 by default, of which ``pty/reserve`` = 1024 are kept for the initial devpts
mount, so a container gets 3072). 512 ports need ~1030 descriptors in one process.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import itertools
import json
import logging
import math
import os
import random
import resource
import time
import tty
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from muxd.pdu import encode_deliver
from muxd.sim.modem_commands import SMSC_NUMBER
from muxd.sim.modem_faults import (
    PARTS_ORDERS,
    FaultPlan,
    Faults,
    add_noise,
    parse_fault_spec,
    urc_spots,
)
from muxd.sim.modem_flavours import FLAVOURS, Flavour, get_flavour, parse_flavours
from muxd.sim.modem_ident import ModemIdentity, make_identity
from muxd.sim.modem_state import (
    DEFAULT_CAPACITY,
    SIM_STORAGE,
    SimModemState,
    SmsSlot,
    storage_key,
)

__all__ = [
    "FLAVOURS",
    "LOAD_SENDERS",
    "LOAD_TEMPLATES",
    "FaultPlan",
    "Faults",
    "ModemSimulator",
    "SimModemState",
    "SimPort",
    "SmsSlot",
    "parse_fault_spec",
    "parse_flavours",
    "raise_fd_limit",
    "run_simulator",
    "write_numbers_csv",
]

LOGGER = logging.getLogger(__name__)

READ_CHUNK = 4096
MAX_PENDING_OUTPUT = 1 << 20  # per port; beyond this the modem "loses" output like a UART
EIO_RETRY_DELAY = 0.05  # seconds before polling a master again after EIO (no slave open)
LOAD_YIELD_EVERY = 64  # run_load yields to the loop at least this often while catching up
NETWORK_TZ = timezone(timedelta(hours=3))  # SCTS as MTS Moscow stamps it
LOAD_TEMPLATES = ("Your code is {code}", "Ваш код {code}", "Code 😀 {code}")
LOAD_SENDERS = ("Telegram", "+79161234567", "Google", "+79031112233")
CONCAT_REF_SPACE = 256
_REF_COUNTER_SPACE = 1 << 16
SPLIT_MAX = 7  # split_reads writes 1..SPLIT_MAX bytes per loop iteration
FDS_PER_PORT = 2  # master + the slave end the simulator keeps open


@dataclass(eq=False)
class SimPort:
    """One simulated modem: its pty, identity, flavour, faults and AT state.

    ``number`` is the current SIM's real number (ground truth); ``number_in_cnum``
    says whether ``AT+CNUM`` reveals it (``state.number`` is then the same, else None).
    ``imsi``/``iccid``/``number`` change on :meth:`ModemSimulator.swap_sim`;
    ``tty_name`` on :meth:`ModemSimulator.vanish` (the symlink ``path`` stays).
    """

    index: int
    name: str
    path: Path
    state: SimModemState
    imei: str
    imsi: str
    iccid: str
    number: str
    number_in_cnum: bool
    flavour: Flavour = field(default=FLAVOURS["generic"])
    tty_name: str = ""
    master_fd: int = field(default=-1, repr=False)
    slave_fd: int = field(default=-1, repr=False)
    dropped_output: int = 0  # bytes lost because the host did not read
    vanished: bool = False  # between vanish() and the port's reappearance
    power_ups: int = 0  # boots so far (start, reboot commands, reappearances)
    sim_generation: int = 0  # SIM swaps so far
    urc_ticks: int = 0  # periodic URC rounds so far (sent or silenced)
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _pending: bytearray = field(default_factory=bytearray, repr=False)
    _concat_ref: int = field(default=0, repr=False)
    _outq: deque[tuple[float, bytes]] = field(default_factory=deque, repr=False)
    _drain: asyncio.Handle | None = field(default=None, repr=False)
    _timers: set[asyncio.TimerHandle] = field(default_factory=set, repr=False)
    _unmute: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def faults(self) -> Faults:
        """This modem's fault knobs (the same object as ``state.faults``)."""
        return self.state.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self.state.faults = value


def raise_fd_limit() -> tuple[int, int]:
    """Raise the RLIMIT_NOFILE soft limit to the hard limit; return ``(soft, hard)``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            LOGGER.warning("could not raise RLIMIT_NOFILE from %d to %d", soft, hard)
    return soft, hard


class ModemSimulator:
    """N simulated modems on pseudo-terminals (see module docstring).

    Hooks: ``on_delete(port, index, pdu_hex)`` is called synchronously inside
    ``AT+CMGD`` handling, before the ``OK`` is written; ``on_command(port, line)``
    for every command line before it is answered; ``on_event(port, event)`` for
    simulator events: ``power-up``, ``sms-ready``, ``urc-tick``, ``mute``, ``unmute``,
    ``vanish``, ``reappear``, ``sim-removed``, ``sim-inserted``. An exception raised
    by a hook (or the interpreter) is logged, kept in ``errors`` and re-raised by
    ``__aexit__`` when the ``async with`` body itself ended normally.

    ``boot_delay`` (seconds until SMS works after a boot or SIM insertion) and
    ``urc_interval`` (period of Huawei-style reports) default to the flavour's.
    """

    def __init__(
        self,
        n_ports: int,
        directory: Path | str,
        *,
        log_path: Path | str | None = None,
        seed: int = 0,
        numbers_in_cnum: bool = True,
        first_number: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        index_base: int | None = None,
        flavours: Sequence[str] = ("generic",),
        faults: FaultPlan | None = None,
        fault_share: float = 1.0,
        boot_delay: float | None = None,
        urc_interval: float | None = None,
        on_delete: Callable[[SimPort, int, str], None] | None = None,
        on_command: Callable[[SimPort, str], None] | None = None,
        on_event: Callable[[SimPort, str], None] | None = None,
    ) -> None:
        if n_ports < 1:
            raise ValueError(f"n_ports must be >= 1, got {n_ports}")
        if not 0.0 <= fault_share <= 1.0:
            raise ValueError(f"fault_share must be within [0, 1], got {fault_share}")
        for name, value in (("boot_delay", boot_delay), ("urc_interval", urc_interval)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if faults is not None:
            faults.validate()
        self.n_ports = n_ports
        self.directory = Path(directory)
        self.log_path = Path(log_path) if log_path is not None else None
        self.seed = seed
        self.numbers_in_cnum = numbers_in_cnum
        self.first_number = first_number
        self.capacity = capacity
        self.index_base = index_base
        self.flavours = tuple(get_flavour(name) for name in parse_flavours(flavours))
        self.fault_plan = faults
        self.fault_share = fault_share
        self.boot_delay = boot_delay
        self.urc_interval = urc_interval
        self.on_delete = on_delete
        self.on_command = on_command
        self.on_event = on_event
        self.ports: list[SimPort] = []
        self.faulty: list[int] = []  # indices of the ports given the fault plan
        self.errors: list[BaseException] = []
        self.injected = 0
        self.refused = 0  # SMS not (completely) stored because the memory was full
        self.discarded = 0  # stored SMS lost with a swapped-out SIM (logged as such)
        self._slot_ids: dict[tuple[int, str, int], str] = {}  # (port, memory, slot) -> SMS id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._timers: set[asyncio.TimerHandle] = set()  # chaos, reappearances, unmutes
        self._log: IO[str] | None = None
        self._load_rng = random.Random(seed)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None and self.errors:
            raise self.errors[0]

    def start(self) -> None:
        """Create the ptys and symlinks and start serving (needs a running loop)."""
        if self._loop is not None:
            raise RuntimeError("simulator already started")
        self._loop = asyncio.get_running_loop()
        soft, _ = raise_fd_limit()
        if soft < FDS_PER_PORT * self.n_ports + 64:
            LOGGER.warning(
                "RLIMIT_NOFILE %d is low for %d ports (%d descriptors each)",
                soft,
                self.n_ports,
                FDS_PER_PORT,
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.faulty = self._choose_faulty()
        try:
            if self.log_path is not None:
                self._log = self.log_path.open("a", encoding="utf-8")
            for index in range(self.n_ports):
                self.ports.append(self._open_port(index))
        except BaseException:
            self.close()
            raise
        plan = self.fault_plan
        if plan is not None and plan.scheduled:
            for index in self.faulty:
                port = self.ports[index]
                for kind, mean in (
                    ("hang", plan.hang_every),
                    ("vanish", plan.vanish_every),
                    ("swap", plan.swap_every),
                ):
                    if mean > 0:
                        self._schedule_chaos(port, kind, mean)

    def _choose_faulty(self) -> list[int]:
        if self.fault_plan is None or self.fault_share <= 0:
            return []
        count = min(self.n_ports, math.ceil(self.fault_share * self.n_ports))
        chooser = random.Random(f"muxd-sim-faults:{self.seed}")
        return sorted(chooser.sample(range(self.n_ports), count))

    def _open_port(self, index: int) -> SimPort:
        assert self._loop is not None
        ident = make_identity(self.seed, index, first_number=self.first_number)
        in_cnum = self.numbers_in_cnum and index % 2 == 0
        flavour = self.flavours[index % len(self.flavours)]
        faulty = self.fault_plan is not None and index in self.faulty
        state = SimModemState(
            imei=ident.imei,
            imsi=ident.imsi,
            iccid=ident.iccid,
            number=ident.number if in_cnum else None,
            capacity=self.capacity,
            index_base=self.index_base,
            rssi=ident.rssi,
            flavour=flavour,
            faults=self.fault_plan.port_faults() if faulty and self.fault_plan else None,
        )
        name = f"port{index:03d}"
        port = SimPort(
            index=index,
            name=name,
            path=self.directory / name,
            state=state,
            imei=ident.imei,
            imsi=ident.imsi,
            iccid=ident.iccid,
            number=ident.number,
            number_in_cnum=in_cnum,
            flavour=flavour,
            rng=random.Random(f"muxd-sim-port:{self.seed}:{index}"),
        )
        state.on_delete = lambda slot, pdu_hex: self._call_delete_hook(port, slot, pdu_hex)
        state.on_command = lambda line: self._call_command_hook(port, line)
        self._attach_pty(port)
        LOGGER.debug("%s -> %s number %s (%s)", name, port.tty_name, port.number, flavour.name)
        self._power_up(port)
        return port

    def _attach_pty(self, port: SimPort, *, avoid: str | None = None) -> None:
        """Open a pty for ``port`` (not named ``avoid``), point the symlink at it, serve it."""
        assert self._loop is not None
        master, slave = os.openpty()
        try:
            if avoid is not None and os.ttyname(slave) == avoid:
                spare = (master, slave)
                master, slave = os.openpty()  # allocated while the first is held: a new N
                for fd in spare:
                    os.close(fd)
            tty.setraw(slave)
            os.set_blocking(master, False)
            port.tty_name = os.ttyname(slave)
            _replace_symlink(port.path, port.tty_name)
            self._loop.add_reader(master, self._on_readable, port)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        port.master_fd, port.slave_fd = master, slave

    def _detach_pty(self, port: SimPort) -> None:
        """Stop serving ``port``: cancel its timers, close both pty ends, remove our symlink."""
        self._cancel_port_timers(port)
        if port._drain is not None:
            port._drain.cancel()
            port._drain = None
        port._outq.clear()
        port._pending.clear()
        if port.master_fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(port.master_fd)
                self._loop.remove_writer(port.master_fd)
            os.close(port.master_fd)
            port.master_fd = -1
        if port.slave_fd >= 0:
            os.close(port.slave_fd)
            port.slave_fd = -1
        try:
            if os.readlink(port.path) == port.tty_name:
                port.path.unlink()
        except OSError:
            pass

    def _cancel_port_timers(self, port: SimPort) -> None:
        """Cancel boot and periodic timers (queued output keeps draining)."""
        for handle in port._timers:
            handle.cancel()
        port._timers.clear()

    def close(self) -> None:
        """Stop serving: cancel timers, remove readers/writers, close the ptys and symlinks."""
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for port in self.ports:
            if port._unmute is not None:
                port._unmute.cancel()
                port._unmute = None
            self._detach_pty(port)
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ timers, hooks

    def _port_timer(self, port: SimPort, delay: float, callback: Callable[[], None]) -> None:
        """``callback`` after ``delay`` s unless the port reboots, vanishes or closes first."""
        assert self._loop is not None

        def fire() -> None:
            port._timers.discard(handle)
            self._guarded(port, callback)

        handle = self._loop.call_later(delay, fire)
        port._timers.add(handle)

    def _sim_timer(
        self, port: SimPort, delay: float, callback: Callable[[], None]
    ) -> asyncio.TimerHandle:
        """``callback`` after ``delay`` s unless the simulator closes first."""
        assert self._loop is not None

        def fire() -> None:
            self._timers.discard(handle)
            self._guarded(port, callback)

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)
        return handle

    def _guarded(self, port: SimPort, callback: Callable[[], None]) -> None:
        if self._closed:
            return
        try:
            callback()
        except Exception as exc:
            LOGGER.exception("simulator callback failed on %s", port.name)
            self.errors.append(exc)

    def _call_delete_hook(self, port: SimPort, index: int, pdu_hex: str) -> None:
        self._slot_ids.pop((port.index, storage_key(port.state.cpms[0]), index), None)
        if self.on_delete is None:
            return
        try:
            self.on_delete(port, index, pdu_hex)
        except Exception as exc:  # a failing test assertion must not kill the modem
            LOGGER.exception("on_delete hook failed on %s", port.name)
            self.errors.append(exc)

    def _call_command_hook(self, port: SimPort, line: str) -> None:
        if self.on_command is None:
            return
        try:
            self.on_command(port, line)
        except Exception as exc:
            LOGGER.exception("on_command hook failed on %s", port.name)
            self.errors.append(exc)

    def _event(self, port: SimPort, event: str) -> None:
        LOGGER.debug("%s: %s", port.name, event)
        if self.on_event is None:
            return
        try:
            self.on_event(port, event)
        except Exception as exc:
            LOGGER.exception("on_event hook failed on %s", port.name)
            self.errors.append(exc)

    # ------------------------------------------------------------------ boot

    def _boot_delay(self, port: SimPort) -> float:
        return self.boot_delay if self.boot_delay is not None else port.flavour.boot_delay

    def _power_up(self, port: SimPort) -> None:
        """Boot ``port``'s modem: defaults, boot URCs, SMS ready after the boot delay."""
        self._cancel_port_timers(port)
        port.power_ups += 1
        delay = self._boot_delay(port)
        self._emit(port, port.state.power_up(booting=delay > 0))
        self._await_sms_ready(port, delay)
        interval = self.urc_interval if self.urc_interval is not None else port.flavour.urc_interval
        if interval > 0 and port.flavour.periodic_urcs:
            # staggered so that hundreds of ports do not report in the same iteration
            self._port_timer(port, interval * port.rng.random(), lambda: self._tick(port, interval))
        self._event(port, "power-up")

    def _await_sms_ready(self, port: SimPort, delay: float) -> None:
        if delay > 0:
            self._port_timer(port, delay, lambda: self._sms_ready(port))
        else:
            self._sms_ready(port)

    def _sms_ready(self, port: SimPort) -> None:
        self._emit(port, port.state.sms_ready())
        self._event(port, "sms-ready")

    def _tick(self, port: SimPort, interval: float) -> None:
        port.urc_ticks += 1
        self._emit(port, port.state.periodic_urcs())
        self._event(port, "urc-tick")
        self._port_timer(port, interval, lambda: self._tick(port, interval))

    # ------------------------------------------------------------------ pty I/O

    def _on_readable(self, port: SimPort) -> None:
        try:
            data = os.read(port.master_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:  # EIO/EOF: no host has the slave open; poll again a little later
            self._pause_reader(port)
            return
        state = port.state
        try:
            chunks = state.feed_chunks(data)
        except Exception as exc:
            LOGGER.exception("AT interpreter failed on %s", port.name)
            self.errors.append(exc)
            return
        if chunks:
            if state.faults.shapes_output or port._outq:
                for is_echo, chunk in chunks:
                    self._emit(port, chunk, response=not is_echo)
            else:
                self._write_raw(port, b"".join(chunk for _, chunk in chunks))
        if state.reboot_pending:
            self._power_up(port)

    def _pause_reader(self, port: SimPort) -> None:
        assert self._loop is not None
        self._loop.remove_reader(port.master_fd)
        fd = port.master_fd

        def resume() -> None:
            if port.master_fd == fd >= 0 and self._loop is not None and not self._closed:
                self._loop.add_reader(port.master_fd, self._on_readable, port)

        self._loop.call_later(EIO_RETRY_DELAY, resume)

    def write(self, port: SimPort, data: bytes) -> None:
        """Send bytes to the host on ``port`` as a URC would go: in order, faults applied."""
        self._emit(port, data)

    def _emit(self, port: SimPort, data: bytes, *, response: bool = False) -> None:
        """Queue modem output in FIFO order, shaped by the port's I/O faults.

        ``response`` marks a command's answer (echo excluded): only those are delayed
        (``delay_s``) and get URCs injected (``urc_mid_response``). Output of a muted
        or vanished modem is lost.
        """
        if not data or port.master_fd < 0:
            return
        faults = port.state.faults
        if faults.mute:
            return
        if not faults.shapes_output and not port._outq:
            self._write_raw(port, data)
            return
        assert self._loop is not None
        if response and faults.urc_mid_response:
            data = self._insert_mid_urc(port, data)
        if faults.noise > 0:
            data = add_noise(port.rng, data, faults.noise, mid_pdu=faults.mid_pdu)
        due = self._loop.time() + (faults.delay_s if response else 0.0)
        port._outq.append((due, data))
        if port._drain is None:
            port._drain = self._loop.call_soon(self._drain_queue, port)

    def _drain_queue(self, port: SimPort) -> None:
        """Write what is due from the port's output queue (piecewise with ``split_reads``)."""
        assert self._loop is not None
        port._drain = None
        faults = port.state.faults
        if port.master_fd < 0 or faults.mute:
            port._outq.clear()
            return
        now = self._loop.time()
        while port._outq:
            due, data = port._outq[0]
            if due > now:
                port._drain = self._loop.call_at(due, self._drain_queue, port)
                return
            if faults.split_reads:
                size = port.rng.randint(1, SPLIT_MAX)
                if size < len(data):
                    port._outq[0] = (due, data[size:])
                    data = data[:size]
                else:
                    port._outq.popleft()
                self._write_raw(port, data)
                if port._outq:
                    gap = faults.split_gap_s
                    port._drain = (
                        self._loop.call_later(gap, self._drain_queue, port)
                        if gap > 0
                        else self._loop.call_soon(self._drain_queue, port)
                    )
                return
            port._outq.popleft()
            self._write_raw(port, data)

    def _insert_mid_urc(self, port: SimPort, data: bytes) -> bytes:
        spots = urc_spots(data, mid_pdu=port.state.faults.mid_pdu)
        if not spots:
            return data
        at = port.rng.choice(spots)
        state = port.state
        stored = state.receive_storage
        if stored and port.rng.random() < 0.5:
            extra = state.urc_cmti(port.rng.choice(sorted(stored)))
        else:
            extra = state.idle_urc()
        return data[:at] + extra + data[at:]

    def _write_raw(self, port: SimPort, data: bytes) -> None:
        """Write bytes to the pty master now (what the kernel will not take is queued)."""
        if port.master_fd < 0 or not data:
            return
        if port._pending:
            self._queue(port, data)
            return
        try:
            written = os.write(port.master_fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            port.dropped_output += len(data)
            return
        if written < len(data):
            self._queue(port, data[written:])
            assert self._loop is not None
            self._loop.add_writer(port.master_fd, self._on_writable, port)

    def _queue(self, port: SimPort, data: bytes) -> None:
        room = MAX_PENDING_OUTPUT - len(port._pending)
        if len(data) > room:
            if port.dropped_output == 0:
                LOGGER.warning("%s: host is not reading, dropping modem output", port.name)
            port.dropped_output += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        port._pending += data

    def _on_writable(self, port: SimPort) -> None:
        assert self._loop is not None
        try:
            written = os.write(port.master_fd, port._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            written = len(port._pending)
            port.dropped_output += written
        del port._pending[:written]
        if not port._pending:
            self._loop.remove_writer(port.master_fd)

    # ------------------------------------------------------------------ time-based faults

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._closed:
            raise RuntimeError("simulator not running")
        return self._loop

    def mute_for(self, port_index: int, seconds: float) -> None:
        """Hang port ``port_index`` for ``seconds``: input dropped, nothing sent, then back.

        Calling it again while hung restarts the countdown. ``port.faults.mute`` is the
        same switch without the timer.
        """
        self._started()
        port = self.ports[port_index]
        port.faults.mute = True
        if port._unmute is not None:
            port._unmute.cancel()

        def unmute() -> None:
            port._unmute = None
            port.faults.mute = False
            self._event(port, "unmute")

        port._unmute = self._sim_timer(port, seconds, unmute)
        self._event(port, "mute")

    def vanish(self, port_index: int, seconds: float) -> None:
        """USB re-enumeration: the port disappears for ``seconds``, then comes back anew.

        Now: the symlink is removed and both pty ends are closed (the host gets EIO /
        hangup); queued output and timers are dropped. After ``seconds``: a new pty
        (never the same ``/dev/pts/N``) behind the same symlink, a freshly booted modem
        (echo on, defaults, boot URCs) with the same IMEI, SIM and stored messages.
        SMS injected meanwhile are stored but not announced.
        """
        self._started()
        port = self.ports[port_index]
        if port.vanished:
            raise RuntimeError(f"{port.name} has already vanished")
        self._detach_pty(port)
        port.vanished = True
        self._event(port, "vanish")
        self._sim_timer(port, seconds, lambda: self._reappear(port))

    def _reappear(self, port: SimPort) -> None:
        self._attach_pty(port, avoid=port.tty_name)
        port.vanished = False
        self._power_up(port)
        self._event(port, "reappear")

    def swap_sim(
        self, port_index: int, new_identity: ModemIdentity | None = None, *, gap: float = 0.0
    ) -> ModemIdentity:
        """Put a different SIM into port ``port_index``; return its identity.

        The new IMSI/ICCID/number is ``new_identity`` or derived deterministically from
        ``(seed, index, swap count)``; the IMEI (the modem's) stays. The SIM memory
        (``SM``) is emptied; ``ME`` is modem memory and keeps its messages. The flavour's
        removal URCs are sent now, the insertion URCs after ``gap`` seconds (meanwhile
        SIM commands answer ``+CME ERROR: 10`` and SMS commands ``+CMS ERROR: 310``),
        then the ready URCs after the boot delay.
        """
        self._started()
        port = self.ports[port_index]
        port.sim_generation += 1
        if new_identity is None:
            new_identity = make_identity(
                self.seed,
                port_index + port.sim_generation * self.n_ports,
                first_number=self.first_number,
            )
        ident = new_identity
        self._emit(port, port.state.remove_sim())
        self._event(port, "sim-removed")
        if gap > 0:
            generation = port.sim_generation
            self._sim_timer(port, gap, lambda: self._insert_sim(port, ident, generation))
        else:
            self._insert_sim(port, ident, port.sim_generation)
        return ident

    def _insert_sim(self, port: SimPort, ident: ModemIdentity, generation: int) -> None:
        if generation != port.sim_generation:
            return  # swapped again during the gap: that SIM never made it in
        self._discard_sim_messages(port)
        delay = self._boot_delay(port)
        self._emit(
            port,
            port.state.insert_sim(
                imsi=ident.imsi,
                iccid=ident.iccid,
                number=ident.number if port.number_in_cnum else None,
                booting=delay > 0,
            ),
        )
        port.imsi, port.iccid, port.number = ident.imsi, ident.iccid, ident.number
        self._await_sms_ready(port, delay)
        self._event(port, "sim-inserted")

    def _discard_sim_messages(self, port: SimPort) -> None:
        """Log the SMS that leave with the old SIM's memory (``"event": "discarded"``)."""
        parts: dict[str, int] = {}
        for slot in port.state.storages[SIM_STORAGE]:
            sms_id = self._slot_ids.pop((port.index, SIM_STORAGE, slot), None)
            if sms_id is not None:
                parts[sms_id] = parts.get(sms_id, 0) + 1
        self.discarded += len(parts)
        if self._log is None:
            return
        for sms_id, count in parts.items():
            record = {
                "event": "discarded",
                "id": sms_id,
                "t": time.time(),
                "port": port.name,
                "reason": "sim-swap",
                "parts": count,
            }
            self._log.write(json.dumps(record) + "\n")
        self._log.flush()

    def _schedule_chaos(self, port: SimPort, kind: str, mean: float) -> None:
        self._sim_timer(
            port, port.rng.expovariate(1.0 / mean), lambda: self._chaos(port, kind, mean)
        )

    def _chaos(self, port: SimPort, kind: str, mean: float) -> None:
        plan = self.fault_plan
        assert plan is not None
        if kind == "hang":
            self.mute_for(port.index, plan.hang_s)
        elif kind == "vanish":
            if not port.vanished:
                self.vanish(port.index, plan.vanish_s)
        else:
            self.swap_sim(port.index)
        self._schedule_chaos(port, kind, mean)

    # ------------------------------------------------------------------ SMS

    def inject(
        self,
        port_index: int,
        sender: str,
        text: str,
        *,
        scts: datetime | None = None,
        ref_bits: int | None = None,
        order: str | None = None,
    ) -> str:
        """Receive an SMS on ``port_index``: store its parts, send ``+CMTI``, log; return its id.

        ``ref_bits`` (8 or 16: the concatenation reference size) and ``order`` (``in``,
        ``reverse``, ``shuffle``: the order the parts reach the memory) default to the
        port's ``faults.ref_bits`` / ``faults.parts_order``. The log's ``indices`` are in
        part order.
        """
        if self._loop is None:
            raise RuntimeError("simulator not started")
        port = self.ports[port_index]
        state = port.state
        bits = state.faults.ref_bits if ref_bits is None else ref_bits
        how = state.faults.parts_order if order is None else order
        if bits not in (8, 16):
            raise ValueError(f"ref_bits must be 8 or 16, got {bits}")
        if how not in PARTS_ORDERS:
            raise ValueError(f"order must be one of {PARTS_ORDERS}, got {how!r}")
        when = scts if scts is not None else datetime.now(NETWORK_TZ).replace(microsecond=0)
        ref = port._concat_ref % (1 << bits)
        port._concat_ref = (port._concat_ref + 1) % _REF_COUNTER_SPACE
        parts = encode_deliver(sender, text, scts=when, smsc=SMSC_NUMBER, ref=ref, ref_bits=bits)
        arrival = list(range(len(parts)))
        if how == "reverse":
            arrival.reverse()
        elif how == "shuffle":
            port.rng.shuffle(arrival)
        mem = state.receive_mem
        slots: dict[int, int] = {}
        announce = bytearray()
        for part in arrival:
            slot = state.store_deliver(parts[part])
            if slot is not None:
                slots[part] = slot
                announce += state.cmti_if_enabled(slot, mem)
        announce += state.storage_full_urc()
        indices = [slots[part] for part in range(len(parts)) if part in slots]
        stored = len(slots) == len(parts)
        self.injected += 1
        if not stored:
            self.refused += 1
            LOGGER.info("%s: SMS memory full, SMS from %s refused", port.name, sender)
        self._emit(port, bytes(announce))
        sms_id = uuid.uuid4().hex
        for slot in indices:
            self._slot_ids[(port_index, mem, slot)] = sms_id
        if self._log is not None:
            record: dict[str, Any] = {
                "id": sms_id,
                "t": time.time(),
                "port": port.name,
                "number": port.number,
                "sender": sender,
                "text": text,
                "parts": len(parts),
                "indices": indices,
                "stored": stored,
                "scts": when.isoformat(),
                "mem": mem,
                "ref_bits": bits,
                "order": how,
            }
            self._log.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._log.flush()
        return sms_id

    async def run_load(
        self,
        rate: float,
        *,
        duration: float | None = None,
        count: int | None = None,
        texts: Sequence[str] | None = None,
    ) -> int:
        """Inject ``rate`` SMS/s over random (seeded) ports until ``count`` or ``duration``.

        Without either it runs until cancelled. Pacing follows ``loop.time()`` targets
        (the k-th SMS is due at ``start + k / rate``), so lateness never accumulates.
        Returns how many SMS were injected.
        """
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number, got {rate}")
        if texts is not None and not texts:
            raise ValueError("texts must not be empty")
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = None if duration is None else start + duration
        injected = 0
        for k in itertools.count():
            if count is not None and k >= count:
                break
            due = start + k / rate
            if deadline is not None and due >= deadline:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif k % LOAD_YIELD_EVERY == 0:
                await asyncio.sleep(0)
            sender, text = self._load_message(k, texts)
            self.inject(self._load_rng.randrange(len(self.ports)), sender, text)
            injected += 1
        return injected

    def _load_message(self, k: int, texts: Sequence[str] | None) -> tuple[str, str]:
        sender = LOAD_SENDERS[k % len(LOAD_SENDERS)]
        if texts is not None:
            return sender, texts[k % len(texts)]
        code = f"{self._load_rng.randrange(10**6):06d}"
        return sender, LOAD_TEMPLATES[k % len(LOAD_TEMPLATES)].format(code=code)


def _replace_symlink(path: Path, target: str) -> None:
    """Point ``path`` at ``target`` atomically, replacing a stale symlink (never a file)."""
    if os.path.lexists(path) and not path.is_symlink():
        raise FileExistsError(f"{path} exists and is not a symlink")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def write_numbers_csv(
    sim: ModemSimulator, path: Path | str, *, share: float = 0.5
) -> list[SimPort]:
    """Write ``iccid,imsi,number`` rows for SIMs that store no number, return their ports.

    Only ports with index < ``ceil(share * n_ports)`` are covered, so the remaining
    CNUM-less ports have no known number at all. Rows alternate between ICCID-keyed
    (``imsi`` empty) and IMSI-keyed (``iccid`` empty). Written atomically.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    limit = math.ceil(share * len(sim.ports))
    ports = [port for port in sim.ports[:limit] if not port.number_in_cnum]
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iccid", "imsi", "number"])
        for row, port in enumerate(ports):
            if row % 2 == 0:
                writer.writerow([port.iccid, "", port.number])
            else:
                writer.writerow(["", port.imsi, port.number])
    os.replace(tmp, target)
    return ports


async def run_simulator(
    ports: int,
    directory: Path,
    *,
    rate: float = 0.0,
    log_path: Path | None = None,
    duration: float | None = None,
    flavours: Sequence[str] = ("generic",),
    faults: FaultPlan | None = None,
    fault_share: float = 1.0,
) -> None:
    """CLI body: serve ``ports`` modems in ``directory``; inject at ``rate`` SMS/s if > 0.

    Prints ``port000 -> /dev/pts/N number +7900...`` per port (followed by the flavour
    unless generic, and ``faulty`` for ports given the fault plan), then runs until
    cancelled or until ``duration`` seconds have passed.
    """
    async with ModemSimulator(
        ports,
        directory,
        log_path=log_path,
        flavours=flavours,
        faults=faults,
        fault_share=fault_share,
    ) as sim:
        faulty = set(sim.faulty)
        for port in sim.ports:
            notes = [] if port.flavour.name == "generic" else [port.flavour.name]
            if port.index in faulty:
                notes.append("faulty")
            suffix = "".join(f" {note}" for note in notes)
            print(f"{port.name} -> {port.tty_name} number {port.number}{suffix}", flush=True)
        if rate > 0:
            await sim.run_load(rate, duration=duration)
        elif duration is not None:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
