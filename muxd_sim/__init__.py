"""Simulators of what muxd talks to (serial modems, Onlinesim) for e2e tests and `muxd demo`."""
