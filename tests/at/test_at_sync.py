"""The sans-I/O sync state machine: markers, discarding late answers, floors and bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from muxd.at import AtParser, AtSync, Event, Hung, SendMarker, Synchronised, SyncState, Wait
from muxd.at.sync import MARKERS, RESYNC_ATTEMPTS, RESYNC_FLOOR, RESYNC_QUIET

PDU = "07919761989901F0040B919701119905F80000211062320232210AC8329BFD065DDF72363904"


def events(*lines: str) -> list[Event]:
    """What the parser yields for ``lines`` with no command in flight (during a resync)."""
    return AtParser().feed(b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))


def feed(sync: AtSync, lines: tuple[str, ...] | list[str], now: float) -> list[bool]:
    return [sync.feed(event, now) for event in events(*lines)]


def prove(sync: AtSync, now: float) -> float:
    """Answer the marker out and wait out the quiet period; the time it ends."""
    marker = sync.marker
    assert marker is not None
    prefix = dict(MARKERS)[marker]
    assert all(feed(sync, [f"{prefix}: 1", "OK"], now))
    assert sync.poll(now) == Wait(now + RESYNC_QUIET)
    return now + RESYNC_QUIET


def test_fresh_instance_proves_sync_with_the_first_marker() -> None:
    sync = AtSync()
    assert sync.poll(0.0) == SendMarker(MARKERS[0][0])
    done = prove(sync, 0.5)
    assert sync.poll(done) == Synchronised(0)
    assert sync.synchronised


def test_late_answer_before_the_marker_info_is_discarded() -> None:
    sync = AtSync(synchronised=True)
    sync.lost("AT+CMGR=1", 10.0)
    assert sync.epoch == 1
    assert sync.poll(10.0) == SendMarker("AT+CMEE?")
    # The late answer, a stray final, then the marker's echo: none of them completes it.
    consumed = feed(sync, ["+CMGR: 0,,38", PDU, "OK", "AT+CMEE?", "ERROR"], 10.1)
    assert all(consumed)
    assert sync.state is SyncState.MARKER
    assert sync.discarded == 4
    done = prove(sync, 10.2)
    assert sync.poll(done) == Synchronised(1)


def test_real_urcs_pass_through_a_resync() -> None:
    sync = AtSync()
    sync.poll(0.0)
    assert feed(sync, ['+CMTI: "SM",3', "+CMT: ,38", PDU, "RING"], 0.1) == [False] * 3
    assert feed(sync, ["OK"], 0.1) == [True]  # a final is never a URC


def test_the_timed_out_command_is_never_the_marker() -> None:
    sync = AtSync(synchronised=True)
    sync.lost("at+cmee?", 0.0)
    assert sync.poll(0.0) == SendMarker(MARKERS[1][0])


def test_an_answer_in_the_quiet_period_needs_another_marker_after_the_floor() -> None:
    sync = AtSync()
    assert sync.poll(0.0) == SendMarker(MARKERS[0][0])
    prove(sync, 0.05)
    assert feed(sync, ["OK"], 0.1) == [True]  # the same answer twice
    assert sync.state is SyncState.UNSYNCHRONISED
    assert sync.poll(0.1) == Wait(RESYNC_FLOOR)
    assert sync.poll(RESYNC_FLOOR) == SendMarker(MARKERS[1][0])


def test_unanswered_markers_end_in_hung() -> None:
    sync = AtSync(synchronised=True)
    sync.lost("AT+CSQ", 0.0)
    now = 0.0
    sent = []
    while True:
        step = sync.poll(now)
        if isinstance(step, Hung):
            break
        if isinstance(step, SendMarker):
            sent.append(step.command)
            continue
        assert isinstance(step, Wait)
        now = step.until
    assert len(sent) == RESYNC_ATTEMPTS
    assert len(set(sent)) == len(sent)
    assert sync.poll(now + 1000.0) == Hung(RESYNC_ATTEMPTS)
    sync.lost("AT+CSQ", now)
    assert sync.state is SyncState.HUNG


# Lines a late answer can consist of (never a marker's information line: a marker whose
# answer may still come is never used).
LATE_LINES = st.sampled_from(
    [
        "OK",
        "ERROR",
        "+CMS ERROR: 321",
        "+CME ERROR: 10",
        "+CMGR: 0,,38",
        PDU,
        "+CMGL: 1,0,,38",
        "867530021234567",
        "+CCID: 89701010000000000017",
        "+CPMS: 1,30,1,30,1,30",
        "AT+CMGR=1",
        '+CMTI: "SM",3',
        "+CREG: 1",
        "> ",
    ]
)


@settings(max_examples=300)
@given(late=st.lists(LATE_LINES, max_size=12), lost=st.sampled_from(["AT+CMGR=1", *dict(MARKERS)]))
def test_never_synchronised_before_the_marker_answers(late: list[str], lost: str) -> None:
    sync = AtSync(synchronised=True)
    sync.lost(lost, 0.0)
    step = sync.poll(0.0)
    assert isinstance(step, SendMarker)
    assert step.command != lost
    feed(sync, late, 0.1)
    assert sync.state is SyncState.MARKER
    done = prove(sync, 0.2)
    assert sync.poll(done) == Synchronised(1)


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("poll"), st.floats(0.0, 30.0)),
        st.tuples(st.just("feed"), LATE_LINES),
        st.tuples(st.just("answer"), st.just("")),
        st.tuples(st.just("lost"), st.sampled_from(["AT+CMGR=2", "AT+CMEE?", "AT+CSCS?"])),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(actions=ACTIONS)
def test_bounded_attempts_floors_and_monotonic_epoch(
    actions: list[tuple[str, str | float]],
) -> None:
    sync = AtSync()
    now = 0.0
    epoch = 0
    sends: list[float] = []  # times of markers since the last sync
    suspects: set[str] = set()
    for kind, arg in actions:
        if kind == "poll":
            assert isinstance(arg, float)
            now += arg
            step = sync.poll(now)
            if isinstance(step, SendMarker):
                assert step.command not in suspects
                if sends:
                    assert now >= sends[-1] + RESYNC_FLOOR  # the code's own arithmetic
                sends.append(now)
                assert len(sends) <= RESYNC_ATTEMPTS
            elif isinstance(step, Synchronised):
                sends.clear()
                suspects.clear()
            elif isinstance(step, Wait):
                assert step.until > now
        elif kind == "feed":
            assert isinstance(arg, str)
            feed(sync, [arg], now)
        elif kind == "answer" and sync.state is SyncState.MARKER:
            marker = sync.marker
            assert marker is not None
            feed(sync, [f"{dict(MARKERS)[marker]}: 0", "OK"], now)
        elif kind == "lost":
            assert isinstance(arg, str)
            if sync.state is not SyncState.HUNG:
                suspects.add(arg)
                if sync.marker is not None:
                    suspects.add(sync.marker)
            sync.lost(arg, now)
        assert sync.epoch >= epoch
        epoch = sync.epoch
    if sync.state is SyncState.HUNG:
        assert isinstance(sync.poll(now + 100.0), Hung)
