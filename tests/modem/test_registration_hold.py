"""The port records when its modem lost registration (monotonic), which the v2 publisher's
``modems.unregistered_hold`` counts from; registering again clears it."""

from __future__ import annotations

import time

from muxd.at.events import Urc
from muxd_sim.clock import run_virtual

from .fakes import ModemModel, RecordingSink
from .test_port import _port


def creg(stat: int) -> Urc:
    return Urc(name="+CREG", args=str(stat), pdu=None, line=f"+CREG: {stat}")


def test_a_lost_registration_is_stamped_and_a_new_one_clears_it() -> None:
    async def main() -> None:
        port, _modem = _port(ModemModel(), RecordingSink())
        info = port.info
        port.on_urc(creg(1))
        assert info.registered
        assert info.unregistered_at is None
        before = time.monotonic()
        port.on_urc(creg(2))  # searching: lost
        assert not info.registered
        assert info.unregistered_at is not None
        assert before <= info.unregistered_at <= time.monotonic()
        stamp = info.unregistered_at
        port.on_urc(creg(0))  # still lost: the loss keeps its first stamp
        assert info.unregistered_at == stamp
        port.on_urc(creg(5))  # roaming: registered again
        assert info.registered
        assert info.unregistered_at is None

    run_virtual(main)
