#!/usr/bin/env bash
# Installs the Debian packages the ops tests (tests/ops) need: prometheus and promtool, both
# shipped by Debian's `prometheus` package. Idempotent and non-interactive; does nothing when
# both binaries are already on PATH. The tests start their own Prometheus on a free loopback
# port, so the packaged service is neither needed nor started here.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

have_all() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

if have_all; then
    echo "install-ops: prometheus and promtool already present: $(command -v prometheus) $(command -v promtool)"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo -n)
fi

# Keep the package's maintainer scripts from starting prometheus.service (it would bind :9090
# and pull in a node exporter). invoke-rc.d consults policy-rc.d; exit 101 means "not allowed".
# Only install our policy when none exists, and remove only what we created.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT

APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# apt-get update only when the package lists do not know the package yet.
if ! apt-cache show prometheus >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -q
fi
if ! "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends prometheus; then
    # Stale lists (a 404 on a superseded .deb): refresh once and retry.
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends prometheus
fi

if ! have_all; then
    echo "install-ops: prometheus/promtool still missing after installing the package" >&2
    exit 1
fi
echo "install-ops: $(prometheus --version 2>&1 | head -n1)"
