"""Fakes for the modem layer: a scripted modem transport, run on virtual time.

The tests run on :func:`muxd_sim.clock.run_virtual`: a real asyncio loop whose clock only moves
when nothing is ready to run: it then jumps to the next timer. Deadlines, floors and sleeps in
muxd run unchanged (``loop.call_later``, ``asyncio.sleep``), take no wall time, and happen in a
fixed order.

``FakeModem`` is an ``asyncio.Transport``: what the session writes is split into command
lines by muxd's own line buffer; each command is answered by a small model of a modem (SMS
storage in one or two memories, identity, settings) after a per-command delay, strictly in
order: a command's answer never overtakes the previous one's, so a late answer delays every
later one (as a busy module does). Answers go to the session's ``data_received`` whole or in
pieces (``chunker``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from muxd.at.buffer import LineBuffer
from muxd.errors import JournalError
from muxd.ports import PartRead, PartStored

Chunker = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def answer(*lines: str) -> bytes:
    """Lines as a modem sends them (ATV1: each framed by CRLF)."""
    return b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines)


@dataclass
class ModemModel:
    """What the fake modem knows: storage, identity, which commands it refuses."""

    storage: dict[str, dict[int, str]] = field(default_factory=lambda: {"SM": {}})
    iccid: str = "89701010000000000017"
    imsi: str = "250011234567890"
    number: str = "+79001234567"  # what AT+CNUM answers
    csms: bool = True  # AT+CSMS=1 accepted
    refuse: dict[str, str] = field(default_factory=dict)  # command prefix -> final line
    # memory -> final line for every listing/read/delete while it is selected
    broken: dict[str, str] = field(default_factory=dict)
    mem1: str = "SM"
    deleted: list[tuple[str, int, str]] = field(default_factory=list)  # (mem, index, pdu)

    def respond(self, command: str) -> bytes:
        for prefix, final in self.refuse.items():
            if command.startswith(prefix):
                return answer(final)
        broken = self.broken.get(self.mem1)
        if broken is not None and command.startswith(("AT+CMGL", "AT+CMGR", "AT+CMGD")):
            return answer(broken)
        lines = self._lines(command)
        return answer(*lines, "OK") if lines is not None else answer("ERROR")

    def _lines(self, command: str) -> list[str] | None:
        mem = self.storage.setdefault(self.mem1, {})
        if command.startswith("AT+CPMS="):
            self.mem1 = command.split('"')[1]
            used = len(self.storage.setdefault(self.mem1, {}))
            return [f"+CPMS: {used},30,{used},30,{used},30"]
        if command.startswith("AT+CMGR="):
            index = int(command[8:])
            if index not in mem:
                return None
            pdu = mem[index]
            return [f"+CMGR: 0,,{len(pdu) // 2 - 1}", pdu]
        if command == "AT+CMGL=4":
            out: list[str] = []
            for index, pdu in sorted(mem.items()):
                out += [f"+CMGL: {index},0,,{len(pdu) // 2 - 1}", pdu]
            return out
        if command.startswith("AT+CMGD="):
            index = int(command[8:].split(",")[0])
            if index in mem:
                self.deleted.append((self.mem1, index, mem.pop(index)))
            return []
        if command == "AT+CSMS=1":
            return ["+CSMS: 1,1,1"] if self.csms else None
        fixed = {
            "AT+CMEE?": ["+CMEE: 1"],
            "AT+CSCS?": ['+CSCS: "GSM"'],
            "AT+CMGF?": ["+CMGF: 0"],
            "AT+CSQ": ["+CSQ: 20,99"],
            "AT+CGSN": ["867530021234567"],
            "AT+CIMI": [self.imsi],
            "AT+CNUM": [f'+CNUM: "","{self.number}",145'],
            "AT+CCID": [f"+CCID: {self.iccid}"],
            "AT+CGMI": ["Generic"],
            "AT+CGMM": ["Fake 1"],
            "AT+CREG?": ["+CREG: 0,1"],
            "AT+COPS?": ['+COPS: 0,2,"25001",7'],
        }
        return fixed.get(command, [])


class FakeModem(asyncio.Transport):
    """A scripted modem behind an asyncio transport (see the module docstring)."""

    def __init__(
        self,
        protocol: asyncio.Protocol,
        model: ModemModel | None = None,
        *,
        chunker: Chunker = whole,
        latency: float = 0.0,
    ) -> None:
        super().__init__()
        self.protocol = protocol
        self.model = model or ModemModel()
        self.chunker = chunker
        self.latency = latency  # every answer takes this long
        # command -> extra seconds before its answer, once (a busy module)
        self.slow: dict[str, float] = {}
        self.silent: set[str] = set()  # commands never answered (executed, answer lost)
        self.inject: dict[str, bytes] = {}  # command -> bytes put before its answer's final
        self.written: list[str] = []
        self.received = asyncio.Event()  # set on each command written
        self.closed = False
        self._lines = LineBuffer(1024)
        self._loop = asyncio.get_running_loop()
        self._free_at = 0.0  # when the modem has answered everything queued
        protocol.connection_made(self)

    # -- asyncio.Transport -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        for line in self._lines.push(bytes(data)):
            assert isinstance(line, bytes | bytearray)
            self._command(bytes(line).decode("ascii"))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.call_soon(self.protocol.connection_lost, None)

    # -- the modem ---------------------------------------------------------------------------

    def _command(self, command: str) -> None:
        self.written.append(command)
        self.received.set()
        if command in self.silent:
            self.model.respond(command)  # executed all the same
            return
        data = self.model.respond(command)
        extra = self.inject.get(command)
        if extra is not None:
            cut = data.rstrip(b"\r\n").rfind(b"\r\n")
            data = data[:cut] + extra + data[cut:]
        now = self._loop.time()
        self._free_at = max(now, self._free_at) + self.latency + self.slow.pop(command, 0.0)
        self._loop.call_at(self._free_at, self.send, data)

    def send(self, data: bytes) -> None:
        """Bytes from the modem (an answer, a URC), in the configured pieces."""
        if self.closed:
            return
        for chunk in self.chunker(data):
            self.protocol.data_received(chunk)

    async def next_command(self) -> str:
        """Wait for a command written after the call."""
        count = len(self.written)
        while len(self.written) == count:
            self.received.clear()
            await self.received.wait()
        return self.written[count]


@dataclass
class RecordingSink:
    """A PartSink that records what it stored; ``undecodable`` decides its answer per PDU."""

    stored: list[tuple[str, int, str]] = field(default_factory=list)
    sims: list[str | None] = field(default_factory=list)  # the SIM each part was stored under
    numbers: list[str | None] = field(default_factory=list)  # and the number
    undecodable: set[str] = field(default_factory=set)
    fail: bool = False  # raise JournalError
    calls: int = 0
    on_store: Callable[[], None] | None = None
    parts: list[PartRead] = field(default_factory=list)  # every record handed over

    async def __call__(self, part: PartRead, /) -> PartStored:
        self.calls += 1
        if self.fail:
            raise JournalError("disk says no")
        self.parts.append(part)
        self.stored.append((part.storage, part.index, part.pdu))
        self.sims.append(part.sim)
        self.numbers.append(part.number)
        if self.on_store is not None:
            self.on_store()
        return PartStored(new=True, decodable=part.pdu not in self.undecodable, completed=True)
