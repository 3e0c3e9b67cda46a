"""Log lines about a port carry the port and IMEI, in text and in JSON."""

from __future__ import annotations

import json
import logging

import pytest

from muxd.log import JsonFormatter, PortLog
from muxd.ports import PortInfo


def test_port_log_prefix_and_json_fields(caplog: pytest.LogCaptureFixture) -> None:
    info = PortInfo(name="port007", path="/dev/x")
    log = PortLog(logging.getLogger("muxd.test"), info)
    with caplog.at_level(logging.INFO, logger="muxd.test"):
        log.info("opening")
        info.imei = "356092047453300"
        log.warning("no answer to %s", "AT")
    first, second = caplog.records
    assert first.getMessage() == "port007: opening"
    assert second.getMessage() == "port007 [356092047453300]: no answer to AT"
    record = json.loads(JsonFormatter().format(second))
    assert record["port"] == "port007"
    assert record["imei"] == "356092047453300"
    assert record["level"] == "warning"
    assert record["msg"].endswith("no answer to AT")
