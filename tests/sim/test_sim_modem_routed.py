"""Routed SMS (+CMT) with AT+CSMS and AT+CNMA, and the network's redelivery, over real ptys."""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_sim_modem_pty import OK, Events, PtyClient, answer

from muxd.pdu import SmsDeliver, decode_pdu
from muxd_sim.modem import ModemSimulator

CMT_RE = re.compile(rb"\r\n\+CMT: ,(\d+)\r\n([0-9A-F]+)\r\n")
CMTI_RE = re.compile(rb'\r\n\+CMTI: "SM",(\d+)\r\n')
NO_ACK_EXPECTED = b"\r\n+CMS ERROR: 340\r\n"
SHORT_S = 0.05  # CNMA timer and network retry of these tests (real ones: 15 s and 30 s)


async def routed_text(client: PtyClient) -> str:
    match = await client.read_until(CMT_RE)
    decoded = decode_pdu(match.group(2).decode(), tpdu_length=int(match.group(1)))
    assert isinstance(decoded, SmsDeliver)
    return decoded.text


async def test_mt2_routes_and_csms0_modem_acknowledges_itself(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    async with ModemSimulator(1, tmp_path / "ports", log_path=log) as sim:
        port = sim.ports[0]
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            assert await client.command("AT+CSMS?") == answer("+CSMS: 0,1,1,1")
            assert await client.command("AT+CNMI=2,2,0,0,0") == OK
            sim.inject(0, "Telegram", "Your code is 123456")
            assert await routed_text(client) == "Your code is 123456"
            assert port.state.used == 0  # it exists only in that URC
            assert await client.command("AT+CNMA") == NO_ACK_EXPECTED
            assert await client.command("AT+CNMI=2,1,0,0,0") == OK
            sim.inject(0, "Telegram", "Your code is 654321")  # mt=1: stored again
            assert (await client.read_until(CMTI_RE)).group(1) == b"1"
        finally:
            client.close()
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert (first["routed"], first["indices"], first["stored"]) == (True, [], True)
    assert "routed" not in second
    assert second["indices"] == [1]


async def test_csms1_waits_for_cnma_before_the_next_sms(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        port.faults.routed = 1.0  # routed whatever mt says
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            assert await client.command("AT+CSMS=?") == answer("+CSMS: (0,1)")
            assert await client.command("AT+CSMS=1") == answer("+CSMS: 1,1,1")
            assert await client.command("AT+CSMS?") == answer("+CSMS: 1,1,1,1")
            assert await client.command("AT+CNMI?") == answer("+CNMI: 2,1,0,0,0")
            sim.inject(0, "Telegram", "first")
            sim.inject(0, "Telegram", "second")
            assert await routed_text(client) == "first"
            assert await client.command("AT+CSQ") == answer(f"+CSQ: {port.state.rssi},99")
            assert b"+CMT" not in client.take()  # the second waits for the acknowledgement
            assert await client.command("AT+CNMA") == OK
            assert await routed_text(client) == "second"
            assert await client.command("AT+CNMA=0") == OK
            assert await client.command("AT+CNMA") == NO_ACK_EXPECTED
            assert (port.routed_sent, port.cnma_acks, port.state.used) == (2, 2, 0)
        finally:
            client.close()


async def test_no_cnma_in_time_turns_routing_off_and_the_network_stores_it(
    tmp_path: Path,
) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, on_event=events) as sim:
        sim.redelivery_s = SHORT_S
        port = sim.ports[0]
        port.faults.cnma_timeout_s = SHORT_S
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await client.command("AT+CSMS=1")
            assert await client.command("AT+CNMI=2,2,0,0,0") == OK
            sim.inject(0, "Telegram", "Your code is 777777")
            assert await routed_text(client) == "Your code is 777777"
            await events.wait(0, "cnma-timeout")
            assert await client.command("AT+CNMI?") == answer("+CNMI: 2,0,0,0,0")  # 27.005
            assert await client.command("AT+CNMA") == NO_ACK_EXPECTED  # too late
            await events.wait(0, "network-retry")
            assert port.cnma_timeouts == 1
            listing = await client.command("AT+CMGL=4")  # stored silently (mt=0)
            assert listing.startswith(b"\r\n+CMGL: 1,0,,")
            assert b"+CMTI" not in listing
        finally:
            client.close()


async def test_refused_or_unacknowledged_routed_sms_comes_again(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, on_event=events) as sim:
        sim.redelivery_s = SHORT_S
        port = sim.ports[0]
        port.faults.routed = 1.0
        port.faults.cnma_timeout_s = SHORT_S
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await client.command("AT+CSMS=1")
            sim.inject(0, "Telegram", "again")
            assert await routed_text(client) == "again"
            assert await client.command("AT+CNMA=2") == OK  # refused: the network retries
            assert await routed_text(client) == "again"
            await events.wait(0, "cnma-timeout")  # not acknowledged: retried, still routed
            assert await routed_text(client) == "again"
            assert await client.command("AT+CNMA") == OK
            assert (port.routed_sent, port.cnma_acks, port.cnma_timeouts) == (3, 1, 1)
            assert port.state.used == 0
        finally:
            client.close()


async def test_routed_nocsms_refuses_csms1_and_still_routes(tmp_path: Path) -> None:
    async with ModemSimulator(1, tmp_path) as sim:
        port = sim.ports[0]
        port.faults.routed_nocsms = 1.0
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            assert await client.command("AT+CSMS=?") == answer("+CSMS: (0)")
            assert await client.command("AT+CSMS=1") == b"\r\n+CMS ERROR: 303\r\n"
            assert await client.command("AT+CSMS?") == answer("+CSMS: 0,1,1,1")
            assert await client.command("AT+CNMI=2,1,0,0,0") == OK  # mt=1: store, please
            sim.inject(0, "Telegram", "flash")
            assert await routed_text(client) == "flash"  # routed anyway, acknowledged by it
            assert await client.command("AT+CNMA") == NO_ACK_EXPECTED
            assert port.state.used == 0
        finally:
            client.close()


async def test_a_hung_or_rebooting_modem_gets_routed_sms_afterwards(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(
        1, tmp_path, on_event=events, boot_delay=0, flavours=["quectel"]
    ) as sim:
        sim.redelivery_s = SHORT_S
        port = sim.ports[0]
        port.faults.routed = 1.0
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await client.command("AT+CSMS=1")
            sim.mute_for(0, SHORT_S)
            sim.inject(0, "Telegram", "while hung")
            assert port.routed_sent == 0  # the network keeps it for the hung modem
            await events.wait(0, "unmute")
            assert await routed_text(client) == "while hung"
            await client.command("AT+CNMA")
            sim.inject(0, "Telegram", "before reboot")
            assert await routed_text(client) == "before reboot"
            await client.command("AT+CFUN=1,1")  # reboots before acknowledging it
            await events.wait(0, "power-up", 2)
            await events.wait(0, "network-retry")
            # AT+CSMS is back to 0 after the reboot: the routed fault does not route
            # unacknowledged delivery, so the network's second try is stored.
            assert port.state.csms == 0
            assert port.routed_sent == 2
            assert sum(len(slots) for slots in port.state.storages.values()) == 1
        finally:
            client.close()


async def test_a_part_sent_to_a_swapped_out_sim_is_discarded(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    events = Events()
    async with ModemSimulator(
        1, tmp_path / "ports", log_path=log, on_event=events, boot_delay=0
    ) as sim:
        port = sim.ports[0]
        port.faults.routed = 1.0
        sim.mute_for(0, SHORT_S)
        sms_id = sim.inject(0, "Telegram", "for the old SIM")  # the network keeps it
        sim.swap_sim(0)
        await events.wait(0, "unmute")
        assert port.routed_sent == 0  # never given to the new SIM
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[-1]["event"] == "discarded"
    assert lines[-1]["id"] == sms_id


async def test_full_memory_makes_the_network_retry_later(tmp_path: Path) -> None:
    events = Events()
    async with ModemSimulator(1, tmp_path, on_event=events, capacity=1) as sim:
        sim.redelivery_s = SHORT_S
        port = sim.ports[0]
        port.faults.cnma_timeout_s = SHORT_S
        client = PtyClient(port.path)
        try:
            await client.command("ATE0")
            await client.command("AT+CSMS=1")
            await client.command("AT+CNMI=2,2,0,0,0")
            sim.inject(0, "Telegram", "routed first")  # no ack: routing goes off
            assert await routed_text(client) == "routed first"
            await events.wait(0, "cnma-timeout")
            await client.command("AT+CNMI=2,1,0,0,0")
            port.state.faults.storage_full = True  # the memory refuses it meanwhile
            await events.wait(0, "network-retry")
            assert port.state.used == 0
            port.state.faults.storage_full = False
            assert (await client.read_until(CMTI_RE)).group(1) == b"1"  # the next retry
            assert port.state.used == 1
        finally:
            client.close()
