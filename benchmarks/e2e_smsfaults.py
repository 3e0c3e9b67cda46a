"""The simulator's SMS faults in the end-to-end benchmark: what each kind became.

The ledger (:class:`benchmarks.e2e_core.Ledger`) matches a delivery to an SMS by (number,
sender, text), so the rules of these faults hold without special cases:

* an SMS with a bad or absurd SMSC stamp (``bad_scts``, ``absurd_scts``) counts as
  delivered when its text, sender and number are right, whatever ``date`` it was given;
* two messages sharing a concatenation reference (``reused_ref``) each count as delivered
  only when their whole text arrives; parts of one joined to parts of the other arrive as
  a text nobody sent, counted corrupted, and :func:`mixed_reused` names them as such;
* a routed SMS (``routed``: given to the host as ``+CMT``, so never in the modem's memory)
  counts as injected like any other.

:func:`report` gives, per fault kind, injected / delivered / lost / corrupted / duplicated;
:func:`misdelivered` sorts the deliveries that match no SMS by what is wrong with them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks.e2e_core import Delivery, Ledger, Sent

__all__ = ["KINDS", "misdelivered", "mixed_reused", "report", "summary_line"]

KINDS = ("bad_scts", "absurd_scts", "reused_ref", "routed")
EXAMPLES = 20  # evidence items kept
_HALVES = (" (A)", " (B)")  # muxd_sim.modem_smsfaults.reused_ref_texts marks A and B so


def _base(text: str) -> str:
    for half in _HALVES:
        at = text.find(half)
        if at >= 0:
            return text[:at]
    return text


def mixed_reused(ledger: Ledger, delivery: Delivery) -> Sent | None:
    """The reused-reference SMS whose parts ``delivery`` (a text nobody sent) mixes, if any."""
    for sent in ledger.sent:
        if (
            "reused_ref" in sent.tags
            and sent.number == delivery.number
            and sent.sender == delivery.sender
            and delivery.text.startswith(_base(sent.text))
        ):
            return sent
    return None


def report(ledger: Ledger) -> dict[str, dict[str, int]]:
    """Per SMS fault kind: how its SMS fared (call ``ledger.pair_corrupted()`` first)."""
    out: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        chosen = [s for s in ledger.sent if kind in s.tags]
        delivered = [s for s in chosen if s.delivered_at is not None]
        out[kind] = {
            "injected": len(chosen),
            "delivered": len(delivered),
            "lost": sum(
                1 for s in chosen if s.delivered_at is None and not s.corrupted and not s.excused
            ),
            "corrupted": sum(1 for s in chosen if s.corrupted),
            "duplicated": sum(s.copies - 1 for s in delivered),
            "excused": sum(1 for s in chosen if s.delivered_at is None and s.excused),
        }
    out["reused_ref"]["mixed_deliveries"] = sum(
        1
        for delivery, _ in ledger.unmatched
        if (delivery.number, delivery.sender, delivery.text) not in ledger.by_key
        and mixed_reused(ledger, delivery) is not None
    )
    return out


def misdelivered(ledger: Ledger) -> dict[str, Any]:
    """Deliveries that match no SMS, by what differs from the SMS with the same (unique) text."""
    by_text = {s.text: s for s in ledger.sent}
    kinds: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    for delivery, _ in ledger.unmatched:
        sent = by_text.get(delivery.text)
        if sent is None:
            sent = mixed_reused(ledger, delivery)
            kind = "text" if sent is None else "mixed_reused_ref"
        elif delivery.number != sent.number:
            kind = "number"
        else:
            kind = "sender"
        kinds[kind] += 1
        if len(examples) < EXAMPLES:
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


def summary_line(kinds: dict[str, Any]) -> str:
    items = []
    for kind in KINDS:
        k = kinds[kind]
        if not k["injected"]:
            continue
        bad = [f"{k[what]} {what}" for what in ("lost", "corrupted", "duplicated") if k[what]]
        items.append(
            f"{kind} {k['delivered']}/{k['injected']}" + (f" ({', '.join(bad)})" if bad else "")
        )
    return "sms faults delivered: " + ("; ".join(items) if items else "none injected")
