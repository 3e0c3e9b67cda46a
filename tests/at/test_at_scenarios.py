"""Transcript scenarios, each checked whole, byte by byte and with noise (see harness.py)."""

from __future__ import annotations

import pytest

from muxd.at import Echo, Final, Garbage, Info, Prompt, Urc

from .harness import DONE, Step, check_three_ways

OK = Final("OK", None, "OK")
ERROR = Final("ERROR", None, "ERROR")

# Real SMS-DELIVER PDUs with SMSC prefix (ModemManager test-sms-part-3gpp.c, also
# in tests/pdu/pdu_vectors.py): "hellohello" and a full 160-septet message.
PDU_HELLO = "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37"
PDU_TEST = "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442"
PDU_160 = (
    "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2EB359A0"
    "3FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD5E0ED741ED371D44"
    "2E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E064D8D52D0BC2E07DDEF"
    "77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966"
)
PDU_REPORT = "07914356060013F1065A098136397339F7219011700463802190117004638030"


def urc(line: str, pdu: str | None = None) -> Urc:
    name, sep, args = line.partition(":")
    if not sep:
        return Urc(line, "", pdu, line)
    return Urc(name, args.strip(), pdu, line)


SCENARIOS: dict[str, list[Step]] = {
    "echo on": [
        ("AT", b"AT\r\r\nOK\r\n", [Echo("AT"), OK]),
        ("ATE0", b"ATE0\r\r\nOK\r\n", [Echo("ATE0"), OK]),
    ],
    "echo off": [
        ("AT+CMEE=1", b"\r\nOK\r\n", [OK]),
        ("AT+CMGF=0", b"\r\nOK\r\n", [OK]),
    ],
    "echo with bare CR, lower case": [
        ("at+csq", b"at+csq\r+CSQ: 17,99\r\rOK\r", [Echo("at+csq"), Info("+CSQ: 17,99"), OK]),
    ],
    "mixed line ends and Huawei blank lines": [
        ("AT+CSQ", b"\n\r\n+CSQ: 9,99\n\r\n\r\n\r\nOK\n\r", [Info("+CSQ: 9,99"), OK]),
        ("AT", b"\r\n\r\nOK\r\n\r\n", [OK]),
    ],
    "error finals": [
        ("AT+FOO", b"AT+FOO\r\r\nERROR\r\n", [Echo("AT+FOO"), ERROR]),
        ("AT+CPIN?", b"\r\n+CME ERROR: 10\r\n", [Final("CME", 10, "+CME ERROR: 10")]),
        ("AT+CMGR=1", b"\r\n+CMS ERROR: 321\r\n", [Final("CMS", 321, "+CMS ERROR: 321")]),
        (
            "AT+CPIN?",
            b"\r\n+CME ERROR: SIM not inserted\r\n",
            [Final("CME", None, "+CME ERROR: SIM not inserted")],
        ),
        (
            "AT^CURC=0",
            b"\r\nCOMMAND NOT SUPPORT\r\n",
            [Final("NOT SUPPORTED", None, "COMMAND NOT SUPPORT")],
        ),
        (
            "AT+CNMI=2,1,0,2,0",
            b"\r\nTOO MANY PARAMETERS\r\n",
            [Final("NOT SUPPORTED", None, "TOO MANY PARAMETERS")],
        ),
        ("ATD123;", b"\r\nBUSY\r\n", [Final("BUSY", None, "BUSY")]),
        ("ATD123;", b"\r\nNO CARRIER\r\n", [Final("NO CARRIER", None, "NO CARRIER")]),
    ],
    "bare answers: IMEI, ICCID, own number": [
        (
            "AT+CGSN",
            b"AT+CGSN\r\r\n867530021234567\r\n\r\nOK\r\n",
            [Echo("AT+CGSN"), Info("867530021234567"), OK],
        ),
        ("AT+CCID", b"\r\n89701012345678901234\r\n\r\nOK\r\n", [Info("89701012345678901234"), OK]),
        (
            "AT+CCID",
            b"\r\n+CCID: 89701012345678901234\r\n\r\nOK\r\n",
            [
                Info("+CCID: 89701012345678901234"),
                OK,
            ],
        ),
        (
            "AT+CCID",
            b"\r\n+ICCID: 89701012345678901234\r\nOK\r\n",
            [
                Info("+ICCID: 89701012345678901234"),
                OK,
            ],
        ),
        (
            "AT^ICCID?",
            b"\r\n^ICCID: 98101032547698103254\r\n\r\nOK\r\n",
            [
                Info("^ICCID: 98101032547698103254"),
                OK,
            ],
        ),
        (
            "AT+CNUM",
            b'\r\n+CNUM: "","+79161234567",145\r\n\r\nOK\r\n',
            [
                Info('+CNUM: "","+79161234567",145'),
                OK,
            ],
        ),
    ],
    "CMGR with PDU": [
        (
            "AT+CMGR=3",
            f"AT+CMGR=3\r\r\n+CMGR: 0,,24\r\n{PDU_HELLO}\r\n\r\nOK\r\n".encode(),
            [Echo("AT+CMGR=3"), Info("+CMGR: 0,,24", PDU_HELLO), OK],
        ),
        (
            "AT+CMGR=4",
            f'\r\n+CMGR: 1,"Megafon",35\r\n{PDU_TEST}\r\n\r\nOK\r\n'.encode(),
            [Info('+CMGR: 1,"Megafon",35', PDU_TEST), OK],
        ),
    ],
    "empty CMGR": [
        ("AT+CMGR=0", b"\r\n+CMGR: 0,,0\r\n\r\nOK\r\n", [Info("+CMGR: 0,,0"), OK]),
        ("AT+CMGR=1", b"\r\nOK\r\n", [OK]),
        # A header that promises a PDU but is followed by OK: pdu=None, OK still ends it.
        ("AT+CMGR=2", b"\r\n+CMGR: 0,,24\r\n\r\nOK\r\n", [Info("+CMGR: 0,,24"), OK]),
    ],
    "CMGL listing with URCs in between": [
        (
            "AT+CMGL=4",
            (
                "AT+CMGL=4\r\r\n"
                f"+CMGL: 0,1,,24\r\n{PDU_HELLO}\r\n"
                '+CMTI: "SM",3\r\n'
                f"+CMGL: 1,0,,35\r\n"
                # A URC between a header and its PDU: it passes, the header keeps waiting.
                "^RSSI: 14\r\n"
                f"{PDU_TEST}\r\n"
                f"+CMGL: 2,0,,155\r\n{PDU_160}\r\n"
                "\r\nOK\r\n"
            ).encode(),
            [
                Echo("AT+CMGL=4"),
                Info("+CMGL: 0,1,,24", PDU_HELLO),
                urc('+CMTI: "SM",3'),
                urc("^RSSI: 14"),
                Info("+CMGL: 1,0,,35", PDU_TEST),
                Info("+CMGL: 2,0,,155", PDU_160),
                OK,
            ],
        ),
    ],
    "CMT and CDS two-line URCs with no command": [
        (None, f"\r\n+CMT: ,24\r\n{PDU_HELLO}\r\n".encode(), [urc("+CMT: ,24", PDU_HELLO)]),
        (None, f"\r\n+CDS: 25\r\n{PDU_REPORT}\r\n".encode(), [urc("+CDS: 25", PDU_REPORT)]),
        (None, b'\r\n+CDSI: "SR",2\r\n', [urc('+CDSI: "SR",2')]),
    ],
    "CMT URC during a command": [
        (
            "AT+CSQ",
            f"\r\n+CMT: ,24\r\n{PDU_HELLO}\r\n+CSQ: 20,99\r\n\r\nOK\r\n".encode(),
            [urc("+CMT: ,24", PDU_HELLO), Info("+CSQ: 20,99"), OK],
        ),
    ],
    "Huawei ^BOOT/^RSSI flood during a command": [
        (
            "AT+CSQ",
            (
                b"AT+CSQ\r\r\n\r\n^BOOT:27015633,0,0,0,75\r\n\r\n^RSSI:14\r\n"
                b"\r\n^MODE:5,4\r\n\r\n+CSQ: 14,99\r\n\r\n^DSFLOWRPT:00000C1A,00000000\r\n"
                b"\r\n^BOOT:27015633,0,0,0,75\r\n\r\nOK\r\n\r\n^RSSI:15\r\n"
            ),
            [
                Echo("AT+CSQ"),
                urc("^BOOT:27015633,0,0,0,75"),
                urc("^RSSI:14"),
                urc("^MODE:5,4"),
                Info("+CSQ: 14,99"),
                urc("^DSFLOWRPT:00000C1A,00000000"),
                urc("^BOOT:27015633,0,0,0,75"),
                OK,
                urc("^RSSI:15"),
            ],
        ),
    ],
    "boot URCs: RDY, SMS Ready, SMS DONE": [
        (
            None,
            b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
            b"\r\nCall Ready\r\n\r\nSMS Ready\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n",
            [
                urc("RDY"),
                urc("+CFUN: 1"),
                urc("+CPIN: READY"),
                urc("+QUSIM: 1"),
                urc("Call Ready"),
                urc("SMS Ready"),
                urc("SMS DONE"),
                urc("PB DONE"),
            ],
        ),
    ],
    "expected prefix beats URC name": [
        ("AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n", [Info("+CPIN: READY"), OK]),
        ("AT+CREG?", b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", [Info("+CREG: 0,1"), OK]),
        (
            "AT+CSQ",
            b'\r\n+CREG: 1,"00C3","0000A13B",7\r\n+CPIN: NOT READY\r\n+CSQ: 3,99\r\nOK\r\n',
            [
                urc('+CREG: 1,"00C3","0000A13B",7'),
                urc("+CPIN: NOT READY"),
                Info("+CSQ: 3,99"),
                OK,
            ],
        ),
    ],
    "USSD answer is a URC": [
        (
            'AT+CUSD=1,"AA180C3602",15',
            b'AT+CUSD=1,"AA180C3602",15\r\r\nOK\r\n\r\n+CUSD: 0,"Balance 10.00",15\r\n',
            [Echo('AT+CUSD=1,"AA180C3602",15'), OK, urc('+CUSD: 0,"Balance 10.00",15')],
        ),
        # Some firmware answers before OK: still a URC.
        (
            'AT+CUSD=1,"*100#",15',
            b'\r\n+CUSD: 0,"Balance 9.00",15\r\n\r\nOK\r\n',
            [urc('+CUSD: 0,"Balance 9.00",15'), OK],
        ),
        ("AT+CUSD?", b"\r\n+CUSD: 1\r\n\r\nOK\r\n", [Info("+CUSD: 1"), OK]),
    ],
    "lines with no command are URCs": [
        (None, b"\r\nRING\r\n\r\nNO CARRIER\r\n", [urc("RING"), urc("NO CARRIER")]),
        (None, b"\r\nOK\r\n", [urc("OK")]),
        (None, b"\r\nsome unknown line\r\n", [urc("some unknown line")]),
        (
            None,
            b"\r\n+WIND: 4\r\n#QSS: 1\r\n^SCKS: 0\r\n",
            [
                urc("+WIND: 4"),
                urc("#QSS: 1"),
                urc("^SCKS: 0"),
            ],
        ),
    ],
    "command_done after a timeout": [
        ("AT+CSQ", b"AT+CSQ\r", [Echo("AT+CSQ")]),
        (DONE, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", [urc("+CSQ: 20,99"), urc("OK")]),
    ],
    "header abandoned by command_done": [
        ("AT+CMGR=5", b"\r\n+CMGR: 0,,24\r\n", []),
        (DONE, b"", [Garbage(b"+CMGR: 0,,24", "incomplete response")]),
        (None, b"\r\nOK\r\n", [urc("OK")]),
    ],
    "late CMGR after command_done keeps its PDU": [
        (
            DONE,
            f"\r\n+CMGR: 0,,24\r\n{PDU_HELLO}\r\nOK\r\n".encode(),
            [
                urc("+CMGR: 0,,24", PDU_HELLO),
                urc("OK"),
            ],
        ),
    ],
    "prompt": [
        ("AT+CMGS=24", b"AT+CMGS=24\r\r\n> ", [Echo("AT+CMGS=24"), Prompt()]),
        (
            None,
            b"0011000B916171957291F80000AA0AE8329BFD4697D9EC37\x1a\r\n+CMGS: 12\r\n\r\nOK\r\n",
            [
                Info("0011000B916171957291F80000AA0AE8329BFD4697D9EC37\x1a"),
                Info("+CMGS: 12"),
                OK,
            ],
        ),
        ("AT+CMGS=24", b"\r\n>", [Prompt()]),
        (None, b"\x1b\r\nOK\r\n", [Info("\x1b"), OK]),
    ],
    "prompt with no command is not a prompt": [
        (None, b"\r\n> \r\n", [urc(">")]),
    ],
    "header followed by junk": [
        (
            "AT+CMGL=4",
            b"\r\n+CMGL: 1,0,,24\r\nnot a pdu!\r\nOK\r\n",
            [Info("+CMGL: 1,0,,24"), Garbage(b"not a pdu!", "expected pdu"), OK],
        ),
        (None, b"\r\n+CMT: ,24\r\nRING\r\n", [urc("RING")]),
        (None, b'\r\n+CMTI: "SM",1\r\n', [urc('+CMTI: "SM",1')]),
        (None, b"\r\nzzz\r\n", [urc("+CMT: ,24"), Garbage(b"zzz", "expected pdu")]),
    ],
    "line too long": [
        (
            "AT+CSQ",
            b"\r\n" + b"A" * 100 + b"\r\n+CSQ: 5,99\r\nOK\r\n",
            [Garbage(b"A" * 100, "line too long"), Info("+CSQ: 5,99"), OK],
        ),
        (None, b"x" * 300, [Garbage(b"x" * 300, "line too long")]),
        (None, b"y" * 10 + b"\r\nRING\r\n", [Garbage(b"y" * 10, "line too long"), urc("RING")]),
    ],
    "binary junk": [
        (
            "AT+CSQ",
            b"\x00\xff\xfe\x00\r\n\x00+CSQ: 5,99\xff\r\n\x01\x02OK\r\n",
            [
                Garbage(b"\x00\xff\xfe\x00", "control bytes"),
                Garbage(b"\x00\xff", "control bytes"),
                Info("+CSQ: 5,99"),
                Garbage(b"\x01\x02", "control bytes"),
                OK,
            ],
        ),
        (
            None,
            b"\r\n\xc3(\xa0 RING\r\n",
            [Garbage(b"\xc3(\xa0 RING", "invalid utf-8"), urc("\ufffd(\ufffd RING")],
        ),
        (None, '\r\n+COPS: 0,0,"Билайн",7\r\n'.encode(), [urc('+COPS: 0,0,"Билайн",7')]),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    max_line = 64 if name == "line too long" else 1024
    check_three_ways(SCENARIOS[name], max_line=max_line)
