"""A cold dev-cluster build prints one line per component; Go's output goes to a log file a failure names.

The build runs fake components (shell commands in place of ``go build``) into a cache under a temporary directory, so
the real cache is never touched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vlm_operator.devcluster import build

CHATTY = "for i in $(seq 1 520); do echo go: downloading example.com/mod$i v1.0.$i; done"


def fake_binary(path: Path, version: str) -> None:
    path.write_text(f"#!/bin/sh\necho fake {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def component(name: str, version: str, fail: bool = False) -> build.Component:
    def run(work: Path, out: Path, runner: build._Runner) -> None:
        runner(["sh", "-c", CHATTY + ("; echo 'compile: undefined: Foo' ; exit 2" if fail else "")], work)
        fake_binary(out / name, version)

    return build.Component(name, (name,), version, run)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(build.shutil, "which", lambda _name: "/usr/bin/go")
    return tmp_path / "cache"


def test_a_cold_build_prints_one_line_per_component_and_keeps_gos_output(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "COMPONENTS", (component("alpha", "v1.2.3"), component("beta", "v4.5.6")))
    lines: list[str] = []
    out = build.ensure_binaries(log=lines.append)
    assert (out / "alpha").is_file() and (out / "beta").is_file()
    assert len(lines) == 3, lines  # one header, one line per component
    assert "build.log" in lines[0]
    assert lines[1].startswith("==> [1/2] alpha v1.2.3 (alpha) built in ") and lines[1].endswith("s")
    assert lines[2].startswith("==> [2/2] beta v4.5.6 (beta) built in ")
    log = (cache / "kube" / "work" / "build.log").read_text().splitlines()
    for name in ("alpha", "beta"):
        assert sum(line.startswith(f"[{name}]   go: downloading") for line in log) == 520
    # a warm cache: one line, nothing built (kwok's stages file is the one thing the fake components do not write)
    build.default_stages_file(out).write_text("")
    lines.clear()
    build.ensure_binaries(log=lines.append)
    assert len(lines) == 1 and "cached" in lines[0]


def test_a_failed_build_names_the_component_and_the_log_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "COMPONENTS", (component("alpha", "v1.2.3", fail=True),))
    lines: list[str] = []
    with pytest.raises(build.BuildError) as err:
        build.ensure_binaries(log=lines.append)
    msg = str(err.value)
    log_file = cache / "kube" / "work" / "build.log"
    assert "building alpha failed" in msg and str(log_file) in msg
    assert "compile: undefined: Foo" in msg  # the tail of Go's output
    assert len(lines) == 1  # only the header reached the console
    assert "compile: undefined: Foo" in log_file.read_text()


def test_progress_line_format() -> None:
    assert build.progress_line(2, 3, "kube", "v1.36.1", ("kubectl", "kube-apiserver"), 312.4) == (
        "==> [2/3] kube v1.36.1 (kubectl, kube-apiserver) built in 312s"
    )
