"""Feed AT transcripts three ways: whole, one byte at a time, and with noise between lines."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterable, Sequence

from muxd.at import AtParser, Event, Garbage
from muxd.at.buffer import JUNK

#: As the command of a step: call ``command_done()`` before feeding the step's bytes.
DONE = "<done>"

# (command to announce before the bytes, or None / DONE; bytes the modem sends; events)
Step = tuple[str | None, bytes, Sequence[Event]]

_AFTER_TERMINATOR = re.compile(rb"[\r\n]+")


def _apply(parser: AtParser, command: str | None) -> None:
    if command == DONE:
        parser.command_done()
    elif command is not None:
        parser.command_sent(command)


def run(
    steps: Iterable[Step], chunks_of: Callable[[bytes], list[bytes]], *, max_line: int = 1024
) -> list[list[Event]]:
    """Events per step, feeding each step's bytes as ``chunks_of(data)`` yields them."""
    parser = AtParser(max_line=max_line)
    result: list[list[Event]] = []
    for command, data, _expected in steps:
        _apply(parser, command)
        events: list[Event] = []
        chunks = chunks_of(data) or [b""]
        for chunk in chunks:
            events.extend(parser.feed(chunk))
            assert parser.buffered <= max_line
        result.append(events)
    return result


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def without_garbage(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, Garbage)]


def garbage_bytes(events: Iterable[Event]) -> dict[str, bytes]:
    """Garbage data concatenated per reason: independent of how the bytes were chunked."""
    out: dict[str, bytes] = {}
    for e in events:
        if isinstance(e, Garbage):
            out[e.reason] = out.get(e.reason, b"") + e.data
    return out


def add_noise(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    """Insert junk (NUL, 0xFF, other control bytes) and blank lines after line terminators.

    Returns the noisy bytes and the number of junk bytes inserted.
    """
    out = bytearray()
    inserted = 0
    pos = 0
    for match in _AFTER_TERMINATOR.finditer(data):
        out += data[pos : match.end()]
        pos = match.end()
        if pos == len(data):
            break
        junk = bytes(rng.choice(JUNK) for _ in range(rng.randint(0, 4)))
        inserted += len(junk)
        out += junk
        if rng.random() < 0.3:
            out += rng.choice([b"\r\n", b"\r", b"\n", b"\r\n\r\n"])
    out += data[pos:]
    return bytes(out), inserted


def check_three_ways(steps: Sequence[Step], *, max_line: int = 1024, seed: int = 0) -> None:
    """Assert the expected events whole, byte by byte, and with noise in random chunks."""
    expected = [list(step[2]) for step in steps]

    got = run(steps, whole, max_line=max_line)
    assert got == expected, "whole"

    got = run(steps, bytewise, max_line=max_line)
    for i, (events, want) in enumerate(zip(got, expected, strict=True)):
        assert without_garbage(events) == without_garbage(want), f"bytewise, step {i}"
        assert garbage_bytes(events) == garbage_bytes(want), f"bytewise garbage, step {i}"

    rng = random.Random(seed)
    for _round in range(5):
        noisy: list[Step] = []
        inserted = 0
        for command, clean_data, step_events in steps:
            noisy_data, count = add_noise(clean_data, rng)
            inserted += count
            noisy.append((command, noisy_data, step_events))

        def cuts(data: bytes) -> list[bytes]:
            return split_at(data, [rng.randrange(len(data) + 1) for _ in range(4)])

        got = run(noisy, cuts, max_line=max_line)
        for i, (events, want) in enumerate(zip(got, expected, strict=True)):
            assert without_garbage(events) == without_garbage(want), f"noisy, step {i}"
        if not any(isinstance(e, Garbage) for step in expected for e in step):
            junk = sum(len(garbage_bytes(events).get("control bytes", b"")) for events in got)
            assert junk == inserted, "every inserted junk byte is reported as Garbage"
