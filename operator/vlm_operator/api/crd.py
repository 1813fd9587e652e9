"""Generate the VLMDeployment CustomResourceDefinition from the pydantic models.

The models are the one schema source: this module turns their JSON schema into a Kubernetes *structural* schema
(no ``$ref``, no ``anyOf`` unions, OpenAPI v3.0 numeric bounds), keeps every docstring as a ``description`` so that
``kubectl explain`` documents each level, attaches each model's CEL rules, and adds printer columns and the
``status`` and ``scale`` subresources. ``vlmctl crds --write`` writes the result to ``crds/`` and the Helm chart; a
unit test fails when the committed file differs from a fresh generation.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from ._base import CRD_DEFAULT
from .deployment import (
    CATEGORIES,
    GROUP,
    KIND,
    OBJECT_RULES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    VLMDeploymentSpec,
)
from .status import VLMDeploymentStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = f"{GROUP}_{PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Model repo id or path"},
    {"name": "GPU", "type": "string", "jsonPath": ".status.gpu", "description": "GPUs of one replica"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.scaling.replicas", "description": "Desired replicas"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready replicas"},
    {
        "name": "Fits",
        "type": "string",
        "jsonPath": ".status.estimate.verdict",
        "description": "The fit check's verdict: Fits, Tight, DoesNotFit or Unknown",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

# Keys of pydantic's JSON schema that a structural schema either forbids or does not need.
# propertyNames (dict key constraints) has no Kubernetes equivalent; the Python model still checks the keys.
_DROP_KEYS = {"title", "default", "$defs", "additionalProperties", "propertyNames", CRD_DEFAULT}


class SchemaError(ValueError):
    """The models produced something a structural schema cannot express."""


def _clean_description(text: str) -> str:
    """Docstring -> description: RST literals to backticks, lines of a paragraph joined, paragraphs kept."""
    text = text.replace("``", "`")
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(p for p in paragraphs if p)


def _default_note(value: Any) -> str | None:
    if value is None or value == {} or value == [] or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Rewrite one pydantic JSON-schema node (and its children) into a structural-schema node."""
    node = dict(node)
    # Optional[X] is anyOf [X, null]: keep X, merged with the field-level keys (description, default).
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions are not allowed in a structural schema")
        node = {**options[0], **node}
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        field_desc = node.get("description")
        node = {**copy.deepcopy(target), **node}
        if field_desc is None and "description" in target:
            node["description"] = target["description"]
    for bad in ("oneOf", "allOf", "not"):
        if bad in node:
            raise SchemaError(f"{path}: {bad} is not allowed in a structural schema")

    out: dict[str, Any] = {}
    if "description" in node:
        desc = _clean_description(node["description"])
        note = _default_note(node.get("default"))
        if note is not None and "Default:" not in desc:
            desc = f"{desc} Default: `{note}`."
        out["description"] = desc
    if "const" in node:
        out["enum"] = [node["const"]]
    typ = node.get("type")
    if typ is None and "enum" in node:
        values = node["enum"]
        typ = "integer" if all(isinstance(v, int) for v in values) else "string"
    if typ is not None:
        out["type"] = typ

    for key, value in node.items():
        if key in _DROP_KEYS or key in ("description", "type", "const", "properties", "items", "required"):
            continue
        if key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        else:
            out[key] = value
    if CRD_DEFAULT in node:
        out["default"] = node[CRD_DEFAULT]

    if typ == "object":
        props = node.get("properties")
        addl = node.get("additionalProperties")
        if props:
            out["properties"] = {k: _structural(v, defs, f"{path}.{k}") for k, v in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(addl, dict) and addl:
            out["additionalProperties"] = _structural(addl, defs, f"{path}[*]")
        elif not out.get("x-kubernetes-preserve-unknown-fields"):
            # An open object without properties (dict[str, Any]) keeps whatever the user writes.
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif typ == "array":
        items = node.get("items")
        if not isinstance(items, dict):
            raise SchemaError(f"{path}: an array needs an items schema")
        out["items"] = _structural(items, defs, f"{path}[]")
    elif typ is None and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaError(f"{path}: no type")
    return out


def structural_schema(model: type[VLMDeploymentSpec] | type[VLMDeploymentStatus]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one API model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _structural(raw, defs, model.__name__)


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    spec = structural_schema(VLMDeploymentSpec)
    status = structural_schema(VLMDeploymentStatus)
    # Typed for `kubectl explain`, but unknown fields are kept: kopf writes its own bookkeeping under status, and
    # a pruned field would make it report "Patching failed with inconsistencies" and retry forever.
    status["x-kubernetes-preserve-unknown-fields"] = True
    root: dict[str, Any] = {
        "type": "object",
        "description": _clean_description(VLMDeploymentSpec.__doc__ or "").replace(
            "Desired state of a VLMDeployment: a", "A"
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [r.to_schema() for r in OBJECT_RULES],
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.scaling.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        "additionalPrinterColumns": PRINTER_COLUMNS,
    }
    return crd_document(
        name=CRD_NAME,
        module="vlm_operator.api.crd",
        scope="Namespaced",
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        version=version,
    )


def crd_document(
    *,
    name: str,
    module: str,
    scope: str,
    kind: str,
    plural: str,
    singular: str,
    short_names: tuple[str, ...],
    version: dict[str, Any],
) -> dict[str, Any]:
    """A CustomResourceDefinition of the vlmops.io group with one served, stored version (both of our CRDs)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": name,
            "annotations": {"vlmops.io/generated-by": f"vlmctl crds ({module})"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": list(short_names),
                "categories": list(CATEGORIES),
            },
            "versions": [version],
        },
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)

HEADER = "# Generated by `vlmctl crds --write` from vlm_operator/api. Do not edit by hand.\n"


def crd_yaml() -> str:
    """The CRD as the YAML committed in ``crds/``."""
    return to_yaml(crd())


def to_yaml(doc: dict[str, Any]) -> str:
    """A generated CRD as committed: the header, then block-style YAML in the dict's order."""
    return HEADER + "---\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
