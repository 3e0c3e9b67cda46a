"""Pseudo-terminal modem simulator: N fake GSM/LTE modems behind real ptys.

``async with ModemSimulator(16, Path("/tmp/ports")) as sim`` creates 16 pty pairs
and symlinks ``/tmp/ports/port000`` … ``port015`` to the slave ends; a host opens
those paths with pyserial exactly like USB modems. Behind every master end a
:class:`~muxd_sim.modem_state.SimModemState` answers AT commands. ``inject`` puts a
received SMS (encoded by :func:`muxd.pdu.encode_deliver`) into a modem's storage
and announces it with ``+CMTI``; ``run_load`` does so at a steady rate. Every
injected SMS is appended as one JSON line to ``log_path`` (the ground truth); SMS
still stored in a SIM's memory when :meth:`ModemSimulator.swap_sim` takes that SIM
away get a second line ``{"event": "discarded", "id": ..., "reason": "sim-swap"}``.

Identity scheme (see :mod:`muxd_sim.modem_ident`): deterministic per ``(seed, i)``.
With ``numbers_in_cnum=True`` even-indexed ports answer ``AT+CNUM`` with their number
and odd-indexed ports answer a bare ``OK`` (the SIM stores no number);
:func:`write_numbers_csv` writes the numbers of those odd ports (within the first
``share`` of all ports) to a CSV keyed alternately by ICCID and by IMSI. With
``numbers_in_cnum=False`` no port answers ``AT+CNUM`` with a number.

Vendor flavours (:mod:`muxd_sim.modem_flavours`): ``flavours=["quectel", "huawei"]``
gives port ``i`` the flavour ``flavours[i % len(flavours)]``; the default
``("generic",)`` is the behaviour of the simulator before flavours existed.

Faults (:mod:`muxd_sim.modem_faults`): every port has ``port.faults``, all off, which
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

Layout: this module is the façade (everything above stays importable from here);
:mod:`~muxd_sim.modem_pty` holds :class:`SimPort`, the ptys, symlinks and output pacing,
:mod:`~muxd_sim.modem_boot` the boot sequence, timers and events,
:mod:`~muxd_sim.modem_inject` injection, load generation and the ground-truth log,
:mod:`~muxd_sim.modem_routed` routed delivery (``+CMT``, ``AT+CSMS``, ``AT+CNMA``),
:mod:`~muxd_sim.modem_smsfaults` reused references and bad stamps, and
:mod:`~muxd_sim.modem_chaos` the time-based faults and their scheduling.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

# "X as X": importable from here before the split, kept so (PEP 484 explicit re-export)
from muxd.pdu import encode_deliver as encode_deliver
from muxd_sim.modem_chaos import ModemChaos
from muxd_sim.modem_commands import SMSC_NUMBER as SMSC_NUMBER
from muxd_sim.modem_faults import PARTS_ORDERS as PARTS_ORDERS
from muxd_sim.modem_faults import FaultPlan, Faults, parse_fault_spec
from muxd_sim.modem_faults import add_noise as add_noise
from muxd_sim.modem_faults import urc_spots as urc_spots
from muxd_sim.modem_flavours import FLAVOURS, get_flavour, parse_flavours
from muxd_sim.modem_flavours import Flavour as Flavour
from muxd_sim.modem_ident import ModemIdentity as ModemIdentity
from muxd_sim.modem_ident import make_identity
from muxd_sim.modem_inject import CONCAT_REF_SPACE as CONCAT_REF_SPACE
from muxd_sim.modem_inject import LOAD_SENDERS, LOAD_TEMPLATES
from muxd_sim.modem_inject import LOAD_YIELD_EVERY as LOAD_YIELD_EVERY
from muxd_sim.modem_inject import NETWORK_TZ as NETWORK_TZ
from muxd_sim.modem_inject import encode_ahead as encode_ahead
from muxd_sim.modem_pty import EIO_RETRY_DELAY as EIO_RETRY_DELAY
from muxd_sim.modem_pty import FDS_PER_PORT as FDS_PER_PORT
from muxd_sim.modem_pty import MAX_PENDING_OUTPUT as MAX_PENDING_OUTPUT
from muxd_sim.modem_pty import READ_CHUNK as READ_CHUNK
from muxd_sim.modem_pty import SPLIT_MAX as SPLIT_MAX
from muxd_sim.modem_pty import SimPort, raise_fd_limit
from muxd_sim.modem_state import DEFAULT_CAPACITY, SimModemState, SmsSlot, storage_key
from muxd_sim.modem_state import SIM_STORAGE as SIM_STORAGE

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


class ModemSimulator(ModemChaos):
    """N simulated modems on pseudo-terminals (see module docstring).

    Hooks: ``on_delete(port, index, pdu_hex)`` is called synchronously inside
    ``AT+CMGD`` handling, before the ``OK`` is written; ``on_command(port, line)``
    for every command line before it is answered; ``on_event(port, event)`` for
    simulator events: ``power-up``, ``sms-ready``, ``urc-tick``, ``mute``, ``unmute``,
    ``vanish``, ``reappear``, ``sim-removed``, ``sim-inserted``, ``cnma-timeout`` (a routed
    SMS was not acknowledged in time), ``network-retry`` (the network delivers an SMS the
    modem did not take again; after :attr:`redelivery_s` seconds). An exception raised
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
        self._schedule_plan()

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
        state.on_cnma = lambda accepted: self._on_cnma(port, accepted)
        self._attach_pty(port)
        LOGGER.debug("%s -> %s number %s (%s)", name, port.tty_name, port.number, flavour.name)
        self._power_up(port)
        return port

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

    # ------------------------------------------------------------------ hooks

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
