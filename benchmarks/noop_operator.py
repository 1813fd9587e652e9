"""A kopf operator that does nothing: the baseline that ``benchmarks/operator_scale.py`` measures vlm-operator against.

It registers the same kinds of handlers on the same objects as vlm-operator (create/update/resume and a timer on
VLMDeployments, events on the Deployments and pods the operator labels), so what it costs is what kopf's watching
and bookkeeping cost; whatever vlm-operator uses beyond it is the reconcile itself. Its kopf annotations and its
finalizer use their own prefix, so the two never touch each other's bookkeeping.
Run: ``python benchmarks/noop_operator.py``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"
MANAGED = {"app.kubernetes.io/managed-by": "vlm-operator"}
DRIFT_SECONDS = float(os.environ.get("VLM_OPERATOR_DRIFT_SECONDS", "60"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="noop.vlmops.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="noop.vlmops.io", key="last-handled")
    # its own finalizer too: vlm-operator removes kopf's default one where no handler of its own needs it, and the
    # two would take turns adding and removing the same finalizer
    settings.persistence.finalizer = "noop.vlmops.io/KopfFinalizerMarker"
    settings.watching.server_timeout = 300


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_vlmd(**_: Any) -> None:
    pass


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_SECONDS, initial_delay=DRIFT_SECONDS)
def resync(**_: Any) -> None:
    pass


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
def child(**_: Any) -> None:
    pass


if __name__ == "__main__":
    kopf.configure(verbose=False)
    kopf.run(clusterwide=True, standalone=True)
