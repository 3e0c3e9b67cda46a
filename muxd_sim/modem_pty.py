"""Pty side of the modem simulator: pty pairs, symlinks, readers/writers, output pacing.

:class:`SimPort` is one simulated modem (pty ends, identity, flavour, faults, AT state,
output queues). :class:`PtyIO` is the part of :class:`~muxd_sim.modem.ModemSimulator`
that opens a port's pty pair and points its symlink at the slave end (and undoes both),
feeds what the host writes to the AT interpreter, and writes the modem's output back:
in FIFO order, shaped by the port's I/O faults (response delay, noise, URCs in the middle
of a response, split reads), and buffered up to :data:`MAX_PENDING_OUTPUT` bytes per port
while the host does not read.

Late answers (``faults.late_p``): the input is run one command line at a time; a line
chosen late is run at once (its echo written) but its answer is held by one timer, and
every byte the host writes meanwhile waits in ``SimPort._held`` (unechoed, unrun, up to
:data:`MAX_HELD_INPUT` bytes, like a UART FIFO). When the timer fires the answer is
written and the held input is run, in order, as if it had just arrived (a held line may
be late in turn). Nothing polls: one timer per late answer. URCs are not held.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import resource
import tty
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from muxd_sim.modem_faults import Faults, add_noise, urc_spots
from muxd_sim.modem_flavours import FLAVOURS, Flavour
from muxd_sim.modem_state import SimModemState

__all__ = [
    "EIO_RETRY_DELAY",
    "FDS_PER_PORT",
    "MAX_PENDING_OUTPUT",
    "READ_CHUNK",
    "SPLIT_MAX",
    "NetworkSms",
    "PtyIO",
    "SimPort",
    "raise_fd_limit",
]

LOGGER = logging.getLogger("muxd_sim.modem")  # the whole simulator logs under one name

READ_CHUNK = 4096
MAX_PENDING_OUTPUT = 1 << 20  # per port; beyond this the modem "loses" output like a UART
EIO_RETRY_DELAY = 0.05  # seconds before polling a master again after EIO (no slave open)
SPLIT_MAX = 7  # split_reads writes 1..SPLIT_MAX bytes per loop iteration
FDS_PER_PORT = 2  # master + the slave end the simulator keeps open
MAX_HELD_INPUT = 1 << 16  # host bytes kept while a late answer is pending; more are lost


class NetworkSms(NamedTuple):
    """One SMS part the network still has to deliver to a routing modem."""

    sms_id: str
    hex: str
    tpdu_length: int
    sim_generation: int  # the SIM it was sent to (a swapped-out SIM never gets it)
    forced: bool  # routed whatever +CNMI says (the routed / routed_nocsms faults)


@dataclass(eq=False)
class SimPort:
    """One simulated modem: its pty, identity, flavour, faults and AT state.

    ``number`` is the current SIM's real number (ground truth); ``number_in_cnum``
    says whether ``AT+CNUM`` reveals it (``state.number`` is then the same, else None).
    ``imsi``/``iccid``/``number`` change on :meth:`~muxd_sim.modem.ModemSimulator.swap_sim`;
    ``tty_name`` on :meth:`~muxd_sim.modem.ModemSimulator.vanish` (the symlink ``path`` stays).
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
    _late: asyncio.TimerHandle | None = field(default=None, repr=False)  # a late answer due
    _held: bytearray = field(default_factory=bytearray, repr=False)  # input queued behind it
    late_answers: int = 0  # answers written late so far
    dropped_input: int = 0  # host bytes lost because too much was queued behind a late answer
    routed_sent: int = 0  # +CMT written (redeliveries included)
    cnma_acks: int = 0  # routed SMS acknowledged with AT+CNMA
    cnma_timeouts: int = 0  # routed SMS not acknowledged in time (the network retries)
    _network: deque[NetworkSms] = field(default_factory=deque, repr=False)  # not yet delivered
    _awaiting: NetworkSms | None = field(default=None, repr=False)  # +CMT waiting for AT+CNMA
    _cnma_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    _network_retry: bool = False  # the network will retry a part the full memory refused

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


def _replace_symlink(path: Path, target: str) -> None:
    """Point ``path`` at ``target`` atomically, replacing a stale symlink (never a file)."""
    if os.path.lexists(path) and not path.is_symlink():
        raise FileExistsError(f"{path} exists and is not a symlink")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


class PtyIO:
    """Pty I/O of :class:`~muxd_sim.modem.ModemSimulator` (a mixin, see the module docstring)."""

    errors: list[BaseException]
    _loop: asyncio.AbstractEventLoop | None
    _closed: bool

    def _power_up(self, port: SimPort) -> None:
        """Boot ``port``'s modem (implemented by :class:`~muxd_sim.modem_boot.ModemBoot`)."""
        raise NotImplementedError

    def _event(self, port: SimPort, event: str) -> None:
        """Report a simulator event (implemented by :class:`~muxd_sim.modem_boot.ModemBoot`)."""
        raise NotImplementedError

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
        if port._late is not None:
            port._late.cancel()
            port._late = None
        port._held.clear()
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
        self._serve_input(port, data)

    def _serve_input(self, port: SimPort, data: bytes) -> None:
        """Run what the host wrote and write the answers (late ones by timer)."""
        if port._late is not None:  # busy: queue behind the late answer
            room = MAX_HELD_INPUT - len(port._held)
            port.dropped_input += max(len(data) - room, 0)
            port._held += data[: max(room, 0)]
            return
        state = port.state
        late_p = state.faults.late_p
        try:
            if late_p > 0:
                data = self._run_until_late(port, data, late_p)
            else:
                self._answer(port, state.feed_chunks(data))
                data = b""
        except Exception as exc:
            LOGGER.exception("AT interpreter failed on %s", port.name)
            self.errors.append(exc)
            return
        if data:
            port._held[:0] = data
        if state.reboot_pending and port._late is None:  # a reset answered late reboots after
            self._power_up(port)

    def _answer(self, port: SimPort, chunks: list[tuple[bool, bytes]]) -> None:
        if not chunks:
            return
        if port.state.faults.shapes_output or port._outq:
            for is_echo, chunk in chunks:
                self._emit(port, chunk, response=not is_echo)
        else:
            self._write_raw(port, b"".join(chunk for _, chunk in chunks))

    def _run_until_late(self, port: SimPort, data: bytes, late_p: float) -> bytes:
        """Run ``data`` line by line until a line is chosen late; return what is left."""
        assert self._loop is not None
        state = port.state
        start = 0
        while start < len(data):
            end = data.find(b"\r", start)
            end = len(data) if end < 0 else end + 1
            chunks = state.feed_chunks(data[start:end])
            start = end
            answers = [chunk for is_echo, chunk in chunks if not is_echo]
            if not answers or port.rng.random() >= late_p:
                self._answer(port, chunks)
                continue
            self._answer(port, [(True, chunk) for is_echo, chunk in chunks if is_echo])
            faults = state.faults
            wait = port.rng.uniform(faults.late_min_s, faults.late_max_s)
            answer = b"".join(answers)
            port._late = self._loop.call_later(wait, self._late_answer, port, answer)
            return data[start:]
        return b""

    def _late_answer(self, port: SimPort, answer: bytes) -> None:
        """The late answer is due: write it, then run the input queued behind it."""
        port._late = None
        port.late_answers += 1
        if port.master_fd < 0:
            return
        try:
            self._emit(port, answer, response=True)
            self._event(port, "late-answer")
            held = bytes(port._held)
            port._held.clear()
            if port.state.reboot_pending:
                self._power_up(port)
            if held:
                self._serve_input(port, held)
        except Exception as exc:
            LOGGER.exception("late answer failed on %s", port.name)
            self.errors.append(exc)

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
