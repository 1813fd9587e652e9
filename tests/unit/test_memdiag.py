"""The operator's memory settings and its opt-in allocation dump (vlm_operator/memdiag.py)."""

from __future__ import annotations

import os
import platform
import re
import signal
import tracemalloc
from pathlib import Path

import pytest

from vlm_operator import memdiag

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_arena_cap_defers_to_the_environment_and_can_be_turned_off() -> None:
    assert memdiag.limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is None  # glibc read it itself
    assert memdiag.limit_malloc_arenas({"VLM_OPERATOR_MALLOC_ARENAS": "0"}) is None


@pytest.mark.skipif(not GLIBC, reason="mallopt(M_ARENA_MAX) is glibc's")
def test_the_arena_cap_is_set_on_glibc() -> None:
    assert memdiag.limit_malloc_arenas({}) == memdiag.DEFAULT_ARENAS
    assert memdiag.limit_malloc_arenas({"VLM_OPERATOR_MALLOC_ARENAS": "3"}) == 3
    assert memdiag.limit_malloc_arenas({"VLM_OPERATOR_MALLOC_ARENAS": "many"}) == memdiag.DEFAULT_ARENAS


def test_the_dump_is_off_unless_asked_for() -> None:
    assert memdiag.install({}) is False
    assert "tracemalloc off" in memdiag.report() or tracemalloc.is_tracing()


def test_sigusr1_appends_rss_and_the_top_allocation_sites(tmp_path: Path) -> None:
    out = tmp_path / "dump.txt"
    old = signal.getsignal(signal.SIGUSR1)
    try:
        assert memdiag.install({"VLM_OPERATOR_MEMDUMP": str(out)}) is True
        held = [bytearray(1 << 20) for _ in range(4)]  # 4 MiB from one line: the top site
        os.kill(os.getpid(), signal.SIGUSR1)
        text = out.read_text()
        assert "VmRSS" in text and "traced by tracemalloc" in text
        top = text.splitlines()[2]
        assert "test_memdiag.py:" in top  # the bytearrays above
        assert float(top.split()[0]) >= 4.0
        del held
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, old)


def test_the_trimmer_is_off_by_default_and_on_when_asked_for() -> None:
    assert memdiag.start_trimmer({}) is None
    assert memdiag.start_trimmer({"VLM_OPERATOR_MALLOC_TRIM_S": "soon"}) is None
    if GLIBC:
        thread = memdiag.start_trimmer({"VLM_OPERATOR_MALLOC_TRIM_S": "3600"})
        assert thread is not None and thread.is_alive() and thread.daemon


def _allocate_for_the_chain() -> list[bytearray]:
    return [bytearray(1 << 20), bytearray(1 << 20), bytearray(1 << 20)]


def test_with_more_frames_the_dump_names_the_callers_of_the_top_sites(tmp_path: Path) -> None:
    out = tmp_path / "dump.txt"
    old = signal.getsignal(signal.SIGUSR1)
    try:
        assert memdiag.install({"VLM_OPERATOR_MEMDUMP": str(out), "VLM_OPERATOR_MEMDUMP_FRAMES": "4"}) is True
        held = _allocate_for_the_chain()
        os.kill(os.getpid(), signal.SIGUSR1)
        text = out.read_text()
        chains = text.split("allocation chains", 1)[1].splitlines()[1:]
        top = chains[0]
        assert float(top.split()[0]) >= 3.0
        # the allocating line first, then the test that called it
        first, caller = re.split(r"\s{2,}", top.strip())[-1].split(" < ")[:2]
        assert "test_memdiag.py:" in first and "test_memdiag.py:" in caller and first != caller
        del held
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, old)


def test_without_more_frames_there_are_no_chains(tmp_path: Path) -> None:
    out = tmp_path / "dump.txt"
    old = signal.getsignal(signal.SIGUSR1)
    try:
        assert memdiag.install({"VLM_OPERATOR_MEMDUMP": str(out)}) is True
        os.kill(os.getpid(), signal.SIGUSR1)
        assert "allocation chains" not in out.read_text()
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, old)


class _Holder:
    def __init__(self, body: dict[str, object]) -> None:
        self.body = body


def test_the_body_census_counts_live_bodies_by_kind_and_names_their_holder() -> None:
    kind = "CensusProbeKind"
    held = [
        _Holder({"apiVersion": "v1", "kind": kind, "metadata": {"name": f"p{i}", "managedFields": [{}]}})
        for i in range(3)
    ]
    line = next(x for x in memdiag.bodies().splitlines() if f" {kind}:" in x)
    count, managed = (int(v) for v in line.split()[:2])
    assert (count, managed) == (3, 3)
    assert "_Holder" in line  # the instance whose attribute dict holds the body
    del held
    assert f" {kind}:" not in memdiag.bodies()
