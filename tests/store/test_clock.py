"""The date an SMS is reported with: its SMSC stamp only when plausible (a pure function)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxd.store.clock import (
    MAX_STAMP_AGE,
    MAX_STAMP_LEAD,
    StoreClock,
    plausible_stamp,
    sms_date,
)

UTC = datetime.UTC
READ = datetime.datetime(2026, 12, 4, 16, 0, 0, tzinfo=UTC)
READ_AT = READ.timestamp()


def zone(hours: int, minutes: int = 0) -> datetime.timezone:
    sign = -1 if hours < 0 else 1
    return datetime.timezone(datetime.timedelta(hours=hours, minutes=sign * minutes))


@pytest.mark.parametrize(
    ("stamp", "plausible"),
    [
        (READ - datetime.timedelta(seconds=4), True),  # the usual: stamped just before
        (READ.astimezone(zone(3)), True),  # Moscow time, same instant
        (READ.astimezone(zone(-12)), True),
        (READ.astimezone(zone(14)), True),
        (READ + datetime.timedelta(seconds=MAX_STAMP_LEAD), True),
        (READ + datetime.timedelta(seconds=MAX_STAMP_LEAD + 1), False),
        (READ - datetime.timedelta(seconds=MAX_STAMP_AGE), True),
        (READ - datetime.timedelta(seconds=MAX_STAMP_AGE + 1), False),
        (datetime.datetime(2099, 12, 4, 16, 0, tzinfo=UTC), False),  # year 99 read as 2099
        (datetime.datetime(2000, 1, 1, tzinfo=UTC), False),  # an SMSC clock reset
        (READ.astimezone(zone(-17, 30)), False),  # no place uses -17:30
        (READ.astimezone(zone(15)), False),
        (None, False),  # unknown (the octets were not a time)
    ],
)
def test_plausible_stamp(stamp: datetime.datetime | None, plausible: bool) -> None:
    assert plausible_stamp(stamp, READ_AT) is plausible
    want = (int(stamp.timestamp()), "stamp") if plausible and stamp else (int(READ_AT), "read")
    assert sms_date(stamp, READ_AT) == want


@given(
    st.datetimes(
        min_value=datetime.datetime(2000, 1, 1),
        max_value=datetime.datetime(2099, 12, 31),
        timezones=st.sampled_from([zone(q // 4, 15 * (q % 4)) for q in range(-79, 80)]),
    ),
    st.floats(min_value=946_684_800, max_value=4_102_444_800),
)
def test_the_date_sent_is_never_far_from_the_read(stamp: datetime.datetime, read: float) -> None:
    date, source = sms_date(stamp, read)
    assert source in ("stamp", "read")
    assert read - MAX_STAMP_AGE - 1 <= date <= read + MAX_STAMP_LEAD


def test_system_clock_defaults() -> None:
    clock = StoreClock()
    assert abs(clock.wall() - datetime.datetime.now(UTC).timestamp()) < 60
    assert clock.monotonic() <= clock.monotonic()
