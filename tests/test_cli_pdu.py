"""``muxd pdu decode``: one compact JSON object per PDU, from arguments or stdin."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from muxd.cli import main

# Vectors of tests/pdu/pdu_vectors.py (kept local: tests/pdu is not importable from here).
V2 = "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442"
V3 = "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37"
V8 = "07912143658709F1040B918100551512F200F4111010214365000AE8329BFD4697D9EC37DE"
V10 = (
    "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E2321BF46E83EA7790"
    "F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C16031D96C064241E5656838AF03A9"
    "6230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB5C7683D27350984D4FABC9A0B33C4C4FCF5D20EBFB"
    "2D079DCB62793DBD06D9C36E50FB2D4E97D9A0B49B5E96BBCB"
)
V12 = (
    "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D44479741F0B09C3E07"
    "85E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10"
)
V13 = (
    "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60"
)
V14 = "07914356060013F1065A098136397339F7219011700463802190117004638030"
V23 = "0041010C910661345542F60008A0050003000301306F3044"
V24 = "0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421"
V37 = "040491361900005150713220052308C8303A8C0EA3C3"
BAD = "07912143658709F1040B918100551512F20000111010214365000BE8329BFD4697D9EC37"  # MALFORMED_15

DELIVER_KEYS = [
    "type", "smsc", "sender", "sender_type", "timestamp", "encoding", "text", "data", "concat",
    "pid", "dcs",
]  # fmt: skip
REPORT_KEYS = [
    "type", "smsc", "recipient", "recipient_type", "message_ref", "timestamp", "discharge",
    "status",
]  # fmt: skip
SUBMIT_KEYS = [
    "type", "smsc", "destination", "destination_type", "message_ref", "encoding", "text", "data",
    "concat", "dcs", "truncated",
]  # fmt: skip


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, list[str]]:
    if stdin is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.stdin", io.StringIO(stdin))
            rc = main(["pdu", "decode", *argv])
    else:
        rc = main(["pdu", "decode", *argv])
    out = capsys.readouterr().out
    assert out.endswith("\n") or out == ""
    return rc, out.splitlines()


def one(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    rc, lines = run(capsys, *argv)
    assert rc == 0
    assert len(lines) == 1
    obj: dict[str, Any] = json.loads(lines[0])
    return obj


def test_issue_example_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run(capsys, V3)
    assert rc == 0
    assert lines == [
        '{"type":"deliver","smsc":"+12345678901","sender":"+18005551212",'
        '"sender_type":"international","timestamp":"2011-01-01T12:34:56+00:00",'
        '"encoding":"gsm7","text":"hellohello","data":null,"concat":null,"pid":0,"dcs":0}'
    ]


def test_bare_tpdu_and_stripped_smsc_are_detected(capsys: pytest.CaptureFixture[str]) -> None:
    full = one(capsys, V3)
    bare = one(capsys, V3[16:])
    assert bare == {**full, "smsc": None}
    assert one(capsys, V3[16:], "--length", str(len(V3[16:]) // 2)) == bare
    assert one(capsys, V3, "--length", str(len(V3[16:]) // 2)) == full
    v37 = one(capsys, V37)
    assert (v37["smsc"], v37["sender"], v37["text"]) == (None, "+6391", "Hahahaha")
    assert v37["timestamp"] == "2015-05-17T23:02:50+08:00"


def test_alphanumeric_ucs2(capsys: pytest.CaptureFixture[str]) -> None:
    obj = one(capsys, V2)
    assert list(obj) == DELIVER_KEYS
    assert obj["sender"] == "InternetSMS"
    assert obj["sender_type"] == "alphanumeric"
    assert obj["timestamp"] == "2011-03-29T19:20:04+04:00"
    assert (obj["encoding"], obj["text"], obj["data"], obj["dcs"]) == ("ucs2", "тест", None, 8)


def test_eight_bit_data_is_hex(capsys: pytest.CaptureFixture[str]) -> None:
    obj = one(capsys, V8)
    assert obj["encoding"] == "8bit"
    assert obj["text"] is None
    assert obj["data"] == "E8329BFD4697D9EC37DE"
    assert obj["dcs"] == 0xF4


def test_concat_8_and_16_bit(capsys: pytest.CaptureFixture[str]) -> None:
    obj = one(capsys, V12)
    assert obj["concat"] == {"ref": 0x4C, "total": 2, "seq": 2, "ref_bits": 8}
    assert list(obj["concat"]) == ["ref", "total", "seq", "ref_bits"]
    assert obj["text"] == "that the parts are related to one another. "
    obj = one(capsys, V10)
    assert obj["concat"] == {"ref": 0x10, "total": 2, "seq": 1, "ref_bits": 16}
    assert (obj["sender"], obj["sender_type"], obj["pid"]) == ("1002", "unknown", 0x39)


def test_status_report(capsys: pytest.CaptureFixture[str]) -> None:
    obj = one(capsys, V14)
    assert list(obj) == REPORT_KEYS
    assert obj == {
        "type": "status-report",
        "smsc": "+34656000311",
        "recipient": "639337937",
        "recipient_type": "unknown",
        "message_ref": 0x5A,
        "timestamp": "2012-09-11T07:40:36+02:00",
        "discharge": "2012-09-11T07:40:36+02:00",
        "status": 0x30,
    }


def test_submit(capsys: pytest.CaptureFixture[str]) -> None:
    obj = one(capsys, V13)
    assert list(obj) == SUBMIT_KEYS
    assert obj["type"] == "submit"
    assert obj["destination"] == "639337937"
    assert obj["text"] == "你好你好你好你好你好你好你好你好你"
    assert obj["truncated"] is False
    obj = one(capsys, V24)
    assert (obj["destination_type"], obj["text"], obj["data"]) == (
        "international",
        None,
        b"Hello world!".hex().upper(),
    )
    obj = one(capsys, V23)
    assert obj["truncated"] is True
    assert obj["concat"] == {"ref": 0, "total": 3, "seq": 1, "ref_bits": 8}


@pytest.mark.parametrize(
    ("toa", "kind"),
    [
        ("81", "unknown"),
        ("91", "international"),
        ("A1", "national"),
        ("B1", "network-specific"),
        ("C1", "subscriber"),
        ("D0", "alphanumeric"),
        ("E1", "abbreviated"),
        ("F1", "reserved"),
    ],
)
def test_sender_type_is_the_ton(capsys: pytest.CaptureFixture[str], toa: str, kind: str) -> None:
    pdu = V3[:20] + toa + V3[22:]
    assert pdu != V3 or toa == "91"
    assert one(capsys, pdu)["sender_type"] == kind


def test_undecodable_line_prints_error_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run(capsys, V3, BAD, "zz", V14)
    assert rc == 1
    assert len(lines) == 4
    objs = [json.loads(line) for line in lines]
    assert objs[0]["text"] == "hellohello"
    assert objs[1] == {"error": "UDL 11 septets needs 10 octets, 9 present (octet 27)"}
    assert list(objs[2]) == ["error"]
    assert "not hex" in objs[2]["error"]
    assert objs[3]["type"] == "status-report"


def test_stdin_one_pdu_per_line_blank_lines_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run(capsys, stdin=f"{V3}\n\n   \n  {V2.lower()}  \r\n{V37}")
    assert rc == 0
    assert [json.loads(line)["text"] for line in lines] == ["hellohello", "тест", "Hahahaha"]


def test_stdin_with_a_bad_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run(capsys, stdin=f"{V3}\nnot a pdu\n{V12}\n")
    assert rc == 1
    assert [sorted(json.loads(line))[0] for line in lines] == ["concat", "error", "concat"]


def test_stdin_length_applies_to_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    n = len(V3[16:]) // 2
    rc, lines = run(capsys, "--length", str(n), stdin=f"{V3}\n{V3[16:]}\n")
    assert rc == 0
    a, b = (json.loads(line) for line in lines)
    assert a == {**b, "smsc": "+12345678901"}


def test_empty_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, stdin="") == (0, [])
    assert run(capsys, stdin="\n\n") == (0, [])


def test_output_is_compact_utf8(capsys: pytest.CaptureFixture[str]) -> None:
    _, lines = run(capsys, V2)
    assert " " not in lines[0].replace("+04:00", "")
    assert "тест" in lines[0]


def test_bad_time_stamp_still_decodes_with_its_octets(capsys: pytest.CaptureFixture[str]) -> None:
    month_13 = V3.replace("11101021436500", "11310021436500")
    obj = one(capsys, month_13)
    assert obj["text"] == "hellohello"
    assert obj["timestamp"] is None
    assert obj["timestamp_raw"] == "11310021436500"
