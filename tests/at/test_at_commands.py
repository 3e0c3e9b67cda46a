"""Command builders, expected prefixes and info-line parsers."""

from __future__ import annotations

import pytest

from muxd.at import (
    AtParseError,
    MemoryUsage,
    cmgd,
    cmgl,
    cmgr,
    cmgs,
    cnmi,
    cpms,
    csq_to_dbm,
    expected_prefix,
    parse_cmgl_header,
    parse_cmgr_header,
    parse_cmgs,
    parse_cmti,
    parse_cnum,
    parse_cops,
    parse_cpms,
    parse_creg,
    parse_csq,
)


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        ("AT+CMGR=3", "+CMGR"),
        ("AT+CREG?", "+CREG"),
        ("AT^ICCID?", "^ICCID"),
        ("AT!ICCID?", "!ICCID"),
        ("AT+CSQ", "+CSQ"),
        ("at+cmgl=4", "+CMGL"),
        ("AT#QSS=1", "#QSS"),
        ("AT+CMGF=0;+CNMI=2,1,0,0,0", "+CMGF"),
        ("AT+CPMS=?", "+CPMS"),
        ("ATE0", None),
        ("ATI", None),
        ("AT", None),
        ("AT&F", None),
        ("", None),
        ('AT+CUSD=1,"*100#",15', None),
        ("AT+CUSD?", "+CUSD"),
        ("AT+CUSD=?", "+CUSD"),
    ],
)
def test_expected_prefix(command: str, prefix: str | None) -> None:
    assert expected_prefix(command) == prefix


def test_builders() -> None:
    assert cmgr(3) == "AT+CMGR=3"
    assert cmgd(0) == "AT+CMGD=0"
    assert cmgd(1, 4) == "AT+CMGD=1,4"
    assert cmgl() == "AT+CMGL=4"
    assert cmgl(0) == "AT+CMGL=0"
    assert cmgs(24) == "AT+CMGS=24"
    assert cpms("SM") == 'AT+CPMS="SM","SM","SM"'
    assert cpms("ME", "SM", "MT") == 'AT+CPMS="ME","SM","MT"'
    assert cnmi() == "AT+CNMI=2,1,0,0,0"
    assert cnmi(ds=2) == "AT+CNMI=2,1,0,2,0"


@pytest.mark.parametrize(
    "build",
    [
        lambda: cmgr(-1),
        lambda: cmgr(True),
        lambda: cmgd(1, 5),
        lambda: cmgl(5),
        lambda: cmgs(0),
        lambda: cpms("sm"),
        lambda: cpms('SM"'),
        lambda: cnmi(mode=4),
    ],
)
def test_builders_reject_bad_arguments(build: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError, the message varies
        build()  # type: ignore[operator]


def test_parse_cmti() -> None:
    assert parse_cmti('"SM",3') == ("SM", 3)
    assert parse_cmti('+CMTI: "ME",0') == ("ME", 0)
    assert parse_cmti('+CDSI: "SR",12') == ("SR", 12)
    assert parse_cmti("SM,5") == ("SM", 5)
    for bad in [",-1", "+CMTI: ,-1", '"SM",-1', '"SM"', '"SM",x', "", '+CSQ: "SM",1', '"SM,1']:
        with pytest.raises(AtParseError):
            parse_cmti(bad)


def test_parse_cmgr_and_cmgl_headers() -> None:
    assert parse_cmgr_header("+CMGR: 0,,24") == (0, 24)
    assert parse_cmgr_header('+CMGR: 1,"Some, name",35') == (1, 35)
    assert parse_cmgr_header("+CMGR: 0,,0") == (0, 0)
    assert parse_cmgl_header("+CMGL: 3,1,,155") == (3, 1, 155)
    assert parse_cmgl_header('+CMGL: 0,0,"",24') == (0, 0, 24)
    for bad in ['+CMGR: "REC UNREAD","+7916",,"24/01/01"', "+CMGR: 0", "+CMGR: ,,"]:
        with pytest.raises(AtParseError):
            parse_cmgr_header(bad)
    for bad in ["+CMGL: 1,24", "+CMGL: a,0,,24", "+CMGR: 1,0,,24"]:
        with pytest.raises(AtParseError):
            parse_cmgl_header(bad)


def test_parse_cmgs() -> None:
    assert parse_cmgs("+CMGS: 12") == 12
    assert parse_cmgs('+CMGS: 7,"24/01/01,12:00:00+12"') == 7
    with pytest.raises(AtParseError):
        parse_cmgs("+CMGS: ")


def test_parse_csq_and_dbm() -> None:
    assert parse_csq("+CSQ: 21,99") == (21, 99)
    assert parse_csq("17,0") == (17, 0)
    for bad in ["+CSQ: 21", "+CSQ: 21,99,1", "+CSQ: -1,99", "+CSQ:"]:
        with pytest.raises(AtParseError):
            parse_csq(bad)
    assert csq_to_dbm(0) == -113
    assert csq_to_dbm(1) == -111
    assert csq_to_dbm(21) == -71
    assert csq_to_dbm(31) == -51
    assert csq_to_dbm(99) is None
    assert csq_to_dbm(100) == -116
    assert csq_to_dbm(191) == -25
    assert csq_to_dbm(199) is None
    assert csq_to_dbm(-1) is None


def test_parse_creg() -> None:
    assert parse_creg("+CREG: 1") == (None, 1)
    assert parse_creg('+CREG: 5,"00C3","0000A13B",7') == (None, 5)
    assert parse_creg("+CREG: 0,1") == (0, 1)
    assert parse_creg('+CREG: 2,1,"00C3","0000A13B",7') == (2, 1)
    assert parse_creg('+CEREG: 2,5,"1A2B","01A2B3C4",7') == (2, 5)
    assert parse_creg("+CGREG: 1,,,") == (None, 1)
    assert parse_creg("3") == (None, 3)
    for bad in ["+CREG: ", "+CREG: x", "+CREG: 1,x", "+CSQ: 1"]:
        with pytest.raises(AtParseError):
            parse_creg(bad)


def test_parse_cops() -> None:
    assert parse_cops('+COPS: 0,0,"MegaFon",2') == "MegaFon"
    assert parse_cops('+COPS: 0,2,"25002",7') == "25002"
    assert parse_cops("+COPS: 0,2,25099,7") == "25099"
    assert parse_cops("+COPS: 0") is None
    assert parse_cops('+COPS: 0,0,""') is None
    with pytest.raises(AtParseError):
        parse_cops('+COPS: x,0,"MTS"')


def test_parse_cnum() -> None:
    assert parse_cnum('+CNUM: "","+79161234567",145') == "+79161234567"
    assert parse_cnum('+CNUM: "Own","79161234567",145') == "+79161234567"
    assert parse_cnum('+CNUM: ,"89161234567",129') == "89161234567"
    assert parse_cnum('+CNUM: "","79161234567"') == "79161234567"
    assert parse_cnum('+CNUM: ,"",129') is None
    with pytest.raises(AtParseError):
        parse_cnum("+CNUM: ")
    with pytest.raises(AtParseError):
        parse_cnum('+CNUM: "","123",abc')


def test_parse_cpms() -> None:
    assert parse_cpms('+CPMS: "SM",3,30,"SM",3,30,"ME",0,100') == (
        MemoryUsage("SM", 3, 30),
        MemoryUsage("SM", 3, 30),
        MemoryUsage("ME", 0, 100),
    )
    assert parse_cpms("+CPMS: 3,30,3,30,3,30") == (MemoryUsage(None, 3, 30),) * 3
    for bad in ['+CPMS: "SM",3', "+CPMS: 3,30,3", '+CPMS: ("SM","ME"),("SM")', '+CPMS: "",1,2']:
        with pytest.raises(AtParseError):
            parse_cpms(bad)
