"""The ground truth of a run: what was injected into simulated modems against what arrived at
the Onlinesim stand-in (or another daemon's sink).

Every SMS a test or benchmark injects is unique by (receiving number, sender, text), so a
delivery matches one injected SMS by that key or matches none. From the two sides the
:class:`Ledger` says what was *lost* (never delivered), *duplicated* (delivered more than once),
*corrupted* (a delivery that matches no SMS: a text, sender or number that was not sent),
*misdelivered* (those, sorted by what differs from the SMS with the same text) and the
*latency* of each delivery (from injection to arrival).

Two readings of the same ledger: :meth:`Ledger.lost` / :meth:`Ledger.unknown` /
:meth:`Ledger.duplicates` compare keys exactly (an SMS delivered garbled is lost, and its
garbled copy unknown), as the tests' invariants want; :meth:`Ledger.pair_corrupted` then
:meth:`Ledger.stats` pair each garbled delivery with the SMS it most likely was, so that SMS
counts once, as corrupted, as the benchmark's figures want.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from muxd_sim.modem_smsfaults import BAD_SCTS

Key = tuple[str, str, str]  # (receiving number, sender, text)

MISDELIVERED_EXAMPLES = 20  # evidence items kept
_HALVES = (" (A)", " (B)")  # muxd_sim.modem_smsfaults.reused_ref_texts marks A and B so


def _base(text: str) -> str:
    for half in _HALVES:
        at = text.find(half)
        if at >= 0:
            return text[:at]
    return text


@dataclass(frozen=True, slots=True)
class Delivery:
    t: float  # when the sink received it (UNIX seconds)
    number: str  # receiving number
    sender: str
    text: str


@dataclass(slots=True)
class Sent:
    t: float  # injection time: when the +CMTI was written
    number: str
    sender: str
    text: str
    step: int
    delivered_at: float | None = None
    copies: int = 0
    corrupted: bool = False  # paired with a delivery whose content differs
    sms_id: str = ""  # the simulator's id
    port: str = ""  # the port it was injected on (the name the daemon sees)
    # why it cannot arrive, if so: "sim-swap" (left in the memory of a swapped-out SIM),
    # "refused" (the memory was full)
    excused: str = ""
    tags: tuple[str, ...] = ()  # its SMS faults (sms_fault_tags)


def sms_fault_tags(record: dict[str, Any]) -> tuple[str, ...]:
    """The simulator's SMS faults on one ground-truth line: ``bad_scts`` (an invalid stamp),
    ``absurd_scts`` (year 2099, zone -17:30), ``reused_ref`` (shares its concatenation
    reference with another message from the same sender, parts interleaved), ``routed``
    (given to the host as ``+CMT``, never stored by the modem)."""
    tags = []
    stamp = record.get("scts_fault")
    if stamp:
        tags.append("bad_scts" if stamp in BAD_SCTS else "absurd_scts")
    if "reused_ref" in record:
        tags.append("reused_ref")
    if record.get("routed"):
        tags.append("routed")
    return tuple(tags)


@dataclass
class StepStats:
    injected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    excused: dict[str, int] = field(default_factory=dict)  # undelivered, and could not be
    first_injection: float | None = None
    last_injection: float | None = None
    last_delivery: float | None = None
    latencies_ms: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


class Ledger:
    """Ground truth vs deliveries.

    The harness reads the ground truth and the deliveries at slightly different moments, so a
    fast delivery can be read before its SMS's ground-truth line: it waits in ``unmatched``
    and is matched when that line arrives. What is still unmatched at the end is corrupted.

    An SMS the simulator could not store (memory full, ``"stored": false``) or that left with a
    swapped-out SIM (a ``"discarded"`` line) is *excused*: not expected, counted apart from the
    lost ones when it does not arrive (delivered when it does: read before the swap).
    """

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.by_key: dict[tuple[str, str, str], Sent] = {}
        # deliveries without (yet) a matching SMS: key -> [(delivery, step when received)]
        self.early: dict[tuple[str, str, str], list[tuple[Delivery, int]]] = {}
        self.delivered = 0
        self.duplicated = 0
        self.injected_by_step: dict[int, int] = defaultdict(int)
        self.delivered_by_step: dict[int, int] = defaultdict(int)
        self.by_id: dict[str, Sent] = {}
        self.excused_pending_by_step: dict[int, int] = defaultdict(int)  # excused, not delivered
        self.recent_ms: list[float] = []  # latencies since the last progress line
        self.points: list[tuple[float, float]] = []  # (injection t, latency ms) for the plot
        self.spurious_steps: list[int] = []  # see pair_corrupted

    @property
    def unmatched(self) -> list[tuple[Delivery, int]]:
        return [item for items in self.early.values() for item in items]

    def expected(self, step: int) -> int:
        """How many SMS of ``step`` can still be delivered or were (all but the excused)."""
        return self.injected_by_step[step] - self.excused_pending_by_step[step]

    def add_sent(self, record: dict[str, Any], step: int) -> None:
        """One line of the simulator's ground-truth log (an SMS, or a ``discarded`` event)."""
        if "event" in record:
            if record["event"] == "discarded":  # SIM swap: it left with the old SIM
                self._excuse(self.by_id.get(record["id"]), record.get("reason") or "discarded")
            return
        self.add(
            record["number"],
            record["sender"],
            record["text"],
            t=record["t"],
            step=step,
            sms_id=record.get("id", ""),
            port=record.get("port", ""),
            tags=sms_fault_tags(record),
            excused="refused" if record.get("stored") is False else "",
        )

    def add(
        self,
        number: str,
        sender: str,
        text: str,
        *,
        t: float = 0.0,
        step: int = 0,
        sms_id: str = "",
        port: str = "",
        tags: tuple[str, ...] = (),
        excused: str = "",
    ) -> Sent:
        """One injected SMS; ``excused`` says why it cannot arrive, if so."""
        sent = Sent(t, number, sender, text, step, sms_id=sms_id, port=port, tags=tags)
        key = (sent.number, sent.sender, sent.text)
        if key in self.by_key:
            raise RuntimeError(f"ground truth repeats an SMS: {key}")
        self.by_key[key] = sent
        if sent.sms_id:
            self.by_id[sent.sms_id] = sent
        self.sent.append(sent)
        self.injected_by_step[step] += 1
        if excused:
            self._excuse(sent, excused)
        for delivery, _ in self.early.pop(key, ()):
            self._deliver(sent, delivery)
        return sent

    def _excuse(self, sent: Sent | None, reason: str) -> None:
        if sent is None or sent.excused:
            return
        sent.excused = reason
        if sent.delivered_at is None:
            self.excused_pending_by_step[sent.step] += 1

    def add_delivery(self, delivery: Delivery, step: int = 0) -> None:
        key = (delivery.number, delivery.sender, delivery.text)
        sent = self.by_key.get(key)
        if sent is None:
            self.early.setdefault(key, []).append((delivery, step))
        else:
            self._deliver(sent, delivery)

    def _deliver(self, sent: Sent, delivery: Delivery) -> None:
        sent.copies += 1
        if sent.copies > 1:
            self.duplicated += 1
            return
        sent.delivered_at = delivery.t
        if sent.excused:
            self.excused_pending_by_step[sent.step] -= 1
        self.delivered += 1
        self.delivered_by_step[sent.step] += 1
        latency = (delivery.t - sent.t) * 1000
        self.recent_ms.append(latency)
        self.points.append((sent.t, latency))

    def pair_corrupted(self) -> None:
        """Pair each unmatched delivery with an undelivered SMS to the same number (same
        sender first): that SMS arrived, corrupted. Unpaired ones (e.g. a garbled number)
        are counted corrupted in the step they arrived in."""
        waiting: dict[str, list[Sent]] = defaultdict(list)
        for sent in self.sent:
            sent.corrupted = False
            if sent.delivered_at is None and not sent.excused:
                waiting[sent.number].append(sent)
        self.spurious_steps = []
        for delivery, step in self.unmatched:
            candidates = waiting.get(delivery.number, [])
            match = next((s for s in candidates if s.sender == delivery.sender), None)
            if match is None and candidates:
                match = candidates[0]
            if match is None:
                self.spurious_steps.append(step)
            else:
                candidates.remove(match)
                match.corrupted = True

    def stats(self, step: int | None = None) -> StepStats:
        """Totals over ``step`` (None: all); call :meth:`pair_corrupted` first."""
        out = StepStats()
        for sent in self.sent:
            if step is not None and sent.step != step:
                continue
            out.injected += 1
            if out.first_injection is None or sent.t < out.first_injection:
                out.first_injection = sent.t
            if out.last_injection is None or sent.t > out.last_injection:
                out.last_injection = sent.t
            if sent.delivered_at is not None:
                out.delivered += 1
                out.duplicated += sent.copies - 1
                out.latencies_ms.append((sent.delivered_at - sent.t) * 1000)
                if out.last_delivery is None or sent.delivered_at > out.last_delivery:
                    out.last_delivery = sent.delivered_at
            elif sent.corrupted:
                out.corrupted += 1
            elif sent.excused:
                out.excused[sent.excused] = out.excused.get(sent.excused, 0) + 1
            else:
                out.lost += 1
        out.corrupted += sum(1 for at in self.spurious_steps if step is None or at == step)
        return out

    # -- exact comparison (the tests' invariants) --------------------------------------------

    def lost(self) -> list[Key]:
        """Keys of the SMS not delivered (the excused ones apart), sorted."""
        return sorted(
            (s.number, s.sender, s.text)
            for s in self.sent
            if s.delivered_at is None and not s.excused
        )

    def unknown(self) -> list[Key]:
        """Keys of the deliveries that match no injected SMS, each once, sorted."""
        return sorted(self.early)

    def duplicates(self) -> dict[Key, int]:
        """Key -> copies delivered, for every key delivered more than once (unknown ones too)."""
        out = {(s.number, s.sender, s.text): s.copies for s in self.sent if s.copies > 1}
        out.update((key, len(items)) for key, items in self.early.items() if len(items) > 1)
        return out

    def received(self) -> int:
        """Deliveries so far, copies and unknown ones included."""
        return sum(s.copies for s in self.sent) + len(self.unmatched)

    def outstanding(self) -> int:
        """Injected SMS not delivered yet (the excused ones apart)."""
        return sum(1 for s in self.sent if s.delivered_at is None and not s.excused)

    def latencies_ms(self) -> list[float]:
        """From injection to first delivery, per delivered SMS, in injection order."""
        return [(s.delivered_at - s.t) * 1000 for s in self.sent if s.delivered_at is not None]

    # -- what the deliveries that match nothing are ----------------------------------------

    def mixed_reused(self, delivery: Delivery) -> Sent | None:
        """The reused-reference SMS whose parts ``delivery`` (a text nobody sent) mixes."""
        for sent in self.sent:
            if (
                "reused_ref" in sent.tags
                and sent.number == delivery.number
                and sent.sender == delivery.sender
                and delivery.text.startswith(_base(sent.text))
            ):
                return sent
        return None

    def misdelivered(self) -> dict[str, Any]:
        """Deliveries that match no SMS, by what differs from the SMS with the same (unique)
        text, with examples."""
        by_text = {s.text: s for s in self.sent}
        kinds: Counter[str] = Counter()
        examples: list[dict[str, Any]] = []
        for delivery, _ in self.unmatched:
            sent = by_text.get(delivery.text)
            if sent is None:
                sent = self.mixed_reused(delivery)
                kind = "text" if sent is None else "mixed_reused_ref"
            elif delivery.number != sent.number:
                kind = "number"
            else:
                kind = "sender"
            kinds[kind] += 1
            if len(examples) < MISDELIVERED_EXAMPLES:
                item: dict[str, Any] = {
                    "wrong": kind,
                    "delivered": {"t": delivery.t, "number": delivery.number},
                }
                item["delivered"].update(sender=delivery.sender, text=delivery.text)
                if sent is not None:
                    item["sent"] = {"t": sent.t, "port": sent.port, "number": sent.number}
                    item["sent"]["sender"] = sent.sender
                examples.append(item)
        return {"count": sum(kinds.values()), "by_what": dict(kinds), "examples": examples}
