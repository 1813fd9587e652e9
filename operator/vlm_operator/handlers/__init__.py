"""kopf handlers: thin glue from watch events and admission requests to :mod:`vlm_operator.reconcile` and
:mod:`vlm_operator.admission`. No logic of their own.

Importing this module registers the handlers with kopf's default registry; ``vlmctl operator run`` does that.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from pydantic import ValidationError

from vlm_operator import admission, inventory, kube, reconcile, webhook_certs, webhook_server
from vlm_operator.render import objects

GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"
#: How often every object is reconciled even without events (drift repair); overridable for tests.
DRIFT_SECONDS = float(os.environ.get("VLM_OPERATOR_DRIFT_SECONDS", "60"))
WEBHOOK_NAME = "vlm-operator.vlmops.io"
#: `vlmctl operator run --no-webhook` sets VLM_OPERATOR_WEBHOOK=0 before this module is imported.
WEBHOOK_ENABLED = os.environ.get("VLM_OPERATOR_WEBHOOK", "1") != "0"

_kube: kube.Kube | None = None


def _client() -> kube.Kube:
    global _kube
    if _kube is None:
        _kube = kube.Kube(kube.new_api_client())
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf would post a "Handler succeeded" event per run; those are writes with no value to users.
    settings.posting.level = logging.WARNING
    # kopf's own progress bookkeeping goes to annotations, not status (status has one writer: the reconciler).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="vlmops.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="vlmops.io", key="last-handled")
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    if not WEBHOOK_ENABLED:
        return
    files = webhook_certs.serving_files(os.environ.get("VLM_OPERATOR_WEBHOOK_HOST", "127.0.0.1"))
    server_args: dict[str, Any] = {
        "addr": os.environ.get("VLM_OPERATOR_WEBHOOK_ADDR", "127.0.0.1"),
        "port": int(os.environ.get("VLM_OPERATOR_WEBHOOK_PORT", "9443")),
        "host": os.environ.get("VLM_OPERATOR_WEBHOOK_HOST", "127.0.0.1"),
        "certfile": files.certfile,
        "pkeyfile": files.keyfile,
        "cafile": files.cafile,
    }
    service = os.environ.get(webhook_server.SERVICE_ENV)
    if service:  # in a cluster: the API server reaches the webhook through its Service, not a URL
        settings.admission.server = webhook_server.ServiceWebhookServer(
            service=webhook_server.ServiceRef.parse(service), **server_args
        )
    elif os.environ.get(webhook_server.URL_ENV):  # replicas behind a load balancer, one shared certificate
        settings.admission.server = webhook_server.AdvertisedWebhookServer(
            advertised=os.environ[webhook_server.URL_ENV], **server_args
        )
    else:
        settings.admission.server = kopf.WebhookServer(**server_args)
    settings.admission.managed = WEBHOOK_NAME


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_vlmd(namespace: str | None, name: str | None, logger: kopf.Logger, **_: Any) -> None:
    if namespace and name:
        reconcile.reconcile(_client(), namespace, name, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_SECONDS, initial_delay=DRIFT_SECONDS)
def resync_vlmd(namespace: str | None, name: str | None, logger: kopf.Logger, **_: Any) -> None:
    if namespace and name:
        reconcile.reconcile(_client(), namespace, name, logger)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": objects.MANAGED_BY})
@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/managed-by": objects.MANAGED_BY})
def child_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """A child's status moved (a pod became ready, crashed): recompute the owner's status."""
    owner = body.get("metadata", {}).get("labels", {}).get(objects.LABEL_OWNER)
    ns = body.get("metadata", {}).get("namespace")
    if not owner or not ns:
        return
    reconcile.reconcile(_client(), ns, owner, logger)


def validate_vlmd(body: kopf.Body, warnings: list[str], **_: Any) -> None:
    try:
        vlmd = admission.parse(body)
    except ValidationError as exc:
        raise kopf.AdmissionError(f"invalid VLMDeployment: {admission.validation_message(exc)}", code=422) from None
    decision = admission.decide(vlmd.spec, inventory.SHARED.get(_client()))
    warnings.extend(w[:1000] for w in decision.warnings)
    if not decision.allowed:
        raise kopf.AdmissionError(decision.message, code=422)


from vlm_operator.handlers import autoscale  # noqa: E402,F401  (registers the Internal-mode autoscaler daemon)

# failurePolicy Fail (ignore_failures=False) and sideEffects None (side_effects=False) are set explicitly; kopf
# hard-codes timeoutSeconds 30 in the configuration it manages (kopf/_core/engines/admission.py, build_webhooks).
# With the webhook off the handler is not registered at all: kopf refuses to start with admission handlers and no
# server to serve them.
if WEBHOOK_ENABLED:
    kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        id="validate",
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        side_effects=False,
    )(validate_vlmd)
