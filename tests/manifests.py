"""VLMDeployment manifests for every test tier: the one list of samples and the one builder.

``SAMPLES`` is every manifest under ``crds/samples/`` (sorted by file name); ``ADMITTED_SAMPLES`` leaves out the
``does-not-fit-*`` ones, which the fit check refuses on purpose. :func:`vlmd_manifest` builds a VLMDeployment from a
name and a spec, and :func:`sample` builds one from a sample with overrides; :func:`parsed_spec` is a spec as the API
model parses it. Nothing here talks to a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vlm_operator.api import VLMDeploymentSpec

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "crds" / "samples"
API_VERSION, KIND = "vlmops.io/v1alpha1", "VLMDeployment"
#: Every sample manifest, sorted by file name.
SAMPLES: tuple[Path, ...] = tuple(sorted(SAMPLES_DIR.glob("*.yaml")))
#: The samples a fit check admits (``does-not-fit-*`` are refused on purpose).
ADMITTED_SAMPLES: tuple[Path, ...] = tuple(p for p in SAMPLES if not p.stem.startswith("does-not-fit"))


def sample_path(name: str) -> Path:
    """The sample called ``name`` (``llava-1.5-7b-l4`` or ``llava-1.5-7b-l4.yaml``)."""
    path = SAMPLES_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if path not in SAMPLES:
        raise LookupError(f"no sample {name!r} in {SAMPLES_DIR}; there are {', '.join(p.stem for p in SAMPLES)}")
    return path


def vlmd_manifest(
    name: str, spec: Mapping[str, Any], *, namespace: str | None = None, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A VLMDeployment called ``name`` with (a copy of) ``spec``; the one builder of VLMDeployment manifests."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": copy.deepcopy(dict(spec))}


def sample(name: str, namespace: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The sample ``name`` as a manifest (its name, ``namespace``, its spec), with ``overrides`` set by dotted path:
    ``sample("llava-1.5-7b-l4", ns, **{"spec.scaling.replicas": 2})``."""
    doc: dict[str, Any] = yaml.safe_load(sample_path(name).read_text())
    return set_paths(vlmd_manifest(doc["metadata"]["name"], doc["spec"], namespace=namespace), overrides)


def set_paths(doc: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Set each dotted path of ``values`` in ``doc`` (making the maps on the way); returns ``doc``."""
    for path, value in values.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return doc


def parsed_spec(base: Mapping[str, Any], **values: Any) -> VLMDeploymentSpec:
    """A copy of the spec ``base`` with ``values`` set by dotted path, parsed by the API model."""
    return VLMDeploymentSpec.model_validate(set_paths(copy.deepcopy(dict(base)), values))
