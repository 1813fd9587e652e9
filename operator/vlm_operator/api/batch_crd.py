"""Generate the ``VLMBatchJob`` CustomResourceDefinition from :mod:`.batch`, with the same structural-schema conversion
as the VLMDeployment CRD (:func:`.crd.structural_schema`)."""

from __future__ import annotations

from typing import Any

import yaml

from .batch import (
    BATCH_KIND,
    BATCH_OBJECT_RULES,
    BATCH_PLURAL,
    BATCH_SHORT_NAMES,
    BATCH_SINGULAR,
    VLMBatchJobSpec,
    VLMBatchJobStatus,
)
from .crd import HEADER, _clean_description, _Dumper, structural_schema
from .deployment import CATEGORIES, GROUP, VERSION

BATCH_CRD_NAME = f"{BATCH_PLURAL}.{GROUP}"
BATCH_CRD_FILE = f"{GROUP}_{BATCH_PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Model repo id or path"},
    {"name": "Shards", "type": "integer", "jsonPath": ".spec.parallelism", "description": "Shards (engine pods)"},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Lines finished (results and errors) of the total, and the percentage",
    },
    {"name": "Failed", "type": "integer", "jsonPath": ".status.linesFailed", "description": "Lines in the error files"},
    {
        "name": "Complete",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Complete")].status',
        "description": "Whether every shard finished",
    },
    {
        "name": "ETA",
        "type": "integer",
        "jsonPath": ".status.estimatedSecondsLeft",
        "description": "Estimated seconds left",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def batch_crd() -> dict[str, Any]:
    spec = structural_schema(VLMBatchJobSpec)  # type: ignore[arg-type]
    status = structural_schema(VLMBatchJobStatus)  # type: ignore[arg-type]
    # kopf keeps its own bookkeeping under status (as for VLMDeployment, api/crd.py).
    status["x-kubernetes-preserve-unknown-fields"] = True
    root: dict[str, Any] = {
        "type": "object",
        "description": _clean_description(VLMBatchJobSpec.__doc__ or "").replace(
            "Desired state of a VLMBatchJob: a", "A"
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [r.to_schema() for r in BATCH_OBJECT_RULES],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": BATCH_CRD_NAME,
            "annotations": {"vlmops.io/generated-by": "vlmctl crds (vlm_operator.api.batch_crd)"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": BATCH_KIND,
                "listKind": f"{BATCH_KIND}List",
                "plural": BATCH_PLURAL,
                "singular": BATCH_SINGULAR,
                "shortNames": list(BATCH_SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def batch_crd_yaml() -> str:
    body = yaml.dump(batch_crd(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + "---\n" + body
