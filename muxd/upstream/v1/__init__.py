"""Onlinesim Reseller API v1: Onlinesim calls muxd.

:class:`V1Service` (service.py) is what the daemon runs: the partner server (server.py:
routes, auth, gzip, the three actions), availability counts and number choice (counts.py,
names.py), the PUSH_SMS webhook client (pusher.py). Its state lives in the journal
(:mod:`muxd.upstream.v1.operations`).
"""

from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.service import V1Service

__all__ = ["V1Observer", "V1Service"]
