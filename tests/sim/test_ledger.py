"""The ground-truth ledger: injected SMS against deliveries, exact and paired."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxd_sim.ledger import Delivery, Ledger, percentile, sms_fault_tags
from muxd_sim.modem_smsfaults import BAD_SCTS

A = ("+79000000001", "Bank", "code 1")
B = ("+79000000001", "Bank", "code 2")
C = ("+79000000002", "Shop", "code 3")


def ledger_of(*keys: tuple[str, str, str], t: float = 10.0) -> Ledger:
    ledger = Ledger()
    for key in keys:
        ledger.add(*key, t=t)
    return ledger


def arrive(ledger: Ledger, key: tuple[str, str, str], t: float = 10.5, step: int = 0) -> None:
    ledger.add_delivery(Delivery(t, *key), step)


def test_each_delivered_once_is_neither_lost_nor_duplicated() -> None:
    ledger = ledger_of(A, B)
    arrive(ledger, A, 10.25)
    assert ledger.outstanding() == 1
    arrive(ledger, B, 10.5)
    assert (ledger.lost(), ledger.unknown(), ledger.duplicates()) == ([], [], {})
    assert ledger.delivered == ledger.received() == 2
    assert ledger.latencies_ms() == [250.0, 500.0]


def test_lost_duplicated_and_unknown_by_exact_key() -> None:
    ledger = ledger_of(A, B, C)
    arrive(ledger, A)
    arrive(ledger, A)
    arrive(ledger, A)
    garbled = (B[0], B[1], "code ?")
    arrive(ledger, garbled)
    arrive(ledger, garbled)
    assert ledger.lost() == [B, C]
    assert ledger.unknown() == [garbled]
    assert ledger.duplicates() == {A: 3, garbled: 2}
    assert ledger.received() == 5
    assert ledger.delivered == 1
    assert ledger.duplicated == 2


def test_a_delivery_read_before_its_ground_truth_waits_for_it() -> None:
    ledger = Ledger()
    arrive(ledger, A, 11.0)
    assert ledger.unknown() == [A]
    ledger.add(*A, t=10.0)
    assert ledger.unknown() == []
    assert ledger.latencies_ms() == [1000.0]


def test_the_ground_truth_never_repeats_an_sms() -> None:
    ledger = ledger_of(A)
    with pytest.raises(RuntimeError, match="repeats"):
        ledger.add(*A)


def test_excused_sms_are_not_lost_and_are_counted_apart() -> None:
    ledger = Ledger()
    ledger.add_sent({"t": 1.0, "number": A[0], "sender": A[1], "text": A[2], "id": "s1"}, 1)
    ledger.add_sent({"t": 1.0, "number": B[0], "sender": B[1], "text": B[2], "stored": False}, 1)
    ledger.add_sent({"event": "discarded", "id": "s1", "reason": "sim-swap"}, 1)
    assert ledger.lost() == []
    assert ledger.outstanding() == 0
    assert ledger.expected(1) == 0
    ledger.pair_corrupted()
    assert ledger.stats(1).excused == {"sim-swap": 1, "refused": 1}
    arrive(ledger, A, 2.0, step=1)  # read before the swap after all: delivered
    assert ledger.expected(1) == 1
    assert ledger.stats(1).delivered == 1


def test_paired_a_garbled_delivery_makes_its_sms_corrupted_not_lost() -> None:
    ledger = ledger_of(A, C)
    arrive(ledger, (A[0], A[1], "code !"), step=0)  # same number and sender
    arrive(ledger, ("+79999999999", "X", "nobody's"), step=0)  # pairs with nothing
    ledger.pair_corrupted()
    stats = ledger.stats()
    assert (stats.injected, stats.delivered, stats.lost, stats.corrupted) == (2, 0, 1, 2)
    assert [s.corrupted for s in ledger.sent] == [True, False]


def test_misdelivered_says_what_differs() -> None:
    ledger = ledger_of(A, B, C)
    arrive(ledger, ("+79000000009", A[1], A[2]))  # A's text under another number
    arrive(ledger, (B[0], "Other", B[2]))  # B's text from another sender
    arrive(ledger, (C[0], C[1], "never sent"))
    mis = ledger.misdelivered()
    assert mis["count"] == 3
    assert mis["by_what"] == {"number": 1, "sender": 1, "text": 1}
    assert mis["examples"][0]["sent"]["number"] == A[0]


def test_a_mix_of_two_reused_reference_messages_is_named() -> None:
    ledger = Ledger()
    first = ledger.add(A[0], "Bank", "Your code is 1 (A) tail", tags=("reused_ref",))
    ledger.add(A[0], "Bank", "Your code is 1 (B) other", tags=("reused_ref",))
    mixed = Delivery(1.0, A[0], "Bank", "Your code is 1 (A) other")
    ledger.add_delivery(mixed)
    assert ledger.mixed_reused(mixed) is first
    assert ledger.misdelivered()["by_what"] == {"mixed_reused_ref": 1}


def test_fault_tags_and_percentile() -> None:
    record = {"scts_fault": next(iter(BAD_SCTS)), "reused_ref": 7, "routed": True}
    assert sms_fault_tags(record) == ("bad_scts", "reused_ref", "routed")
    assert sms_fault_tags({"scts_fault": "99121212000000"}) == ("absurd_scts",)
    assert percentile([], 99) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


keys = st.tuples(st.sampled_from(["+7900", "+7901"]), st.sampled_from(["Bank", "Shop"]),
                 st.text(alphabet="abc", max_size=3))  # fmt: skip


@given(
    sent=st.lists(keys, unique=True, max_size=12),
    arrived=st.lists(keys, max_size=20),
    truth_first=st.booleans(),
)
def test_every_sms_and_every_delivery_is_accounted_for(
    sent: list[tuple[str, str, str]], arrived: list[tuple[str, str, str]], truth_first: bool
) -> None:
    """Whatever arrives, in whichever order relative to the ground truth: each injected SMS is
    delivered or lost, each delivery is a first copy, a duplicate or unknown."""
    ledger = Ledger()
    if not truth_first:
        for key in arrived:
            arrive(ledger, key)
    for key in sent:
        ledger.add(*key)
    if truth_first:
        for key in arrived:
            arrive(ledger, key)
    lost = ledger.lost()
    assert ledger.delivered + len(lost) == len(sent)
    assert set(lost) == set(sent) - set(arrived)
    assert set(ledger.unknown()) == set(arrived) - set(sent)
    assert ledger.received() == len(arrived)
    assert ledger.duplicates() == {
        k: arrived.count(k) for k in set(arrived) if arrived.count(k) > 1
    }
    ledger.pair_corrupted()
    stats = ledger.stats()
    assert stats.delivered + stats.lost + sum(s.corrupted for s in ledger.sent) == len(sent)
