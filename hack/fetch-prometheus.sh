#!/usr/bin/env bash
# Fetch the Prometheus server binary once into the cache (like the kube binaries), without root and without touching
# the system: Debian's `prometheus` package is downloaded with `apt-get download` and unpacked with `dpkg-deb -x`.
# apt runs against private state under the cache (its own package lists, archive cache and source list), so it needs
# no root, takes no system lock, installs nothing and enables no service. Only the binary is used: the tests and
# `vlmctl simulate-pods --prometheus` start their own Prometheus on loopback with a temporary config and storage.
#
#   bash hack/fetch-prometheus.sh          fetch if missing, print the binary's path on the last line
#
# Cache: ${VLM_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/vlm-operator}/prometheus/
#   apt/                private apt lists and archives, only while fetching (removed afterwards)
#   debian/<version>/   the server binary (48 MB) and its copyright file from the package
#   bin/prometheus      link to the unpacked binary; operator/vlm_operator/simulator/prometheus.py looks here first
# Needs: apt-get and dpkg-deb (any Debian or Ubuntu), network access to the distribution's mirror on first run.
# Without apt, put any Prometheus >= 2.x at that bin/prometheus path (or on PATH) and this script is a no-op.
set -euo pipefail

say() { echo "fetch-prometheus: $*" >&2; }

CACHE="${VLM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator}/prometheus"
LINK="$CACHE/bin/prometheus"

if [ -x "$LINK" ] && "$LINK" --version >/dev/null 2>&1; then
    say "cached: $LINK ($("$LINK" --version 2>&1 | head -n1))"
    echo "$LINK"
    exit 0
fi
for tool in apt-get dpkg-deb; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "no $tool on this machine: put a Prometheus (>= 2.x) binary at $LINK or on PATH" >&2
        exit 1
    fi
done

start=$(date +%s)
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$CACHE/bin" "$CACHE/debian"
# The system's source list (mirrors and Signed-By keyrings are only read), everything apt writes is private.
apt_opts=(
    -q
    -o "Dir::State::Lists=$APT/lists"
    -o "Dir::Cache=$APT"
    -o "Dir::Cache::Archives=$APT/archives"
    -o "Dir::Cache::pkgcache=$APT/pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=$APT/srcpkgcache.bin"
    -o "APT::Sandbox::User=$(id -un)"
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
)
say "apt-get update into $APT (private lists, no root)"
apt-get "${apt_opts[@]}" update >&2
version=$(apt-cache "${apt_opts[@]}" show --no-all-versions prometheus 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
if [ -z "$version" ]; then
    say "no prometheus package in this machine's apt sources" >&2
    exit 1
fi
safe_version=${version//[^A-Za-z0-9.+~-]/_}
dest="$CACHE/debian/$safe_version"
say "apt-get download prometheus=$version"
(cd "$APT/archives" && apt-get "${apt_opts[@]}" download "prometheus=$version" >&2)
deb=$(ls -t "$APT"/archives/prometheus_*.deb | head -n1)
unpacked="$CACHE/unpack.$$"
rm -rf "$unpacked" "$dest.tmp" && mkdir -p "$dest.tmp"
dpkg-deb -x "$deb" "$unpacked"
# Keep the server binary and its copyright file only (promtool, docs and the config samples are not used).
mv "$unpacked/usr/bin/prometheus" "$dest.tmp/prometheus"
cp "$unpacked/usr/share/doc/prometheus/copyright" "$dest.tmp/copyright"
rm -rf "$unpacked" "$dest" && mv "$dest.tmp" "$dest"
ln -sfn "../debian/$safe_version/prometheus" "$LINK.tmp" && mv -T "$LINK.tmp" "$LINK"
# apt's private lists and archive (~110 MB) are not needed once the binary is here; a re-fetch takes seconds.
rm -rf "$APT"
if ! "$LINK" --version >/dev/null 2>&1; then
    say "the unpacked binary does not run: $LINK" >&2
    exit 1
fi
say "fetched in $(($(date +%s) - start))s: $LINK ($("$LINK" --version 2>&1 | head -n1)), cache $(du -sh "$CACHE" | cut -f1)"
echo "$LINK"
