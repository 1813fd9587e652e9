"""Generate the ``VLMPlatformProfile`` CustomResourceDefinition (cluster-scoped) from :mod:`.profile`, with the same
structural-schema conversion as the VLMDeployment CRD (:func:`.crd.structural_schema`). A profile that does not match
the schema (or its CEL rules) is refused at its own admission by the API server."""

from __future__ import annotations

from typing import Any

import yaml

from .crd import HEADER, _clean_description, _Dumper, structural_schema
from .deployment import CATEGORIES, GROUP, VERSION
from .profile import PROFILE_KIND, PROFILE_PLURAL, PROFILE_SHORT_NAMES, PROFILE_SINGULAR, VLMPlatformProfileSpec

PROFILE_CRD_NAME = f"{PROFILE_PLURAL}.{GROUP}"
PROFILE_CRD_FILE = f"{GROUP}_{PROFILE_PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
    {"name": "GPUs/Replica", "type": "integer", "jsonPath": ".spec.maxGPUsPerReplica"},
    {"name": "GPUs/Deployment", "type": "integer", "jsonPath": ".spec.maxGPUsPerDeployment"},
    {"name": "FitCheck", "type": "string", "jsonPath": ".spec.requiredFitCheck"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def profile_crd() -> dict[str, Any]:
    spec = structural_schema(VLMPlatformProfileSpec)  # type: ignore[arg-type]
    root: dict[str, Any] = {
        "type": "object",
        "description": _clean_description(VLMPlatformProfileSpec.__doc__ or ""),
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": PROFILE_CRD_NAME,
            "annotations": {"vlmops.io/generated-by": "vlmctl crds (vlm_operator.api.profile_crd)"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": PROFILE_KIND,
                "listKind": f"{PROFILE_KIND}List",
                "plural": PROFILE_PLURAL,
                "singular": PROFILE_SINGULAR,
                "shortNames": list(PROFILE_SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def profile_crd_yaml() -> str:
    body = yaml.dump(profile_crd(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + "---\n" + body
