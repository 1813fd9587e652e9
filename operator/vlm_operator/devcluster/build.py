"""Compile the local control plane's binaries from the Go module proxy, once, into a cache outside the repository.

Why from source: these machines have no Docker engine and no release downloads, only the Go module proxy. The
recipe (wrapper modules, ``replace`` lines for the k8s staging modules, a separate etcd wrapper) follows
``devcluster/pins.py``. A cold build takes minutes on two cores; it prints one line per component (name, version,
time taken) and keeps Go's own output in ``<cache>/kube/work/build.log``; a failure names the component, that file and
the tail of Go's output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlm_operator.devcluster import pins

KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL_BINARIES = ("etcd", "kwok", *KUBE_BINARIES)


class BuildError(RuntimeError):
    """A component could not be built; the message names it and carries Go's own explanation."""


def cache_root() -> Path:
    """``$VLM_CACHE_DIR`` or ``$XDG_CACHE_HOME/vlm-operator`` or ``~/.cache/vlm-operator``."""
    explicit = os.environ.get("VLM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vlm-operator"


def bin_dir() -> Path:
    return cache_root() / "kube" / pins.cache_key() / "bin"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-trimpath -buildvcs=false"})
    return env


Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class _Runner:
    """Runs one component's build commands. Go's output (about 500 lines on a cold cache) goes to ``log_file`` when one
    is given, not to the console; a failure names that file and quotes its last lines."""

    component: str
    log: Log
    log_file: Path | None = None

    def __call__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        command = " ".join(args)
        if self.log_file is None:
            self.log(f"[{self.component}] $ {command}")
        sink = self.log_file.open("a") if self.log_file is not None else None
        try:
            if sink is not None:
                sink.write(f"[{self.component}] $ {command}\n")
                sink.flush()
            proc = subprocess.Popen(
                list(args),
                cwd=cwd,
                env={**_go_env(), **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if sink is not None:
                    sink.write(f"[{self.component}]   {line.rstrip()}\n")
                else:
                    self.log(f"[{self.component}]   {line.rstrip()}")
            rc = proc.wait()
        finally:
            if sink is not None:
                sink.close()
        if rc != 0:
            tail = "\n".join(lines[-25:])
            where = f" (full log: {self.log_file})" if self.log_file is not None else ""
            raise BuildError(f"building {self.component} failed: `{command}` exited {rc}{where}:\n{tail}")
        return "\n".join(lines)


def progress_line(index: int, total: int, name: str, version: str, binaries: Sequence[str], seconds: float) -> str:
    """The one console line a cold build prints per component, when that component is done."""
    return f"==> [{index}/{total}] {name} {version} ({', '.join(binaries)}) built in {seconds:.0f}s"


def _version_ok(path: Path, expected: str) -> bool:
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    try:
        flag = ["version", "--client"] if path.name == "kubectl" else ["--version"]
        out = subprocess.run([str(path), *flag], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return expected.lstrip("v") in out


def _k8s_ldflags() -> str:
    major, minor = pins.KUBERNETES.lstrip("v").split(".")[:2]
    return (
        "-s -w"
        f" -X k8s.io/component-base/version.gitVersion={pins.KUBERNETES}"
        f" -X k8s.io/component-base/version.gitMajor={major}"
        f" -X k8s.io/component-base/version.gitMinor={minor}"
        " -X k8s.io/component-base/version.gitTreeState=clean"
    )


def _build_etcd(work: Path, out: Path, run: _Runner) -> None:
    # server/v3's go.mod carries replace directives, so `go install` refuses it; a wrapper module ignores them
    # (etcd-io/etcd#18501).
    w = work / "etcdw"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    run(["go", "mod", "init", "local/etcdw"], w)
    run(["go", "get", f"go.etcd.io/etcd/server/v3@{pins.ETCD}"], w)
    run(["go", "build", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"], w)


def _build_kwok(work: Path, out: Path, run: _Runner) -> None:
    # kwok's go.mod has no replace directives, so a plain `go install` works (kwok docs, installation.md).
    w = work / "kwokw"
    w.mkdir(parents=True, exist_ok=True)
    run(["go", "install", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{pins.KWOK}"], w, {"GOBIN": str(out)})
    # The kwok binary has no built-in stages; kwokctl writes these five defaults into its config
    # (kwok@v0.8.0:pkg/kwokctl/runtime/cluster.go). Keep kwok's own files beside the binary, not in the repo.
    info = json.loads(run(["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{pins.KWOK}"], w))
    stage_root = Path(info["Dir"]) / "kustomize" / "stage"
    docs = [(stage_root / rel).read_text().strip() for rel in DEFAULT_STAGE_FILES]
    default_stages_file(out).write_text("\n---\n".join(docs) + "\n")


DEFAULT_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def default_stages_file(out: Path | None = None) -> Path:
    return (out or bin_dir()).parent / "kwok-default-stages.yaml"


_STAGING_RE = re.compile(r"^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+(?:v0\.0\.0(?:\s|$)|=>\s*\./staging/)")


def staging_modules(gomod_text: str) -> list[str]:
    """Modules that k8s.io/kubernetes's go.mod pins to its own staging tree (each needs a replace in a wrapper)."""
    mods = {m.group(1) for line in gomod_text.splitlines() if (m := _STAGING_RE.match(line))}
    mods.discard("k8s.io/kubernetes")
    return sorted(mods)


def _build_kube(work: Path, out: Path, run: _Runner) -> None:
    # k8s.io/kubernetes requires its staging modules at v0.0.0 with ./staging replaces; a consumer must replace each
    # with its published v0.X.Y tag (kubernetes/kubernetes#79384).
    w = work / "k8sw"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    run(["go", "mod", "init", "local/k8sw"], w)
    info = json.loads(run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{pins.KUBERNETES}"], w))
    mods = staging_modules(Path(info["GoMod"]).read_text())
    if not mods:
        raise BuildError("building kube failed: found no staging modules in k8s.io/kubernetes's go.mod")
    sv = pins.staging_version()
    run(["go", "mod", "edit", *[f"-replace={m}={m}@{sv}" for m in mods]], w)
    pkgs = [f"k8s.io/kubernetes/cmd/{b}" for b in KUBE_BINARIES]
    run(["go", "get", *[f"{p}@{pins.KUBERNETES}" for p in pkgs]], w)
    run(["go", "build", "-ldflags", _k8s_ldflags(), "-o", str(out) + "/", *pkgs], w)


@dataclass(frozen=True)
class Component:
    name: str
    binaries: tuple[str, ...]
    version: str
    build: Callable[[Path, Path, _Runner], None]


COMPONENTS = (
    Component("etcd", ("etcd",), pins.ETCD, _build_etcd),
    Component("kwok", ("kwok",), pins.KWOK, _build_kwok),
    Component("kube", KUBE_BINARIES, pins.KUBERNETES, _build_kube),
)


def missing(out: Path | None = None) -> list[str]:
    """Names of components whose binaries are absent or report the wrong version."""
    out = out or bin_dir()
    todo = [c.name for c in COMPONENTS if not all(_version_ok(out / b, c.version) for b in c.binaries)]
    if "kwok" not in todo and not default_stages_file(out).is_file():
        todo.append("kwok")
    return todo


def ensure_binaries(log: Log = _stderr_log, force: bool = False) -> Path:
    """Build whatever is missing and return the directory holding all six binaries."""
    if shutil.which("go") is None:
        raise BuildError("building the dev cluster needs Go >= 1.26 on PATH; install it from https://go.dev/dl/")
    out = bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    todo = [c.name for c in COMPONENTS] if force else missing(out)
    if not todo:
        log(f"dev-cluster binaries are cached in {out}")
        return out
    work = cache_root() / "kube" / "work"
    work.mkdir(parents=True, exist_ok=True)
    build_log = work / "build.log"  # Go's own output, kept for a failure (the console gets one line per component)
    build_log.write_text("")
    comps = [c for c in COMPONENTS if c.name in todo]
    log(
        f"==> building {', '.join(c.name for c in comps)} from the Go module proxy into {out} "
        f"(a cold build takes minutes; Go's output: {build_log})"
    )
    for i, comp in enumerate(comps):
        t0 = time.monotonic()
        comp.build(work, out, _Runner(comp.name, log, build_log))
        bad = [b for b in comp.binaries if not _version_ok(out / b, comp.version)]
        if bad:
            raise BuildError(
                f"building {comp.name} finished but {', '.join(bad)} does not report {comp.version} "
                f"(full log: {build_log})"
            )
        log(progress_line(i + 1, len(comps), comp.name, comp.version, comp.binaries, time.monotonic() - t0))
    return out


def helm_path() -> Path:
    """Where the pinned Helm lives: ``<cache>/tools/helm-<version>/helm``."""
    return cache_root() / "tools" / f"helm-{pins.HELM}" / "helm"


def _helm_ok(path: Path) -> bool:
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    try:
        out = subprocess.run(
            [str(path), "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == pins.HELM


def ensure_helm(log: Log = _stderr_log, force: bool = False) -> Path:
    """Build Helm (``helm.sh/helm/v4/cmd/helm`` at :data:`pins.HELM`) from the Go module proxy unless cached.

    One progress line while Go works (a cold build is about 3 minutes on two cores); Go's own output is shown only
    when the build fails.
    """
    out = helm_path()
    if not force and _helm_ok(out):
        return out
    if shutil.which("go") is None:
        raise BuildError("building Helm needs Go >= 1.26 on PATH; install it from https://go.dev/dl/")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = cache_root() / "tools" / "work"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"==> building helm {pins.HELM} from the Go module proxy into {out.parent} (a cold build takes minutes)")
    # The version string is the one Helm's Makefile stamps (helm@v4.3.2:Makefile, LDFLAGS += -X .../version.version)
    ldflags = f"-s -w -X helm.sh/helm/v4/internal/version.version={pins.HELM}"
    build_log = work / "build.log"
    build_log.write_text("")
    quiet = _Runner("helm", log, build_log)  # Go's output goes to the file; a failure names it
    quiet(
        ["go", "install", "-ldflags", ldflags, f"helm.sh/helm/v4/cmd/helm@{pins.HELM}"],
        work,
        {"GOBIN": str(out.parent)},
    )
    if not _helm_ok(out):
        raise BuildError(f"building helm finished but {out} does not report {pins.HELM}")
    log(f"==> helm built in {time.monotonic() - t0:.0f}s")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    try:
        if "--helm" in args:
            print(ensure_helm(force="--force" in args))
            return 0
        out = ensure_binaries(force="--force" in args)
    except BuildError as exc:
        _stderr_log(f"error: {exc}")
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
