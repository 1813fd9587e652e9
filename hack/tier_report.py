"""Print passed/failed/skipped per test tier from pytest's JUnit XML, and fail when a required tier ran nothing.

A tier is the folder under tests/ (unit, integration, e2e, processors, engine) or ``portable`` for the run against
an external cluster.
Skipped tests do not count as run.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REQUIRED = ("unit", "integration", "e2e", "processors", "engine", "portable")


def tier_of(xml_path: Path, classname: str) -> str:
    if xml_path.stem == "portable":
        return "portable"
    parts = classname.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tests" else "other"


def main(paths: list[str]) -> int:
    counts: dict[str, Counter[str]] = {}
    for p in map(Path, paths):
        if not p.exists():
            print(f"missing report {p}")
            continue
        for case in ET.parse(p).getroot().iter("testcase"):
            tier = tier_of(p, case.get("classname", ""))
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
            counts.setdefault(tier, Counter())[outcome] += 1
    print(f"{'tier':<12}{'passed':>8}{'failed':>8}{'skipped':>9}")
    rc = 0
    for tier in sorted(set(counts) | set(REQUIRED)):
        c = counts.get(tier, Counter())
        print(f"{tier:<12}{c['passed']:>8}{c['failed']:>8}{c['skipped']:>9}")
        if c["failed"]:
            rc = 1
        if tier in REQUIRED and c["passed"] == 0:
            print(f"required tier {tier!r} ran no test")
            rc = 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
