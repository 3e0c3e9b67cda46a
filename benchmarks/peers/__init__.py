"""Peers for the end-to-end benchmark: smstools3 and python-gsmmodem-new (never used by muxd).

``python -m benchmarks.peers`` runs muxd and both peers on the same simulated fleet and load
and prints one table; ``python -m benchmarks.e2e --daemon smstools3|gsmmodem`` runs one.
"""
