"""Write tests/test_costs.json: seconds per test file, from pytest JUnit XML (setup + call + teardown per test).

The main pytest session's xdist scheduler (tests/conftest.py, ``CostScheduling``) hands the costliest files out first
so that the longest file does not start last. Refresh it after a run that moved the times a lot:

    .venv/bin/python -m hack.test_costs out/test/main.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COSTS = Path(__file__).resolve().parents[1] / "tests" / "test_costs.json"


def file_of(classname: str) -> str:
    """``tests.integration.test_x`` or ``tests.unit.test_x.TestClass`` -> ``tests/integration/test_x.py``."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = Path(*parts[:i]).with_suffix(".py")
        if (COSTS.parents[1] / path).exists():
            return path.as_posix()
    return "/".join(parts) + ".py"


def costs(paths: list[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for p in paths:
        for case in ET.parse(p).getroot().iter("testcase"):
            f = file_of(case.get("classname", ""))
            total[f] = total.get(f, 0.0) + float(case.get("time", "0"))
    return {f: round(t, 1) for f, t in sorted(total.items()) if t >= 0.5}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    table = costs(argv)
    COSTS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {COSTS} ({len(table)} files, {sum(table.values()):.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
