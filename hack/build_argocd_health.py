"""Build (once) and run ``hack/argocd-health``: an Argo CD health script run the way Argo CD runs it.

Argo CD evaluates ``resource.customizations.health.<group>_<Kind>`` with gopher-lua in a sandbox (argo-cd v3.6.2
util/lua/lua.go, runLuaWithResourceActionParameters and ExecuteHealthLua): only the package, base and table libraries
and a safe os library (os.time, os.date), a one-second deadline, the object as ``obj``, and the returned table read as
``{status, message}``. The harness reproduces exactly
that with the same gopher-lua (v1.1.2) and gopher-json that argo-cd v3.6.2's go.mod pins; Argo CD's own module is not
used because it drags in all of k8s.io/kubernetes. The binary lives in ``<cache_root>/argocd-health/<gopher-lua
version>/`` and is rebuilt only when its sources change.

    .venv/bin/python -m hack.build_argocd_health    # build if needed, print the binary's path
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

SRC = Path(__file__).resolve().parent / "argocd-health"
SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "argocd" / "health.lua"
_SOURCES = ("go.mod", "go.sum", "main.go")


class ArgoHealthBuildError(RuntimeError):
    """``go build`` of the harness failed; the message carries Go's own output."""


def gopher_lua_version() -> str:
    m = re.search(r"github\.com/yuin/gopher-lua\s+(v\S+)", (SRC / "go.mod").read_text())
    if not m:
        raise ArgoHealthBuildError(f"{SRC / 'go.mod'} does not require github.com/yuin/gopher-lua")
    return m.group(1)


def binary_path() -> Path:
    return build.cache_root() / "argocd-health" / gopher_lua_version() / "argocd-health"


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (SRC / name).read_bytes() + b"\0")
    return h.hexdigest()


def ensure(log: Any = None) -> Path:
    """Return the harness binary, building it first if it is missing or was built from other sources."""
    out = binary_path()
    stamp = out.with_name("argocd-health.src-sha256")
    digest = _source_digest()
    if out.is_file() and os.access(out, os.X_OK) and stamp.is_file() and stamp.read_text().strip() == digest:
        return out
    if shutil.which("go") is None:
        raise ArgoHealthBuildError("building the Argo CD health harness needs Go on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"building the Argo CD health harness (gopher-lua {gopher_lua_version()}) into {out}"
    )
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-trimpath -buildvcs=false -mod=readonly",
    }
    tmp = out.with_name("argocd-health.tmp")
    res = subprocess.run(
        ["go", "build", "-ldflags", "-s -w", "-o", str(tmp), "."],
        cwd=SRC,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise ArgoHealthBuildError(f"go build of hack/argocd-health exited {res.returncode}:\n{tail}")
    tmp.replace(out)
    stamp.write_text(digest + "\n")
    return out


def health(objs: list[dict[str, Any]], binary: Path | None = None, script: Path = SCRIPT) -> list[dict[str, str]]:
    """Argo CD's verdict for each object: ``{"status": ..., "message": ...}`` (or ``{"error": ...}``)."""
    res = subprocess.run(
        [str(binary or ensure()), str(script)],
        input="".join(json.dumps(o) + "\n" for o in objs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"argocd-health failed ({res.returncode}): {res.stderr.strip()}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def main() -> int:
    try:
        print(ensure())
    except ArgoHealthBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
