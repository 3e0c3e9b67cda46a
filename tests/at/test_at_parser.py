"""AtParser API details that the transcript scenarios do not pin down."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from muxd.at import AtParser, Echo, Event, Final, Garbage, Info, Prompt, Urc
from muxd.at.buffer import LineBuffer

OK = Final("OK", None, "OK")


def test_final_ok_property() -> None:
    assert OK.ok
    assert not Final("ERROR", None, "ERROR").ok
    assert not Final("CME", 10, "+CME ERROR: 10").ok


def test_events_are_frozen_and_hashable() -> None:
    info = Info("+CSQ: 1,2")
    with pytest.raises(AttributeError):
        info.line = "x"  # type: ignore[misc]
    assert {info, Info("+CSQ: 1,2")} == {info}
    assert Info("x") == Info("x", None)
    assert Prompt() == Prompt()


def test_events_encode_with_msgspec() -> None:
    events = [Urc("+CMT", ",24", "00AB", "+CMT: ,24"), Garbage(b"\x00", "control bytes")]
    assert msgspec.json.decode(msgspec.json.encode(events), type=list[Event]) == events


def test_feed_empty_and_buffered() -> None:
    parser = AtParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"+CSQ: 1") == []
    assert parser.buffered == len(b"+CSQ: 1")
    assert parser.feed(b"0,99\r\n") == [Urc("+CSQ", "10,99", None, "+CSQ: 10,99")]
    assert parser.buffered == 0


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line"):
        AtParser(max_line=0)


def test_final_ends_the_command() -> None:
    parser = AtParser()
    parser.command_sent("AT+CSQ")
    assert parser.command == "AT+CSQ"
    assert parser.feed(b"\r\n+CSQ: 1,99\r\nOK\r\n+CSQ: 2,99\r\nOK\r\n") == [
        Info("+CSQ: 1,99"),
        OK,
        Urc("+CSQ", "2,99", None, "+CSQ: 2,99"),
        Urc("OK", "", None, "OK"),
    ]
    assert parser.command is None


def test_echo_must_match_the_whole_command() -> None:
    parser = AtParser()
    parser.command_sent("AT+CMGR=3")
    assert parser.feed(b"AT+CMGR=3\rAT+CMGR=33\r") == [Echo("AT+CMGR=3"), Info("AT+CMGR=33")]


def test_final_forms() -> None:
    cases = {
        b"+CME ERROR:10": Final("CME", 10, "+CME ERROR:10"),
        b"+CMS ERROR: 500 ": Final("CMS", 500, "+CMS ERROR: 500"),
        b"+CME ERROR": Final("CME", None, "+CME ERROR"),
        b"NO DIALTONE": Final("NO DIALTONE", None, "NO DIALTONE"),
        b"NO ANSWER": Final("NO ANSWER", None, "NO ANSWER"),
        b"COMMAND NOT SUPPORTED": Final("NOT SUPPORTED", None, "COMMAND NOT SUPPORTED"),
        b"+CME ERRORS": Info("+CME ERRORS"),
        b"OKAY": Info("OKAY"),
    }
    for line, want in cases.items():
        parser = AtParser()
        parser.command_sent("AT+X")
        assert parser.feed(line + b"\r\n") == [want], line


def test_prompt_after_junk_and_only_with_command() -> None:
    parser = AtParser()
    assert parser.feed(b"> ") == []
    assert parser.buffered == 2
    parser.command_done()
    parser.command_sent("AT+CMGS=10")
    assert parser.feed(b"") == [Prompt()]
    assert parser.buffered == 0
    parser.command_sent("AT+CMGS=10")
    assert parser.feed(b"\x00\xff > ") == [Garbage(b"\x00\xff", "control bytes"), Prompt()]
    # The same bytes split differently: one prompt, the stray blank is dropped with the line.
    parser.command_sent("AT+CMGS=10")
    assert parser.feed(b">") == [Prompt()]
    assert parser.feed(b" ") == []
    assert parser.feed(b"\r\nOK\r\n") == [OK]


def test_prompts_buffered_before_the_command() -> None:
    parser = AtParser()
    assert parser.feed(b">>") == []
    parser.command_sent("AT+CMGS=10")
    assert parser.feed(b" ") == [Prompt(), Prompt()]


def test_prompt_then_unicode_blank_is_chunking_invariant() -> None:
    data = ">\u00a0x\r\n".encode()
    whole = AtParser()
    whole.command_sent("AT+CMGS=10")
    split = AtParser()
    split.command_sent("AT+CMGS=10")
    assert whole.feed(data) == split.feed(data[:1]) + split.feed(data[1:])


def test_prompt_line_with_echoed_pdu() -> None:
    parser = AtParser()
    parser.command_sent("AT+CMGS=10")
    assert parser.feed(b"> 0011AB\x1a\r\n+CMGS: 7\r\n") == [
        Prompt(),
        Info("0011AB\x1a"),
        Info("+CMGS: 7"),
    ]


def test_many_prompt_characters_do_not_recurse() -> None:
    parser = AtParser(max_line=100_000)
    parser.command_sent("AT+CMGS=10")
    events = parser.feed(b">" * 50_000 + b"\r\n")
    assert events == [Prompt()] * 50_000


def test_command_sent_abandons_a_waiting_header() -> None:
    parser = AtParser()
    parser.command_sent("AT+CMGR=1")
    assert parser.feed(b"+CMGR: 0,,24\r\n") == []
    parser.command_sent("AT+CMGR=2")
    assert parser.feed(b"+CMGR: 0,,0\r\nOK\r\n") == [
        Garbage(b"+CMGR: 0,,24", "incomplete response"),
        Info("+CMGR: 0,,0"),
        OK,
    ]


def test_urc_header_survives_command_done() -> None:
    parser = AtParser()
    assert parser.feed(b"+CMT: ,3\r\n") == []
    parser.command_done()
    assert parser.feed(b"0011AA\r\n") == [Urc("+CMT", ",3", "0011AA", "+CMT: ,3")]


def test_two_headers_in_a_row() -> None:
    parser = AtParser()
    parser.command_sent("AT+CMGL=4")
    assert parser.feed(b"+CMGL: 1,0,,3\r\n+CMGL: 2,0,,3\r\nABCDEF\r\nOK\r\n") == [
        Info("+CMGL: 1,0,,3"),
        Info("+CMGL: 2,0,,3", "ABCDEF"),
        OK,
    ]


def test_sms_urcs_are_never_info() -> None:
    parser = AtParser()
    parser.command_sent("AT+CMTI")  # nonsense, but must not swallow a real +CMTI
    assert parser.feed(b'+CMTI: "SM",1\r\nOK\r\n') == [
        Urc("+CMTI", '"SM",1', None, '+CMTI: "SM",1'),
        OK,
    ]


def test_overlong_line_resyncs_at_next_terminator() -> None:
    parser = AtParser(max_line=8)
    parser.command_sent("AT")
    assert parser.feed(b"123456789") == [Garbage(b"123456789", "line too long")]
    assert parser.buffered == 0
    assert parser.feed(b"abc") == [Garbage(b"abc", "line too long")]
    assert parser.feed(b"") == []
    assert parser.feed(b"d\rOK\r") == [Garbage(b"d", "line too long"), OK]
    assert parser.buffered == 0


def test_bytewise_feeding_does_not_rescan(monkeypatch: pytest.MonkeyPatch) -> None:
    # O(n) for 1-byte feeds: a byte that ends no line is appended in O(1); only a terminator
    # (or an overflow) makes LineBuffer.push look at the buffered line, once.
    pushed: list[int] = []
    push = LineBuffer.push

    def counting_push(self: LineBuffer, data: bytes) -> list[bytes | bytearray | Garbage]:
        pushed.append(len(self) + len(data))
        return push(self, data)

    monkeypatch.setattr(LineBuffer, "push", counting_push)
    parser = AtParser(max_line=20_000)
    parser.command_sent("AT+CMGL=4")
    for byte in b"A" * 10_000:
        assert parser.feed(bytes([byte])) == []
    assert pushed == []
    assert parser.feed(b"\r") == [Info("A" * 10_000)]
    assert pushed == [10_001]


def test_import_does_not_pull_asyncio() -> None:
    code = (
        "import sys, muxd.at, muxd.at.parser, muxd.at.commands\n"
        "bad = {'asyncio', 'serial', 'logging'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
