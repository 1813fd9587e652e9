"""Generate the ``VLMPlatformProfile`` CustomResourceDefinition (cluster-scoped) from :mod:`.profile`, with the same
structural-schema conversion as the VLMDeployment CRD (:func:`.crd.structural_schema`). A profile that does not match
the schema (or its CEL rules) is refused at its own admission by the API server."""

from __future__ import annotations

from typing import Any

from .crd import _clean_description, crd_document, structural_schema, to_yaml
from .deployment import GROUP, VERSION
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
    return crd_document(
        name=PROFILE_CRD_NAME,
        module="vlm_operator.api.profile_crd",
        scope="Cluster",
        kind=PROFILE_KIND,
        plural=PROFILE_PLURAL,
        singular=PROFILE_SINGULAR,
        short_names=tuple(PROFILE_SHORT_NAMES),
        version={
            "name": VERSION,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": root},
            "additionalPrinterColumns": PRINTER_COLUMNS,
        },
    )


def profile_crd_yaml() -> str:
    return to_yaml(profile_crd())
