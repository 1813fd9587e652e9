"""Build (once) and run the kstatus probe in ``hack/kstatus``: the real ``sigs.k8s.io/cli-utils`` status library.

kstatus is what Flux, kpt, ``kubectl apply --prune`` and cli-utils pollers use to decide whether a resource is
Current, InProgress, Failed or Terminating. Tests ask the real library (compiled from the Go module proxy) rather than
a re-implementation of its rules. The binary lives outside the repository, in
``<cache_root>/kstatus/<cli-utils version>/kstatus``, and is rebuilt only when it is missing or its sources changed.

    .venv/bin/python -m hack.build_kstatus                  # build if needed, print the binary's path
    kubectl get vlmd x -o json | "$(.venv/bin/python -m hack.build_kstatus)"
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hack import go_harness
from vlm_operator.devcluster import build

SRC = Path(__file__).resolve().parent / "kstatus"


class KstatusBuildError(RuntimeError):
    """``go build`` of the kstatus probe failed; the message carries Go's own output."""


def cli_utils_version() -> str:
    """The sigs.k8s.io/cli-utils version pinned in hack/kstatus/go.mod (the one source of truth)."""
    m = re.search(r"^\s*(?:require\s+)?sigs\.k8s\.io/cli-utils\s+(v\S+)", (SRC / "go.mod").read_text(), re.MULTILINE)
    if not m:
        raise KstatusBuildError(f"{SRC / 'go.mod'} does not require sigs.k8s.io/cli-utils")
    return m.group(1)


def binary_path() -> Path:
    return build.cache_root() / "kstatus" / cli_utils_version() / "kstatus"


def ensure(log: Any = None) -> Path:
    """Return the kstatus binary, building it first if it is missing or was built from other sources."""
    return go_harness.ensure(
        SRC,
        binary_path(),
        f"kstatus (sigs.k8s.io/cli-utils {cli_utils_version()})",
        KstatusBuildError,
        log,
        timeout=1800,
    )


def compute(obj: dict[str, Any], binary: Path | None = None) -> dict[str, Any]:
    """kstatus's ``status.Compute`` for ``obj``: ``{"status": ..., "message": ..., "conditions": [...]}``."""
    res = subprocess.run(
        [str(binary or ensure())], input=json.dumps(obj), capture_output=True, text=True, timeout=60, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"kstatus failed ({res.returncode}): {res.stderr.strip()}")
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def main() -> int:
    try:
        print(ensure())
    except KstatusBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
