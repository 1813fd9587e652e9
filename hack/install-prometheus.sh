#!/usr/bin/env bash
# Install the Prometheus server from the Debian package, once. Idempotent: when a `prometheus` binary is already on
# PATH (or at /usr/bin/prometheus) it says so and does nothing else. Only the binary is used: the tests and
# `vlmctl simulate-pods --prometheus` start their own Prometheus on loopback with a temporary config and storage,
# so the package's systemd service is not needed (and is stopped when the package starts it).
#
# Usage: bash hack/install-prometheus.sh        (root, or sudo without a password)
set -euo pipefail

say() { echo "install-prometheus: $*"; }

if command -v prometheus >/dev/null 2>&1; then
    say "already installed: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n1))"
    exit 0
fi
if [ -x /usr/bin/prometheus ]; then
    say "already installed: /usr/bin/prometheus ($(/usr/bin/prometheus --version 2>&1 | head -n1))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get on this machine: install Prometheus (>= 2.x) yourself and put it on PATH" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        say "need root (or passwordless sudo) to run apt-get" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
say "running: apt-get update"
$SUDO apt-get update -q
# --no-install-recommends: skips the node exporter and friends; only the server is needed.
say "running: apt-get install -y --no-install-recommends prometheus"
# policy-rc.d exit 101 keeps the package's maintainer scripts from starting the system service.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
cleanup() { if [ "$CREATED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT
$SUDO apt-get install -y -q --no-install-recommends prometheus
say "installed: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n1))"
