#!/usr/bin/env bash
# Installs the Debian packages the ops tests (tests/ops) need:
#   - prometheus and promtool, both shipped by Debian's `prometheus` package;
#   - /usr/bin/chromium (Debian's `chromium` package), which renders the status page headless;
#   - systemd-analyze (Debian's `systemd` package), which rates the shipped unit's sandbox;
#   - initdb and pg_ctl (Debian's `postgresql` package), which the cluster tests use to start a
#     throwaway PostgreSQL in a temporary directory. Debian keeps them off PATH, in
#     /usr/lib/postgresql/VERSION/bin; the tests look there. PostgreSQL refuses to run as root,
#     so when the tests run as root (CI) the server runs as the `postgres` user the package
#     creates. The package's own cluster service is not started (see policy-rc.d below);
#   - haproxy and nginx (Debian's `haproxy` and `nginx-light`), whose config checks
#     (`haproxy -c`, `nginx -t`) the load-balancer examples in contrib/proxy must pass. Their
#     services are not started either.
# Idempotent, quiet and non-interactive: installs only what is missing and does nothing when
# everything is present. The tests start their own Prometheus on a free loopback port, so the
# packaged service is neither needed nor started here.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

CHROMIUM=/usr/bin/chromium

have_prometheus() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}
have_chromium() {
    [ -x "$CHROMIUM" ]
}
have_systemd_analyze() {
    command -v systemd-analyze >/dev/null 2>&1
}
# The directory holding initdb and pg_ctl (PATH first, then Debian's newest version), or nothing.
pg_bin() {
    local bin
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    for bin in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
            echo "$bin"
            return 0
        fi
    done
    return 1
}
have_postgres() {
    pg_bin >/dev/null
}
have_haproxy() {
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
}
have_nginx() {
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
}

packages=()
have_prometheus || packages+=(prometheus)
have_chromium || packages+=(chromium)
have_systemd_analyze || packages+=(systemd)
have_postgres || packages+=(postgresql)
have_haproxy || packages+=(haproxy)
have_nginx || packages+=(nginx-light)

if [ "${#packages[@]}" -eq 0 ]; then
    echo "install-ops: already present: $(command -v prometheus) $(command -v promtool) $CHROMIUM" \
        "$(pg_bin)/initdb"
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
LOG=$(mktemp "${TMPDIR:-/tmp}/install-ops.XXXXXX")
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
    rm -f "$LOG"
}
trap cleanup EXIT

# apt and dpkg talk a lot; their output goes to $LOG and is shown only when a step fails.
quietly() {
    "$@" >>"$LOG" 2>&1
}
fail() {
    echo "install-ops: $1; apt output:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
}

APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

echo "install-ops: installing ${packages[*]} (Debian)"
# apt-get update only when the package lists do not know a package yet.
for pkg in "${packages[@]}"; do
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
        quietly "${SUDO[@]}" apt-get update -q || fail "apt-get update failed"
        break
    fi
done
if ! quietly "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends "${packages[@]}"; then
    # Stale lists (a 404 on a superseded .deb): refresh once and retry.
    quietly "${SUDO[@]}" apt-get update -q || fail "apt-get update failed"
    quietly "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends "${packages[@]}" \
        || fail "apt-get install ${packages[*]} failed"
fi

if ! have_prometheus; then
    fail "prometheus/promtool still missing after installing the package"
fi
if ! have_chromium; then
    fail "$CHROMIUM still missing after installing the package"
fi
if ! have_systemd_analyze; then
    fail "systemd-analyze still missing after installing the package"
fi
if ! have_postgres; then
    fail "initdb/pg_ctl still missing after installing postgresql"
fi
if ! have_haproxy || ! have_nginx; then
    fail "haproxy/nginx still missing after installing them"
fi
echo "install-ops: $(prometheus --version 2>&1 | head -n1)"
echo "install-ops: $("$CHROMIUM" --version 2>/dev/null | head -n1)"
echo "install-ops: $("$(pg_bin)/pg_ctl" --version)"
