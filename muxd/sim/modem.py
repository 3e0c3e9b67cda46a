"""Pseudo-terminal modem simulator: N fake GSM/LTE modems behind real ptys.

``async with ModemSimulator(16, Path("/tmp/ports")) as sim`` creates 16 pty pairs
and symlinks ``/tmp/ports/port000`` … ``port015`` to the slave ends; a host opens
those paths with pyserial exactly like USB modems. Behind every master end a
:class:`~muxd.sim.modem_state.SimModemState` answers AT commands. ``inject`` puts a
received SMS (encoded by :func:`muxd.pdu.encode_deliver`) into a modem's SIM storage
and announces it with ``+CMTI``; ``run_load`` does so at a steady rate. Every
injected SMS is appended as one JSON line to ``log_path`` (the ground truth).

Identity scheme (see :mod:`muxd.sim.modem_ident`): deterministic per ``(seed, i)``.
With ``numbers_in_cnum=True`` even-indexed ports answer ``AT+CNUM`` with their number
and odd-indexed ports answer a bare ``OK`` (the SIM stores no number);
:func:`write_numbers_csv` writes the numbers of those odd ports (within the first
``share`` of all ports) to a CSV keyed alternately by ICCID and by IMSI. With
``numbers_in_cnum=False`` no port answers ``AT+CNUM`` with a number.
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
import time
import tty
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from muxd.pdu import encode_deliver
from muxd.sim.modem_commands import SMSC_NUMBER
from muxd.sim.modem_ident import make_identity
from muxd.sim.modem_state import DEFAULT_CAPACITY, SimModemState, SmsSlot

__all__ = [
    "LOAD_SENDERS",
    "LOAD_TEMPLATES",
    "ModemSimulator",
    "SimModemState",
    "SimPort",
    "SmsSlot",
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


@dataclass(eq=False)
class SimPort:
    """One simulated modem: its pty, identity and AT state.

    ``number`` is the SIM's real number (ground truth); ``number_in_cnum`` says whether
    ``AT+CNUM`` reveals it (``state.number`` is then the same, else None).
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
    tty_name: str = ""
    master_fd: int = field(default=-1, repr=False)
    slave_fd: int = field(default=-1, repr=False)
    dropped_output: int = 0  # bytes lost because the host did not read
    _pending: bytearray = field(default_factory=bytearray, repr=False)
    _concat_ref: int = field(default=0, repr=False)


class ModemSimulator:
    """N simulated modems on pseudo-terminals (see module docstring).

    Hooks: ``on_delete(port, index, pdu_hex)`` is called synchronously inside
    ``AT+CMGD`` handling, before the ``OK`` is written; ``on_command(port, line)``
    for every command line before it is answered. An exception raised by a hook (or
    the interpreter) is logged, kept in ``errors`` and re-raised by ``__aexit__``
    when the ``async with`` body itself ended normally.
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
        index_base: int = 1,
        on_delete: Callable[[SimPort, int, str], None] | None = None,
        on_command: Callable[[SimPort, str], None] | None = None,
    ) -> None:
        if n_ports < 1:
            raise ValueError(f"n_ports must be >= 1, got {n_ports}")
        self.n_ports = n_ports
        self.directory = Path(directory)
        self.log_path = Path(log_path) if log_path is not None else None
        self.seed = seed
        self.numbers_in_cnum = numbers_in_cnum
        self.first_number = first_number
        self.capacity = capacity
        self.index_base = index_base
        self.on_delete = on_delete
        self.on_command = on_command
        self.ports: list[SimPort] = []
        self.errors: list[BaseException] = []
        self.injected = 0
        self.refused = 0  # SMS not (completely) stored because SIM storage was full
        self._loop: asyncio.AbstractEventLoop | None = None
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
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            if self.log_path is not None:
                self._log = self.log_path.open("a", encoding="utf-8")
            for index in range(self.n_ports):
                self.ports.append(self._open_port(index))
        except BaseException:
            self.close()
            raise

    def _open_port(self, index: int) -> SimPort:
        assert self._loop is not None
        ident = make_identity(self.seed, index, first_number=self.first_number)
        in_cnum = self.numbers_in_cnum and index % 2 == 0
        state = SimModemState(
            imei=ident.imei,
            imsi=ident.imsi,
            iccid=ident.iccid,
            number=ident.number if in_cnum else None,
            capacity=self.capacity,
            index_base=self.index_base,
            rssi=ident.rssi,
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
        )
        state.on_delete = lambda slot, pdu_hex: self._call_delete_hook(port, slot, pdu_hex)
        state.on_command = lambda line: self._call_command_hook(port, line)
        port.master_fd, port.slave_fd = os.openpty()
        try:
            tty.setraw(port.slave_fd)
            os.set_blocking(port.master_fd, False)
            port.tty_name = os.ttyname(port.slave_fd)
            _replace_symlink(port.path, port.tty_name)
            self._loop.add_reader(port.master_fd, self._on_readable, port)
        except BaseException:
            os.close(port.master_fd)
            os.close(port.slave_fd)
            raise
        LOGGER.debug("%s -> %s number %s", name, port.tty_name, port.number)
        return port

    def close(self) -> None:
        """Stop serving: remove readers/writers, close the ptys, remove our symlinks."""
        for port in self.ports:
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
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ hooks

    def _call_delete_hook(self, port: SimPort, index: int, pdu_hex: str) -> None:
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
        try:
            answer = port.state.feed(data)
        except Exception as exc:
            LOGGER.exception("AT interpreter failed on %s", port.name)
            self.errors.append(exc)
            return
        if answer:
            self.write(port, answer)

    def _pause_reader(self, port: SimPort) -> None:
        assert self._loop is not None
        self._loop.remove_reader(port.master_fd)

        def resume() -> None:
            if port.master_fd >= 0 and self._loop is not None:
                self._loop.add_reader(port.master_fd, self._on_readable, port)

        self._loop.call_later(EIO_RETRY_DELAY, resume)

    def write(self, port: SimPort, data: bytes) -> None:
        """Send raw bytes to the host on ``port`` (answers and URCs), in order."""
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

    # ------------------------------------------------------------------ SMS

    def inject(
        self, port_index: int, sender: str, text: str, *, scts: datetime | None = None
    ) -> str:
        """Receive an SMS on ``port_index``: store its parts, send ``+CMTI``, log; return its id."""
        if self._loop is None:
            raise RuntimeError("simulator not started")
        port = self.ports[port_index]
        when = scts if scts is not None else datetime.now(NETWORK_TZ).replace(microsecond=0)
        ref = port._concat_ref
        port._concat_ref = (ref + 1) % CONCAT_REF_SPACE
        parts = encode_deliver(sender, text, scts=when, smsc=SMSC_NUMBER, ref=ref)
        indices: list[int] = []
        for part in parts:
            slot = port.state.store_deliver(part)
            if slot is not None:
                indices.append(slot)
        stored = len(indices) == len(parts)
        self.injected += 1
        if not stored:
            self.refused += 1
            LOGGER.info("%s: SIM storage full, SMS from %s refused", port.name, sender)
        self.write(port, b"".join(port.state.cmti_if_enabled(slot) for slot in indices))
        sms_id = uuid.uuid4().hex
        if self._log is not None:
            record = {
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
) -> None:
    """CLI body: serve ``ports`` modems in ``directory``; inject at ``rate`` SMS/s if > 0.

    Prints ``port000 -> /dev/pts/N number +7900...`` per port, then runs until
    cancelled or until ``duration`` seconds have passed.
    """
    async with ModemSimulator(ports, directory, log_path=log_path) as sim:
        for port in sim.ports:
            print(f"{port.name} -> {port.tty_name} number {port.number}", flush=True)
        if rate > 0:
            await sim.run_load(rate, duration=duration)
        elif duration is not None:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
