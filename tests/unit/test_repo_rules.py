"""Rules of the repository itself: the pure layers import no Kubernetes client, and the repository stands alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "vlm_operator"
#: Layers that must stay pure: functions of their inputs (and a clock), testable without a cluster.
PURE = ("api", "models", "estimator", "render", "releases")
CLUSTER_CLIENTS = ("kopf", "kubernetes")


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_import_no_cluster_client_directly(layer: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & set(CLUSTER_CLIENTS)) for p in (PACKAGE / layer).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pure_layers_load_no_cluster_client_even_transitively() -> None:
    modules = ", ".join(f"vlm_operator.{layer}" for layer in PURE)
    code = (
        f"import sys, importlib\nfor m in [{', '.join(repr(f'vlm_operator.{x}') for x in PURE)}]:\n"
        "    importlib.import_module(m)\n"
        "import vlm_operator.estimator.from_spec, vlm_operator.render.args, vlm_operator.render.objects\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {CLUSTER_CLIENTS!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {modules} loaded {out.stdout.strip()}"


def test_the_repository_does_not_cite_notes_a_clone_lacks() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    needles = ("shared/design", "vllm-facts.md", "local-cluster.md", "../shared/")
    hits = []
    for rel in tracked:
        path = ROOT / rel
        if rel == "tests/unit/test_repo_rules.py" or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{rel}: {n}" for n in needles if n in text]
    assert hits == []


def _test_module_imports(path: Path) -> list[str]:
    """The test modules (``test_*``) that ``path`` imports, absolute or relative."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [n for n in names if any(part.startswith("test_") for part in n.split("."))]
    return found


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and helpers live in helper modules and conftest.py (tests/manifests.py, tests/cel_cases.py,
    tests/integration/helpers.py, ...), never in a test module another one imports."""
    offenders = {
        str(p.relative_to(ROOT)): imported
        for p in sorted((ROOT / "tests").rglob("*.py"))
        if (imported := _test_module_imports(p))
    }
    assert offenders == {}


def test_the_rule_sees_an_import_of_a_test_module(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from tests.integration.test_rbac import DENIED\nfrom .test_api_models import BASE\nimport os\n")
    assert _test_module_imports(probe) == [
        "tests.integration.test_rbac",
        "tests.integration.test_rbac.DENIED",
        "test_api_models",  # ``from .test_api_models``: ast gives the module without the dots
        "test_api_models.BASE",
    ]
