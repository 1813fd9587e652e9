"""`vlmctl crds`: print, write or check the VLMDeployment CRD generated from the API models.

``crds/`` and the Helm chart's copy are generated files; this command is the only thing that writes them (``make
crds``), and ``--check`` is what CI runs to catch a model change without a regenerated CRD. ``docs/api.md``, the
field-to-flag reference, is generated from the same models and written alongside.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Repository root when running from a source checkout (operator/vlm_operator/cli/crds.py -> ../../..).
DEFAULT_ROOT = Path(__file__).resolve().parents[3]


def generated_files(root: Path) -> dict[Path, str]:
    """Every file this command owns, relative path -> content."""
    from vlm_operator.api.batch_crd import BATCH_CRD_FILE, batch_crd_yaml
    from vlm_operator.api.crd import CRD_FILE, crd_yaml
    from vlm_operator.api.docs import api_markdown
    from vlm_operator.api.profile_crd import PROFILE_CRD_FILE, profile_crd_yaml

    text, profiles = crd_yaml(), profile_crd_yaml()
    return {
        Path("crds") / CRD_FILE: text,
        Path("charts/vlm-operator/crds") / CRD_FILE: text,
        Path("crds") / PROFILE_CRD_FILE: profiles,
        Path("charts/vlm-operator/crds") / PROFILE_CRD_FILE: profiles,
        Path("crds") / BATCH_CRD_FILE: batch_crd_yaml(),
        Path("charts/vlm-operator/crds") / BATCH_CRD_FILE: batch_crd_yaml(),
        Path("docs/api.md"): api_markdown(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--write",
        action="store_true",
        help="write crds/ (VLMDeployment, VLMPlatformProfile, VLMBatchJob), the Helm chart copies and docs/api.md",
    )
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from a fresh generation")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from vlm_operator.api.crd import crd_yaml

    root: Path = args.root
    if not (args.write or args.check):
        sys.stdout.write(crd_yaml())
        return 0
    stale: list[Path] = []
    for rel, content in generated_files(root).items():
        path = root / rel
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        sys.stdout.write(f"wrote {rel}\n")
    if stale:
        sys.stderr.write("out of date (run `vlmctl crds --write`): " + ", ".join(str(p) for p in stale) + "\n")
        return 1
    return 0
