"""Hypothesis: feed() never raises, stays bounded, and does not care how bytes are chunked."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from muxd.at import AtParser, Echo, Event, Final, Garbage, Info, Prompt, Urc

from .harness import DONE, Step, garbage_bytes, run, split_at, whole, without_garbage
from .test_at_scenarios import SCENARIOS

EVENT_TYPES = (Echo, Info, Final, Urc, Prompt, Garbage)

COMMANDS = ["AT", "AT+CMGR=3", "AT+CMGL=4", "AT+CMGS=24", "AT+CSQ", "AT+CREG?", "AT+CUSD=1"]

# Fragments that exercise every branch: terminators, finals, URCs, two-line headers, hex,
# prompts, junk bytes, UTF-8 and broken UTF-8.
TOKENS = [
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b">",
    b"> ",
    b"OK",
    b"ERROR",
    b"+CME ERROR: 10",
    b"+CMS ERROR: x",
    b"NO CARRIER",
    b"AT",
    b"AT+CMGR=3",
    b"AT+CSQ",
    b"+CMGR: 0,,24",
    b"+CMGR: 0,,0",
    b"+CMGL: 1,0,,24",
    b"+CMT: ,24",
    b"+CDS: 25",
    b'+CMTI: "SM",3',
    b"+CSQ: 12,99",
    b"+CREG: 1",
    b"+CUSD: 0",
    b"^RSSI:14",
    b"RING",
    b"SMS Ready",
    b"0791ABCDEF",
    b"abc",
    b":",
    b",",
    b'"',
    b"\x00",
    b"\xff",
    b"\x1a",
    b"\x1b",
    b"\t",
    b"\x7f",
    "Мегафон".encode(),
    b"\xc3",
    b"\xc2\xa0",  # NO-BREAK SPACE: str.strip() would eat it, bytes.strip() does not
    b"\xe2\x82",
]

ops = st.one_of(st.none(), st.just(DONE), st.sampled_from(COMMANDS), st.text(max_size=12))
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)


def _check_events(events: list[Event]) -> None:
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, EVENT_TYPES)
        if isinstance(event, Garbage):
            assert event.data or event.reason == "incomplete response"


@settings(max_examples=300)
@given(
    max_line=st.integers(1, 80),
    segments=st.lists(st.tuples(ops, st.one_of(st.binary(max_size=100), token_soup))),
)
def test_arbitrary_bytes_never_raise_and_stay_bounded(
    max_line: int, segments: list[tuple[str | None, bytes]]
) -> None:
    parser = AtParser(max_line=max_line)
    for command, data in segments:
        if command == DONE:
            parser.command_done()
        elif command is not None:
            parser.command_sent(command)
        _check_events(parser.feed(data))
        assert 0 <= parser.buffered <= max_line


@settings(max_examples=300)
@given(data=st.binary(max_size=2000), cut=st.lists(st.integers(0, 2000), max_size=30))
def test_arbitrary_bytes_with_a_command_in_flight(data: bytes, cut: list[int]) -> None:
    parser = AtParser(max_line=64)
    parser.command_sent("AT+CMGL=4")
    for chunk in split_at(data, cut):
        _check_events(parser.feed(chunk))
        assert parser.buffered <= 64


@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_scenarios_are_chunking_invariant(name: str, data: st.DataObject) -> None:
    steps = SCENARIOS[name]
    max_line = 64 if name == "line too long" else 1024
    cuts = data.draw(st.lists(st.lists(st.integers(0, 400), max_size=8), min_size=len(steps)))

    per_step = iter(cuts)

    def chunks(payload: bytes) -> list[bytes]:
        return split_at(payload, next(per_step))

    got = run(steps, chunks, max_line=max_line)
    for events, (_command, _data, want) in zip(got, steps, strict=True):
        assert without_garbage(events) == without_garbage(want)
        assert garbage_bytes(events) == garbage_bytes(want)


@settings(max_examples=300)
@given(
    segments=st.lists(st.tuples(ops, token_soup), max_size=6),
    data=st.data(),
)
def test_token_soup_is_chunking_invariant(
    segments: list[tuple[str | None, bytes]], data: st.DataObject
) -> None:
    # Lines stay below max_line here: where an overlong line is cut off depends on the chunks.
    steps: list[Step] = [(command, payload, []) for command, payload in segments]
    reference = run(steps, whole, max_line=4096)
    cuts = [data.draw(st.lists(st.integers(0, len(p)), max_size=10)) for _, p in segments]
    per_step = iter(cuts)

    def chunks(payload: bytes) -> list[bytes]:
        return split_at(payload, next(per_step))

    got = run(steps, chunks, max_line=4096)
    for events, want in zip(got, reference, strict=True):
        assert without_garbage(events) == without_garbage(want)
        assert garbage_bytes(events).get("control bytes") == garbage_bytes(want).get(
            "control bytes"
        )
