"""Memory diagnostics for a running operator, off unless asked for (``VLM_OPERATOR_MEMDUMP=<path>``).

With the variable set the operator starts :mod:`tracemalloc` (``VLM_OPERATOR_MEMDUMP_FRAMES`` frames per allocation,
default 1: the cheapest) and, on SIGUSR1, appends to ``<path>``: the process's RSS (``/proc/self/status``), the bytes
tracemalloc sees Python hold, the top allocation sites by size (with ``VLM_OPERATOR_MEMDUMP_FRAMES`` > 1 also the
whole chains of callers) and the Kubernetes bodies alive by kind and holder (``VLM_OPERATOR_MEMDUMP_BODIES=0``: not
those). RSS far above the traced bytes is memory that the
C allocator keeps (glibc's per-thread arenas), not Python objects. ``benchmarks/operator_scale.py`` sends the signal
after its create and rollout phases when ``VLM_BENCH_MEMDUMP`` is set.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

TOP = 40
#: Allocation chains (whole tracebacks) in a dump, when more than one frame per allocation is traced
CHAINS = 15


def rss_kib(field: str = "VmRSS") -> int:
    """``field`` of ``/proc/self/status`` in KiB (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def report(top: int = TOP) -> str:
    """RSS, the traced total and the ``top`` allocation sites (by line) as text."""
    lines = [
        f"== {time.strftime('%H:%M:%S')} VmRSS {rss_kib() / 1024:.1f} MiB, VmHWM {rss_kib('VmHWM') / 1024:.1f} MiB"
    ]
    if not tracemalloc.is_tracing():
        return lines[0] + " (tracemalloc off)\n"
    snap = tracemalloc.take_snapshot()
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    lines.append(f"traced by tracemalloc: {total / 2**20:.1f} MiB in {sum(s.count for s in stats)} blocks")
    for s in stats[:top]:
        frame = s.traceback[0]
        lines.append(f"{s.size / 2**20:9.2f} MiB {s.count:9d}  {frame.filename}:{frame.lineno}")
    if tracemalloc.get_traceback_limit() > 1:  # VLM_OPERATOR_MEMDUMP_FRAMES > 1: who called the top sites
        lines.append(f"top {CHAINS} allocation chains (the allocating line first, then its callers):")
        for s in snap.statistics("traceback")[:CHAINS]:
            frames = [f"{_short_path(f.filename)}:{f.lineno}" for f in reversed(s.traceback)]
            lines.append(f"{s.size / 2**20:9.2f} MiB {s.count:9d}  " + " < ".join(frames))
    return "\n".join(lines) + "\n"


def bodies(samples: int = 2) -> str:
    """The Kubernetes objects (dicts with ``apiVersion``, ``kind`` and ``metadata``) alive in the process, by kind,
    and what holds a few of each: the types of their referrers, two levels up. Walks every object the garbage
    collector tracks (seconds at a million objects); for a diagnostic dump only."""
    picked = _census(samples)  # in a function of its own: its lists of every body are gone when it returns
    lines = ["live Kubernetes bodies by kind (count, with managedFields, held by):"]
    for kind, count, managed, sample in picked:
        holders = sorted({_holder(o, sample) for o in sample})
        lines.append(f"{count:9d} {managed:9d}  {kind}: " + "; ".join(holders))
    return "\n".join(lines) + "\n"


def _census(samples: int) -> list[tuple[str, int, int, list[dict[str, Any]]]]:
    """(kind, count, how many with managedFields, the first ``samples``) for each kind of body alive, most first."""
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in gc.get_objects():
        if type(obj) is dict and "metadata" in obj and "kind" in obj and "apiVersion" in obj:
            found.setdefault(str(obj.get("kind")), []).append(obj)
    return [
        (kind, len(objs), sum(1 for o in objs if _managed(o)), objs[:samples])
        for kind, objs in sorted(found.items(), key=lambda kv: -len(kv[1]))
    ]


def _managed(body: dict[str, Any]) -> bool:
    meta = body.get("metadata")
    return isinstance(meta, dict) and bool(meta.get("managedFields"))


def _holder(obj: object, ignore: object) -> str:
    """The types of what refers to ``obj`` (a dict or list referrer: with the types of what refers to it)."""
    here = gc.get_referrers(obj)
    names = []
    for ref in here:
        if ref is ignore or isinstance(ref, FrameType):
            continue
        name = type(ref).__qualname__
        if type(ref) in (dict, list):  # an instance's attributes or a container: one level more
            up = {type(r).__qualname__ for r in gc.get_referrers(ref) if r is not here and not isinstance(r, FrameType)}
            name += "<" + ",".join(sorted(up)[:4]) + ">"
        names.append(name)
    return " | ".join(sorted(set(names))[:4]) or "nothing but cycles"


def _short_path(filename: str) -> str:
    """``filename`` from its package on (``kopf/_cogs/clients/watching.py``), not the venv's path."""
    for marker in ("/site-packages/", "/operator/", "/lib/python3"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + len(marker) :]
    return filename


def install(env: dict[str, str] | None = None) -> bool:
    """Start tracing and install the SIGUSR1 dump when ``VLM_OPERATOR_MEMDUMP`` names a file; False otherwise."""
    env = dict(os.environ) if env is None else env
    path = env.get("VLM_OPERATOR_MEMDUMP")
    if not path:
        return False
    tracemalloc.start(int(env.get("VLM_OPERATOR_MEMDUMP_FRAMES") or 1))

    def dump(_signum: int, _frame: FrameType | None) -> None:
        text = report()
        if env.get("VLM_OPERATOR_MEMDUMP_BODIES", "1") != "0":
            text += bodies()
        with open(path, "a") as f:
            f.write(text)

    signal.signal(signal.SIGUSR1, dump)
    return True


#: glibc's ``mallopt`` parameter for the arena limit (malloc.h: ``#define M_ARENA_MAX -8``)
M_ARENA_MAX = -8
#: malloc arenas the operator allows itself (``VLM_OPERATOR_MALLOC_ARENAS``; 0 leaves glibc's default, 8 per core)
DEFAULT_ARENAS = 2


def limit_malloc_arenas(env: dict[str, str] | None = None) -> int | None:
    """Cap glibc's malloc arenas before the operator starts its threads; the cap set, or None where it was not.

    glibc gives each thread that allocates while another holds the main arena an arena of its own (up to 8 per core),
    and an arena returns memory to the system only from its top. The operator's threads (kopf's executor, the
    coalesced reconciles, the drift resync, the admission threads, the cluster watches) each decode large JSON
    responses; freed, those blocks stayed in per-thread arenas as RSS that Python no longer used (docs/performance.md,
    "RSS"). ``MALLOC_ARENA_MAX`` in the environment (read by glibc itself) wins over this."""
    env = dict(os.environ) if env is None else env
    if env.get("MALLOC_ARENA_MAX"):
        return None
    raw = env.get("VLM_OPERATOR_MALLOC_ARENAS")
    arenas = int(raw) if raw and raw.strip().isdigit() else DEFAULT_ARENAS
    if arenas <= 0:
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return None
    return arenas if mallopt(M_ARENA_MAX, arenas) == 1 else None


def start_trimmer(env: dict[str, str] | None = None) -> threading.Thread | None:
    """With ``VLM_OPERATOR_MALLOC_TRIM_S=<seconds>``, a daemon thread that calls glibc's ``malloc_trim(0)`` every so
    often: it hands the free pages of every arena back to the system. Off by default; None where it does not run."""
    env = dict(os.environ) if env is None else env
    raw = env.get("VLM_OPERATOR_MALLOC_TRIM_S") or ""
    try:
        interval = float(raw) if raw else 0.0
    except ValueError:
        interval = 0.0
    if interval <= 0:
        return None
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None

    def loop() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
