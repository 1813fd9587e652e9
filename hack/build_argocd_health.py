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

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hack import go_harness
from vlm_operator.devcluster import build

SRC = Path(__file__).resolve().parent / "argocd-health"
SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "argocd" / "health.lua"


class ArgoHealthBuildError(RuntimeError):
    """``go build`` of the harness failed; the message carries Go's own output."""


def gopher_lua_version() -> str:
    m = re.search(r"github\.com/yuin/gopher-lua\s+(v\S+)", (SRC / "go.mod").read_text())
    if not m:
        raise ArgoHealthBuildError(f"{SRC / 'go.mod'} does not require github.com/yuin/gopher-lua")
    return m.group(1)


def binary_path() -> Path:
    return build.cache_root() / "argocd-health" / gopher_lua_version() / "argocd-health"


def ensure(log: Any = None) -> Path:
    """Return the harness binary, building it first if it is missing or was built from other sources."""
    return go_harness.ensure(
        SRC,
        binary_path(),
        f"the Argo CD health harness (gopher-lua {gopher_lua_version()})",
        ArgoHealthBuildError,
        log,
        timeout=900,
    )


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
