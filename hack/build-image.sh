#!/usr/bin/env bash
# Opt-in tier: build the operator image without Docker or a registry, and run its entrypoint.
#
#   bash hack/build-image.sh          # prints the image size and the entrypoint's --help output
#
# 1. mmdebstrap, buildah and runc are Debian packages; they are fetched with `apt-get download` and unpacked with
#    `dpkg-deb -x` into the cache (nothing is installed system-wide).
# 2. A base image is built from Debian packages: mmdebstrap (bookworm, minbase, python3 + pip + CA certificates),
#    imported with buildah (vfs storage) and committed as localhost/vlm-base:bookworm.
# 3. images/operator/Dockerfile is built with `buildah bud` (runc, host network) and that base through its
#    BASE_IMAGE build argument (pip installs the operator's dependencies from PyPI).
# 4. The entrypoint runs with `buildah run`: `vlmctl --help` and `vlmctl operator run --help`.
# Needs root (runc, mmdebstrap's root mode), network to deb.debian.org and PyPI. Everything is kept
# under ${VLM_CACHE_DIR:-~/.cache/vlm-operator}/image-build.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${VLM_CACHE_DIR:-$HOME/.cache/vlm-operator}
TOOLS=$CACHE/tools/buildah-root
WORK=$CACHE/image-build
DEBS=$CACHE/tools/debs
mkdir -p "$WORK" "$DEBS"

if [ ! -x "$TOOLS/usr/bin/buildah" ] || [ ! -f "$TOOLS/usr/bin/mmdebstrap" ]; then
  echo "== fetching mmdebstrap and buildah (Debian packages) into $TOOLS"
  (cd "$DEBS" && apt-get download mmdebstrap buildah golang-github-containers-common libgpgme11 \
     libdevmapper1.02.1 libassuan0 runc 2>&1 | grep -v '^W: Download is performed unsandboxed')
  mkdir -p "$TOOLS"
  for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$TOOLS"; done
fi
export LD_LIBRARY_PATH="$TOOLS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cat > "$WORK/policy.json" <<'JSON'
{"default": [{"type": "insecureAcceptAnything"}]}
JSON
bh() {
  "$TOOLS/usr/bin/buildah" --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs "$@"
}

BASE=localhost/vlm-base:bookworm
if ! bh images --format '{{.Name}}:{{.Tag}}' | grep -qx "$BASE"; then
  if [ ! -s "$WORK/debian-python.tar" ]; then
    echo "== mmdebstrap: Debian bookworm minbase + python3 + pip"
    perl "$TOOLS/usr/bin/mmdebstrap" --variant=minbase --include=python3,python3-pip,ca-certificates \
      --aptopt='Acquire::Languages "none"' bookworm "$WORK/debian-python.tar" http://deb.debian.org/debian
  fi
  echo "== buildah: commit $BASE"
  ctr=$(bh from --signature-policy "$WORK/policy.json" scratch)
  bh add "$ctr" "$WORK/debian-python.tar" /
  # Debian marks its Python as externally managed (PEP 668); the image has no other Python to protect
  bh config --env PIP_BREAK_SYSTEM_PACKAGES=1 --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
  bh commit --signature-policy "$WORK/policy.json" --rm "$ctr" "$BASE"
fi

IMAGE=localhost/vlm-operator:dev
echo "== buildah bud images/operator/Dockerfile on $BASE"
# The host's CA bundle is mounted (not copied) for the RUN steps, so pip trusts whatever TLS proxy the host trusts.
bh bud --isolation oci --runtime "$TOOLS/usr/bin/runc" --network host --signature-policy "$WORK/policy.json" \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg "BASE_IMAGE=$BASE" -f images/operator/Dockerfile -t "$IMAGE" .

echo "== the entrypoint, with buildah run"
ctr=$(bh from --signature-policy "$WORK/policy.json" "$IMAGE")
trap 'bh rm "$ctr" >/dev/null' EXIT
bh run --isolation oci --runtime "$TOOLS/usr/bin/runc" --network host "$ctr" -- vlmctl --help | head -5
bh run --isolation oci --runtime "$TOOLS/usr/bin/runc" --network host "$ctr" -- vlmctl operator run --help | head -3
bh run --isolation oci --runtime "$TOOLS/usr/bin/runc" --network host "$ctr" -- python3 -c \
  'import importlib.util as u; print("dev-only modules in the image:", [m for m in ("vlm_operator.devcluster", "vlm_operator.simulator") if u.find_spec(m)])'
echo "== size"
bh images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E "vlm-(base|operator)"
