"""CI's smoke test of the operator at scale: ``benchmarks/operator_scale.py --smoke``.

100 VLMDeployments on 50 simulated nodes with no spare GPU, 1,000 unrelated pods, vlm-operator (webhook on,
autoscaler off) beside the no-op kopf operator, on a dev cluster of its own (real kube-apiserver, etcd, KCM,
scheduler and kwok; not the session's cluster, whose other tests would skew the counts). The benchmark creates all
100, waits for Ready, idles for one drift resync, rolls all 100 out at once and prints its table. This test asserts
what the operator must do at that size, not how fast: every object Ready, the rollout of all of them finished with
none deadlocked, an idle resync that writes nothing, writes per object on create under the bound the benchmark
prints, and no traceback in the operator's log. ``--full`` (1,000 on 500) stays out of CI.

Select it with ``-m benchmark_smoke`` (or leave it out with ``-m "not benchmark_smoke"``). It takes about 3 minutes
on an idle 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.benchmark_smoke]

ROOT = Path(__file__).resolve().parents[2]
#: the benchmark's bound on mutating requests per object on create (the goal is 5; the operator makes about 6)
MAX_WRITES_PER_OBJECT = 8.0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.mark.timeout(900)
def test_operator_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    work = tmp_path / "tmp"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "operator_scale.py"),
            "--smoke",
            "--max-writes-per-object",
            str(MAX_WRITES_PER_OBJECT),
            "--json",
            str(out),
        ],
        # a failed run keeps both operators' logs in its work directory: under tmp_path, shown below
        env={**os.environ, "TMPDIR": str(work)},
        capture_output=True,
        text=True,
        timeout=840,
    )
    print(proc.stdout)
    logs = "".join(f"\n--- {p}:\n{_tail(p)}" for p in sorted(work.glob("vlm-opscale-*/*.log")))
    why = f"exit {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}{logs}"
    assert out.exists(), why
    res = json.loads(out.read_text())
    assert res.get("failure") is None, f"{res.get('failure')}\n{why}"
    assert res["phase"] == "done", why
    n = res["count"]
    assert n == 100 and res["nodes"] == 50 and res["unrelated"] == 1000
    assert res["ready_s"] > 0  # all 100 became Ready (the benchmark fails the phase otherwise)
    assert res["rollout_unfinished"] == 0, why
    assert res["rollout_deadlocked"] == 0, why
    assert res["idle_writes"] == 0, why
    # the operator does write: Deployment, Service, PodDisruptionBudget and status per object at least
    assert 4 <= res["create_writes_per_object"] <= MAX_WRITES_PER_OBJECT, why
    assert res["rollout_writes"] >= n, why  # every object's Deployment changed
    assert res["operator_tracebacks"] == 0, why
    assert all(res["checks"].values()), res["checks"]
    assert proc.returncode == 0, why
