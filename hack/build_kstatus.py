"""Build (once) and run the kstatus probe in ``hack/kstatus``: the real ``sigs.k8s.io/cli-utils`` status library.

kstatus is what Flux, kpt, ``kubectl apply --prune`` and cli-utils pollers use to decide whether a resource is
Current, InProgress, Failed or Terminating. Tests ask the real library (compiled from the Go module proxy) rather than
a re-implementation of its rules. The binary lives outside the repository, in
``<cache_root>/kstatus/<cli-utils version>/kstatus``, and is rebuilt only when it is missing or its sources changed.

    .venv/bin/python -m hack.build_kstatus                  # build if needed, print the binary's path
    kubectl get vlmd x -o json | "$(.venv/bin/python -m hack.build_kstatus)"
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from vlm_operator.devcluster import build

SRC = Path(__file__).resolve().parent / "kstatus"
_SOURCES = ("go.mod", "go.sum", "main.go")


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


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (SRC / name).read_bytes() + b"\0")
    return h.hexdigest()


def ensure(log: Any = None) -> Path:
    """Return the kstatus binary, building it first if it is missing or was built from other sources."""
    out = binary_path()
    stamp = out.with_name("kstatus.src-sha256")
    digest = _source_digest()
    if out.is_file() and os.access(out, os.X_OK) and stamp.is_file() and stamp.read_text().strip() == digest:
        return out
    if shutil.which("go") is None:
        raise KstatusBuildError("building the kstatus probe needs Go on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"building kstatus (sigs.k8s.io/cli-utils {cli_utils_version()}) into {out}"
    )
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-trimpath -buildvcs=false -mod=readonly",
    }
    tmp = out.with_name("kstatus.tmp")
    res = subprocess.run(
        ["go", "build", "-ldflags", "-s -w", "-o", str(tmp), "."],
        cwd=SRC,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise KstatusBuildError(f"go build of hack/kstatus exited {res.returncode}:\n{tail}")
    tmp.replace(out)
    stamp.write_text(digest + "\n")
    return out


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
