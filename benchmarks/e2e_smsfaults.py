"""The simulator's SMS faults in the end-to-end benchmark: what each kind became.

The ledger (:class:`muxd_sim.ledger.Ledger`) matches a delivery to an SMS by (number,
sender, text), so the rules of these faults hold without special cases:

* an SMS with a bad or absurd SMSC stamp (``bad_scts``, ``absurd_scts``) counts as
  delivered when its text, sender and number are right, whatever ``date`` it was given;
* two messages sharing a concatenation reference (``reused_ref``) each count as delivered
  only when their whole text arrives; parts of one joined to parts of the other arrive as
  a text nobody sent, counted corrupted, and :meth:`~muxd_sim.ledger.Ledger.mixed_reused`
  names them as such;
* a routed SMS (``routed``: given to the host as ``+CMT``, so never in the modem's memory)
  counts as injected like any other.

:func:`report` gives, per fault kind, injected / delivered / lost / corrupted / duplicated;
:meth:`~muxd_sim.ledger.Ledger.misdelivered` sorts the deliveries that match no SMS by what
is wrong with them.
"""

from __future__ import annotations

from typing import Any

from muxd_sim.ledger import Ledger

__all__ = ["KINDS", "report", "summary_line"]

KINDS = ("bad_scts", "absurd_scts", "reused_ref", "routed")


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
        and ledger.mixed_reused(delivery) is not None
    )
    return out


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
