"""Build a small Go program kept under ``hack/<name>/`` (go.mod, go.sum, main.go) into the cache, once.

The kstatus probe and the Argo CD health harness are both built this way: from the Go module proxy, with the
toolchain on PATH, into ``<cache_root>/<name>/<pinned version>/<name>``, and rebuilt only when the binary is missing
or was built from other sources (a sha256 of the three files sits beside it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SOURCES = ("go.mod", "go.sum", "main.go")


def source_digest(src: Path) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
    return h.hexdigest()


def ensure(
    src: Path,
    out: Path,
    what: str,
    error: type[RuntimeError],
    log: Callable[[str], None] | None = None,
    timeout: float = 1800,
) -> Path:
    """Return ``out``, building ``src`` into it first when it is missing or stale; ``error`` carries Go's output."""
    stamp = out.with_name(f"{out.name}.src-sha256")
    digest = source_digest(src)
    if out.is_file() and os.access(out, os.X_OK) and stamp.is_file() and stamp.read_text().strip() == digest:
        return out
    if shutil.which("go") is None:
        raise error(f"building {what} needs Go on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(f"building {what} into {out}")
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-trimpath -buildvcs=false -mod=readonly",
    }
    tmp = out.with_name(f"{out.name}.tmp")
    res = subprocess.run(
        ["go", "build", "-ldflags", "-s -w", "-o", str(tmp), "."],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise error(f"go build of hack/{src.name} exited {res.returncode}:\n{tail}")
    tmp.replace(out)
    stamp.write_text(digest + "\n")
    return out
