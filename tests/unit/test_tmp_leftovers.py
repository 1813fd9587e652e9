"""The session's leftover check (tests/conftest.py) fails a run whose tests leave files or keys behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LEAKY = """
import tempfile, pathlib
def test_leaks_a_key_folder():
    d = pathlib.Path(tempfile.mkdtemp(prefix="vlm-webhook-"))
    (d / "tls.key").write_text("-----BEGIN RSA PRIVATE KEY-----\\nAAAA\\n-----END RSA PRIVATE KEY-----\\n")
"""

TIDY = """
import tempfile, pathlib
def test_cleans_up(tmp_path):
    (tmp_path / "tls.key").write_text("-----BEGIN RSA PRIVATE KEY-----\\n")  # pytest's tree is removed with it
    with tempfile.TemporaryDirectory() as d:
        (pathlib.Path(d) / "x").write_text("x")
"""


def run_pytest(test_file: Path, tmpdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VLM_TEST_TMPDIR_OWNER"}
    env["TMPDIR"] = str(tmpdir)  # the child's own parent directory: other xdist workers share this session's
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            *extra,
            str(test_file),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# make test runs the main session with xdist: the controller owns the private TMPDIR, its workers inherit it, and the
# controller's check at the end sees what any worker's test left
@pytest.mark.parametrize("xdist", [(), ("-n", "2", "--dist", "loadfile")], ids=["serial", "xdist"])
@pytest.mark.parametrize(("source", "fails"), [(LEAKY, True), (TIDY, False)])
def test_leftover_check(tmp_path: Path, source: str, fails: bool, xdist: tuple[str, ...]) -> None:
    test_file = tmp_path / "leak_probe.py"
    test_file.write_text(source)
    parent = tmp_path / "tmp"
    parent.mkdir()
    res = run_pytest(test_file, parent, *xdist)
    out = res.stdout + res.stderr
    if fails:
        assert res.returncode == 1, out
        assert "tests left files in the temporary directory" in out
        assert "vlm-webhook-" in out and "private key:" in out
    else:
        assert res.returncode == 0, out
        assert "tests left files" not in out
    # the child's private temporary directory is gone either way
    assert list(parent.iterdir()) == []
