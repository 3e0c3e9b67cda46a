"""SMS injection into the simulated modems, load generation and the ground-truth log.

:class:`SmsInjector` is the part of :class:`~muxd_sim.modem.ModemSimulator` that receives
an SMS on a modem (``inject``: parts encoded by :func:`muxd.pdu.encode_deliver` stored in
its memory, announced with ``+CMTI``), injects at a steady seeded rate (``run_load``) and
keeps the ground truth: one JSON line per injected SMS in ``log_path``, and a
``{"event": "discarded", ...}`` line per SMS that leaves with a swapped-out SIM.

The port's SMS faults apply here: ``reused_refs`` turns an SMS into two messages sharing
a reference (two lines, each with its true text, ``"reused_ref": <ref>``), ``bad_scts`` /
``absurd_scts`` spoil its stamp (``"scts_fault": <kind>``, ``"scts_raw": <hex>``), and a
modem that routes new SMS (``AT+CNMI`` mt=2, ``routed``, ``routed_nocsms``) gets them through
:mod:`muxd_sim.modem_routed` (``"routed": true``, no ``indices``; so does an SMS that queues
behind one, ``"routed": false``, stored when the network delivers it). Every such SMS counts as
injected (``"stored": true`` means the modem took it; false only for a full memory).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import orjson

from muxd.pdu import EncodedPdu, encode_deliver
from muxd.pdu.scts import encode_scts
from muxd_sim.modem_commands import SMSC_NUMBER
from muxd_sim.modem_faults import PARTS_ORDERS
from muxd_sim.modem_pty import NetworkSms, SimPort
from muxd_sim.modem_routed import RoutedDelivery
from muxd_sim.modem_smsfaults import (
    ABSURD_SCTS,
    BAD_SCTS,
    interleaved,
    reused_ref_stamps,
    reused_ref_texts,
    scts_bytes,
    with_scts,
)
from muxd_sim.modem_state import SIM_STORAGE

__all__ = [
    "CONCAT_REF_SPACE",
    "LOAD_SENDERS",
    "LOAD_TEMPLATES",
    "LOAD_YIELD_EVERY",
    "NETWORK_TZ",
    "SmsInjector",
]

LOGGER = logging.getLogger("muxd_sim.modem")  # the whole simulator logs under one name

LOAD_YIELD_EVERY = 64  # run_load yields to the loop at least this often while catching up
NETWORK_TZ = timezone(timedelta(hours=3))  # SCTS as MTS Moscow stamps it
LOAD_TEMPLATES = ("Your code is {code}", "Ваш код {code}", "Code 😀 {code}")
LOAD_SENDERS = ("Telegram", "+79161234567", "Google", "+79031112233")
CONCAT_REF_SPACE = 256
_REF_COUNTER_SPACE = 1 << 16


def encode_ahead(sender: str, text: str, scts: datetime) -> EncodedPdu | None:
    """The PDU :meth:`SmsInjector.inject` would send for a one-part SMS (None: more parts)."""
    parts = encode_deliver(sender, text, scts=scts, smsc=SMSC_NUMBER)
    return parts[0] if len(parts) == 1 else None


class SmsInjector(RoutedDelivery):
    """SMS injection and ground truth of :class:`~muxd_sim.modem.ModemSimulator` (a mixin)."""

    ports: list[SimPort]
    injected: int
    refused: int
    discarded: int
    _slot_ids: dict[tuple[int, str, int], str]
    _log: IO[str] | None
    _load_rng: random.Random

    def inject(
        self,
        port_index: int,
        sender: str,
        text: str,
        *,
        scts: datetime | None = None,
        ref_bits: int | None = None,
        order: str | None = None,
        encoded: EncodedPdu | None = None,
    ) -> str:
        """Receive an SMS on ``port_index``: store its parts, send ``+CMTI``, log; return its id.

        ``ref_bits`` (8 or 16: the concatenation reference size) and ``order`` (``in``,
        ``reverse``, ``shuffle``: the order the parts reach the memory) default to the
        port's ``faults.ref_bits`` / ``faults.parts_order``. The log's ``indices`` are in
        part order. ``encoded``: the single PDU of a one-part SMS (``text`` from ``sender``
        at ``scts``), encoded ahead of time by a load generator that keeps its own CPU low.
        The port's SMS faults apply (see the module docstring): with ``reused_refs`` the
        SMS may become two messages (two log lines; the first one's id is returned).
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
        faults = state.faults
        if faults.reused_refs > 0 and port.rng.random() < faults.reused_refs:
            return self._inject_reused_ref(port, sender, text, when, ref, bits)
        if encoded is not None:
            if scts is None:
                raise ValueError("a pre-encoded SMS needs the scts it was encoded with")
            parts = [encoded]
        else:
            parts = encode_deliver(
                sender, text, scts=when, smsc=SMSC_NUMBER, ref=ref, ref_bits=bits
            )
        extra: dict[str, Any] = {"ref_bits": bits, "order": how}
        stamp = self._stamp_fault(port)
        if stamp is not None:
            raw = scts_bytes(when, stamp)
            parts = [with_scts(part, raw) for part in parts]
            extra.update(scts_fault=stamp, scts_raw=raw.hex().upper())
        arrival = list(range(len(parts)))
        if how == "reverse":
            arrival.reverse()
        elif how == "shuffle":
            port.rng.shuffle(arrival)
        sms_id = uuid.uuid4().hex
        self.injected += 1
        forced = self._routing_fault(port)
        if forced or state.routes_new_sms or port._network or port._awaiting is not None:
            generation = port.sim_generation
            network = [
                NetworkSms(sms_id, parts[k].hex, parts[k].tpdu_length, generation, forced)
                for k in arrival
            ]
            self._send_to_network(port, network)
            extra["routed"] = forced or state.routes_new_sms
            self._log_sms(port, sms_id, sender, text, len(parts), [], True, when, extra)
            return sms_id
        stored_at = self._store([(sms_id, parts[k]) for k in arrival], port)
        slots = {arrival[position]: slot for position, slot in stored_at.items()}
        indices = [slots[part] for part in range(len(parts)) if part in slots]
        stored = len(slots) == len(parts)
        if not stored:
            self.refused += 1
            LOGGER.info("%s: SMS memory full, SMS from %s refused", port.name, sender)
        self._log_sms(port, sms_id, sender, text, len(parts), indices, stored, when, extra)
        return sms_id

    def _store(self, parts: list[tuple[str, EncodedPdu]], port: SimPort) -> dict[int, int]:
        """Store ``(sms id, part)`` in this order, announce them; arrival position -> slot."""
        state = port.state
        mem = state.receive_mem
        slots: dict[int, int] = {}
        announce = bytearray()
        for position, (sms_id, part) in enumerate(parts):
            slot = state.store_deliver(part)
            if slot is not None:
                slots[position] = slot
                self._slot_ids[(port.index, mem, slot)] = sms_id
                announce += state.cmti_if_enabled(slot, mem)
        announce += state.storage_full_urc()
        self._emit(port, bytes(announce))
        return slots

    def _routing_fault(self, port: SimPort) -> bool:
        """True when the port's routing faults route the next SMS whatever +CNMI says."""
        faults = port.state.faults
        share = max(faults.routed, faults.routed_nocsms)
        return share > 0 and (share >= 1 or port.rng.random() < share)

    def _stamp_fault(self, port: SimPort) -> str | None:
        """A bad or absurd stamp kind for the next SMS on ``port`` (its faults' odds), or None."""
        faults = port.state.faults
        if faults.bad_scts > 0 and port.rng.random() < faults.bad_scts:
            return port.rng.choice(BAD_SCTS)
        if faults.absurd_scts > 0 and port.rng.random() < faults.absurd_scts:
            return port.rng.choice(ABSURD_SCTS)
        return None

    def _inject_reused_ref(
        self, port: SimPort, sender: str, text: str, when: datetime, ref: int, bits: int
    ) -> str:
        """Two 2-part messages sharing ``ref``, stored A1, B1, B2, A2; return A's id."""
        texts = reused_ref_texts(text)
        encoded = [
            encode_deliver(sender, body, scts=when, smsc=SMSC_NUMBER, ref=ref, ref_bits=bits)
            for body in texts
        ]
        total = len(encoded[0])
        stamps = reused_ref_stamps(when, total)
        parts = [
            [with_scts(part, encode_scts(stamps[m][k])) for k, part in enumerate(encoded[m])]
            for m in (0, 1)
        ]
        ids = (uuid.uuid4().hex, uuid.uuid4().hex)
        order = interleaved(total)
        self.injected += 2
        state = port.state
        extra: dict[str, Any] = {"ref_bits": bits, "order": "interleaved", "reused_ref": ref}
        forced = self._routing_fault(port)
        if forced or state.routes_new_sms or port._network or port._awaiting is not None:
            generation = port.sim_generation
            network = [
                NetworkSms(ids[m], parts[m][k].hex, parts[m][k].tpdu_length, generation, forced)
                for m, k in order
            ]
            self._send_to_network(port, network)
            extra["routed"] = forced or state.routes_new_sms
            for m in (0, 1):
                part_scts = [stamp.isoformat() for stamp in stamps[m]]
                self._log_sms(
                    port, ids[m], sender, texts[m], total, [], True, stamps[m][0],
                    {**extra, "part_scts": part_scts},
                )  # fmt: skip
            return ids[0]
        slots = self._store([(ids[m], parts[m][k]) for m, k in order], port)
        for m in (0, 1):
            positions = {k: pos for pos, (mm, k) in enumerate(order) if mm == m}
            indices = [slots[positions[k]] for k in range(total) if positions[k] in slots]
            stored = len(indices) == total
            if not stored:
                self.refused += 1
            part_scts = [stamp.isoformat() for stamp in stamps[m]]
            self._log_sms(
                port, ids[m], sender, texts[m], total, indices, stored, stamps[m][0],
                {**extra, "part_scts": part_scts},
            )  # fmt: skip
        return ids[0]

    def _log_sms(
        self,
        port: SimPort,
        sms_id: str,
        sender: str,
        text: str,
        parts: int,
        indices: list[int],
        stored: bool,
        when: datetime,
        extra: dict[str, Any],
    ) -> None:
        if self._log is None:
            return
        record: dict[str, Any] = {
            "id": sms_id,
            "t": time.time(),
            "port": port.name,
            "number": port.number,
            "sender": sender,
            "text": text,
            "parts": parts,
            "indices": indices,
            "stored": stored,
            "scts": when.isoformat(),
            "mem": port.state.receive_mem,
            **extra,
        }
        self._log.write(orjson.dumps(record).decode() + "\n")
        self._log.flush()

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
            self._log.write(orjson.dumps(record).decode() + "\n")
        self._log.flush()
