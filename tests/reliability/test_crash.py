"""SIGKILL muxd at random moments under steady load; nothing is lost, corrupted or doubled
beyond what v2 makes unavoidable.

``MUXD_CRASH_ROUNDS`` (default 8) sets the number of kills, ``MUXD_CRASH_SEED`` the seed (default:
a fresh one, printed, so a failing run can be repeated); ``benchmarks/crash_campaign.py`` runs
the same campaign outside pytest.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

from tests.reliability.harness import BATCH_MAX, crash_campaign

DEFAULT_ROUNDS = 8
ROUNDS = int(os.environ.get("MUXD_CRASH_ROUNDS", DEFAULT_ROUNDS))
# The default run takes well under a minute; more rounds (about 2 s each) get more time.
TEST_TIMEOUT = max(60, 30 + 5 * ROUNDS)


def _seed() -> int:
    value = os.environ.get("MUXD_CRASH_SEED")
    return int(value) if value else secrets.randbits(32)


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_sigkill_under_load_loses_nothing(tmp_path: Path) -> None:
    seed = _seed()
    print(f"crash campaign seed: {seed} (repeat with MUXD_CRASH_SEED={seed})")
    result = await crash_campaign(tmp_path, rounds=ROUNDS, seed=seed, progress=print)
    print(result.summary())
    v = result.verdict
    context = f"seed {seed}\n{result.summary()}"

    assert not v.lost, context
    assert not v.corrupted, context
    # v2 has no idempotency key: a kill between the acknowledgement and the commit of
    # "delivered" resends that batch once. Every copy must be explained by a counted attempt.
    assert not v.unexplained, context
    assert v.duplicate_copies <= ROUNDS * BATCH_MAX, context
    # Every SMS journaled exactly once (re-read parts were recognised) and delivered.
    assert not v.journal_missing, context
    assert not v.journal_doubles, context
    assert v.journal_states == {"delivered": v.injected}, context
    assert set(v.part_states) == {"assembled"}, context
    # Deleted from the SIMs after the commit, and the set-up never overflowed a SIM.
    assert v.storage_left == 0, context
    assert v.refused == 0, context
    assert not v.sim_errors, context
    assert all(r.status == -signal.SIGKILL for r in result.rounds), context
    assert not result.log_problems, context
