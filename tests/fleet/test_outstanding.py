"""What a closed session may still receive is handed to the next session on the same port
(its sync markers avoid those commands), for as long as a late answer can come."""

from __future__ import annotations

import time

import pytest

from muxd.fleet import LATE_ANSWERS_FOR, Fleet
from muxd.ports import PartRead, PartStored


async def _never(_part: PartRead, /) -> PartStored:
    raise AssertionError("nothing is read in these tests")


def _fleet() -> Fleet:
    return Fleet(["/dev/x"], baudrate=115200, sink=_never, numbers={}, sweep_interval=60.0,
                 rescan_interval=60.0)  # fmt: skip


def test_a_reopened_port_inherits_what_may_still_be_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    fleet = _fleet()
    hung = frozenset({"AT+CGSN", "AT+CMEE?", "AT+CSCS?", "AT+CMGF?"})
    fleet._remember_outstanding("/dev/x", hung, frozenset())
    now[0] += 1.0
    assert fleet._inherited("/dev/x") == hung
    # The next session had no marker left and sent nothing: the record ages from the first.
    fleet._remember_outstanding("/dev/x", hung, hung)
    now[0] += LATE_ANSWERS_FOR
    assert fleet._inherited("/dev/x") == frozenset()
    # A session that proved sync leaves nothing behind.
    fleet._remember_outstanding("/dev/x", hung, frozenset())
    fleet._remember_outstanding("/dev/x", frozenset(), hung)
    assert fleet._inherited("/dev/x") == frozenset()
