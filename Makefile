# Every target bootstraps .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-cluster test test-cluster bench-cluster ops-tools lint typecheck pytest bench bench-micro bench-pdu bench-fleet bench-e2e bench-peers screenshot reliability clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/muxd demo --ports 16

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict muxd muxd_sim

pytest: $(STAMP)
	$(BIN)/pytest -q

# Debian's prometheus/promtool for tests/ops and postgresql for tests/cluster (skipped when
# already installed).
ops-tools:
	bash .ci/install-ops.sh

test: ops-tools lint typecheck pytest

# The cluster tests alone (a throwaway PostgreSQL) and the reservation benchmark.
test-cluster: ops-tools $(STAMP)
	$(BIN)/pytest -q tests/cluster

# Three boxes of 16 simulated modems on a throwaway PostgreSQL, Onlinesim calling one of them.
demo-cluster: ops-tools $(STAMP)
	$(BIN)/python -m muxd_sim.demo_cluster --ports 16

bench-cluster: ops-tools $(STAMP)
	$(BIN)/python -m benchmarks.cluster_reserve

# The end-to-end benchmark (throughput and latency targets); the micro benchmarks are
# `make bench-micro`.
bench: bench-e2e

bench-micro: $(STAMP)
	$(BIN)/python -m benchmarks.bench_pdu
	$(BIN)/python -m benchmarks.bench_at_parser
	$(BIN)/python -m benchmarks.journal_ship

bench-pdu: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench-peers]'
	$(BIN)/python -m benchmarks.pdu_decode

bench-fleet: $(STAMP)
	$(BIN)/python -m benchmarks.fleet_idle --ports 512 --idle 60

# End to end (simulator, stand-in and `muxd run` in their own processes): muxd's
# throughput and latency targets.
bench-e2e: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.e2e --ports 512 --rate 0 --idle 60 --json docs/bench-idle-512.json
	$(BIN)/python -m benchmarks.e2e --ports 256 --rate 50 --duration 60 --idle 60 --json docs/bench-256-50.json
	$(BIN)/python -m benchmarks.e2e --ports 512 --find-max --idle 60 --json docs/bench-512-max.json

# muxd, smstools3 (Debian's smstools) and python-gsmmodem-new on one fleet: one table.
bench-peers: $(STAMP)
	command -v smsd >/dev/null || (apt-get update -q && apt-get install -y -q smstools)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,bench-peers-gsm]'
	$(BIN)/python -m benchmarks.peers --ports 64 --rate 50 --duration 60 --json docs/bench-peers.json

# The README's screenshot of the status page: headless Chromium against `muxd demo`.
screenshot: $(STAMP) ops-tools
	$(BIN)/python -m benchmarks.screenshot docs/status-page.png

# The reliability campaign (not part of `make test`): a million fuzz inputs each for the AT
# parser and the PDU decoder, schemathesis on the v1 server, 100 rounds of SIGKILL under load,
# the upstream storm and disk tests, and 15 minutes of every modem fault on 128 of 512 ports.
reliability: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	$(BIN)/python -m tests.fuzz.fuzz_at -runs=1000000 -print_final_stats=1
	$(BIN)/python -m tests.fuzz.fuzz_pdu -runs=1000000 -print_final_stats=1
	$(BIN)/python -m tests.fuzz.schemathesis_v1 --examples 2000
	$(BIN)/python -m benchmarks.crash_campaign --rounds 100
	$(BIN)/pytest -q -s tests/upstream/test_shipper_chaos.py tests/reliability
	$(BIN)/python -m benchmarks.e2e --ports 512 --rate 20 --duration 900 --faults all \
		--fault-share 0.25 --no-plot --json docs/reliability-faults-512.json

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
