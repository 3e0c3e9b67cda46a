"""``muxd probe`` against the simulator's vendor flavours over real pseudo-terminals."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxd.cli import main
from muxd.probe import probe_ports, render_snippet, render_table
from muxd_sim.modem import ModemSimulator

FLAVOURS = ("generic", "quectel", "simcom", "sim800", "huawei", "telit")
SMS_PER_PORT = 2


async def test_probe_identifies_every_flavour_and_deletes_nothing(tmp_path: Path) -> None:
    async with ModemSimulator(
        len(FLAVOURS), tmp_path / "dev", flavours=FLAVOURS, boot_delay=0.0
    ) as sim:
        for port in sim.ports:
            for k in range(SMS_PER_PORT):
                sim.inject(port.index, "+79001234567", f"code {port.index}{k}")
        stored = {p.index: sum(len(s) for s in p.state.storages.values()) for p in sim.ports}
        results = await probe_ports([str(p.path) for p in sim.ports])
        for port, result in zip(sim.ports, results, strict=True):
            assert result.ok, (port.flavour.name, result.error)
            assert result.profile is not None
            assert result.info.imei == port.imei
            assert result.info.iccid == port.iccid
            assert result.info.imsi == port.imsi
            if port.number_in_cnum:
                assert (result.info.number, result.info.number_source) == (port.number, "cnum")
            else:
                assert result.info.number is None
            assert result.cnmi_accepted, port.flavour.name
            assert sum(used for used, _total in result.storage.values()) >= SMS_PER_PORT
            # A probe reads no SMS and deletes none.
            assert sum(len(s) for s in port.state.storages.values()) == stored[port.index]
        table = render_table(results)
        snippet = render_snippet(results)
    assert all(str(p.path) in table for p in sim.ports)
    assert "[modems]" in snippet
    assert all(f'"{p.path}",' in snippet for p in sim.ports)
    # The SIMs whose number AT+CNUM does not give get a numbers-file line to fill in.
    for port in sim.ports:
        if not port.number_in_cnum:
            assert f"# {port.iccid},{port.imsi},+NUMBER" in snippet


async def test_a_port_that_cannot_be_opened_is_reported_and_the_others_still_probed(
    tmp_path: Path,
) -> None:
    async with ModemSimulator(1, tmp_path / "dev") as sim:
        results = await probe_ports([str(tmp_path / "missing"), str(sim.ports[0].path)])
    assert not results[0].ok
    assert "cannot open" in (results[0].error or "")
    assert results[1].ok
    assert "FAILED" in render_table(results)


def test_cli_needs_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe"]) == 2
    assert "PORT" in capsys.readouterr().err


def test_cli_reports_a_glob_that_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", str(tmp_path / "ttyUSB*")]) == 1
    assert "matches no port" in capsys.readouterr().err
