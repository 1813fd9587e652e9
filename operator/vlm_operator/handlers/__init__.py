"""kopf handlers: thin glue from watch events and admission requests to :mod:`vlm_operator.reconcile` and
:mod:`vlm_operator.admission`. No logic of their own.

Importing this module registers the handlers with kopf's default registry; ``vlmctl operator run`` does that.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from vlm_operator import (
    admission,
    coalesce,
    inventory,
    kube,
    persistence,
    profile_admission,
    readiness,
    reconcile,
    webhook_certs,
    webhook_config,
    webhook_server,
)
from vlm_operator.estimator import from_spec
from vlm_operator.render import objects

GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"
#: How often every object is reconciled even without events (drift repair); overridable for tests.
DRIFT_SECONDS = float(os.environ.get("VLM_OPERATOR_DRIFT_SECONDS", "60"))
#: How soon a create/update whose fit check gave up waiting for the Hub is checked again.
HUB_RECHECK_S = 3.0
WEBHOOK_NAME = "vlm-operator.vlmops.io"
#: The validating handler's id: kopf serves it at /<id> and names its webhook <id>.<WEBHOOK_NAME>.
VALIDATE_ID = "validate"
#: `vlmctl operator run --no-webhook` sets VLM_OPERATOR_WEBHOOK=0 before this module is imported.
WEBHOOK_ENABLED = os.environ.get("VLM_OPERATOR_WEBHOOK", "1") != "0"

MANAGED = {"app.kubernetes.io/managed-by": objects.MANAGED_BY}
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={objects.MANAGED_BY}"
#: kopf's bookkeeping for VLMDeployments, in this process's memory (see ``configure``)
PERSISTENCE = persistence.MemoryPersistence(prefix="vlmops.io")


def _client() -> kube.Kube:
    return kube.shared()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf would post a "Handler succeeded" event per run; those are writes with no value to users.
    settings.posting.level = logging.WARNING
    # kopf's own bookkeeping (handler progress, the last-handled spec) stays in memory, not in the object: two PATCHes
    # of every object per create or update saved; the reconcile is level-based, so a restart loses nothing
    # (:mod:`vlm_operator.persistence`). Status has one writer: the reconciler.
    PERSISTENCE.install(settings)
    settings.watching.server_timeout = 300
    # Children are watched with a server-side label selector: the API server streams only the operator's own pods,
    # ReplicaSets and Deployments, not every one in the cluster.
    for resource in (("", "v1", "pods"), ("apps", "v1", "replicasets"), ("apps", "v1", "deployments")):
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
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
    owner = webhook_config.mode()
    if owner == "operator":
        settings.admission.managed = WEBHOOK_NAME
    elif owner == "chart":  # the chart made the configuration; keep only its CA bundle current (patch by name)
        names = [webhook_config.webhook_name(VALIDATE_ID, WEBHOOK_NAME)]
        _client().patch(
            webhook_config.API_VERSION,
            webhook_config.KIND,
            None,
            WEBHOOK_NAME,
            webhook_config.ca_bundle_patch(names, Path(files.cafile).read_bytes()),
        )


def _by_owner(namespace: str | None, labels: kopf.Labels, body: kopf.Body) -> dict[tuple[str, str], dict[str, Any]]:
    owner = labels.get(objects.LABEL_OWNER)
    if not namespace or not owner:
        return {}
    return {(namespace, owner): json.loads(json.dumps(dict(body)))}  # a snapshot, not kopf's live view


@kopf.index("", "v1", "pods", labels=MANAGED)
def vlmd_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The watch-fed cache of each VLMDeployment's pods, keyed by (namespace, owner)."""
    return _by_owner(namespace, labels, body)


@kopf.index("apps", "v1", "replicasets", labels=MANAGED)
def vlmd_replicasets(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The watch-fed cache of each VLMDeployment's ReplicaSets (the rollback finds the last good template here)."""
    return _by_owner(namespace, labels, body)


def _reconcile(namespace: str, name: str, logger: kopf.Logger, kwargs: dict[str, Any], thorough: bool = True) -> None:
    """Reconcile with the children read from the indexes (kopf passes them to every handler by name)."""
    key = (namespace, name)
    pods, rsets = kwargs.get("vlmd_pods"), kwargs.get("vlmd_replicasets")
    reconcile.reconcile(
        _client(),
        namespace,
        name,
        logger,
        pods=list(pods.get(key, [])) if pods is not None else None,
        replica_sets=list(rsets.get(key, [])) if rsets is not None else None,
        thorough=thorough,
    )


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_vlmd(namespace: str | None, name: str | None, logger: kopf.Logger, **kwargs: Any) -> None:
    if namespace and name:
        _reconcile(namespace, name, logger, kwargs)
        if from_spec.hub_lookups_in_flight():
            # The fit check gave up waiting for the Hub (FitsGPU Unknown) while the lookup goes on: check again soon
            # rather than at the next drift resync.
            raise kopf.TemporaryError("a Hub lookup is still running; the fit check runs again", delay=HUB_RECHECK_S)


@kopf.on.event(GROUP, VERSION, PLURAL)
def vlmd_event(type: str | None, uid: str | None, namespace: str | None, name: str | None, **_: Any) -> None:
    """A deleted VLMDeployment: drop kopf's bookkeeping and the reconciler's memory of it."""
    if type == "DELETED" and uid:
        PERSISTENCE.forget(uid)
        if namespace and name:
            reconcile.forget_applied(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_SECONDS, initial_delay=DRIFT_SECONDS)
def resync_vlmd(namespace: str | None, name: str | None, logger: kopf.Logger, **kwargs: Any) -> None:
    if namespace and name:
        _reconcile(namespace, name, logger, kwargs)


#: How often pods behind the multimodal readiness gate are checked for a due probe; overridable for tests.
READINESS_SECONDS = float(os.environ.get("VLM_OPERATOR_READINESS_SECONDS", "5"))
_READINESS_BACKOFF: dict[tuple[str, str], readiness.Backoff] = {}


def _has_multimodal_probe(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("readiness") or {}).get("multimodalProbe"))


# ``when``: kopf starts this timer only on objects that ask for the probe; it used to wake every 5 s on every object
# (a thread hop each) just to return.
@kopf.timer(GROUP, VERSION, PLURAL, interval=READINESS_SECONDS, initial_delay=1, when=_has_multimodal_probe)
def multimodal_readiness(
    namespace: str | None, name: str | None, spec: kopf.Spec, logger: kopf.Logger, **kwargs: Any
) -> None:
    """``spec.readiness.multimodalProbe``: probe the pods that wait on the gate (:mod:`vlm_operator.readiness`)."""
    if not namespace or not name or not (spec.get("readiness") or {}).get("multimodalProbe"):
        return
    pods = kwargs.get("vlmd_pods")
    if pods is None:
        return
    backoff = _READINESS_BACKOFF.setdefault((namespace, name), readiness.Backoff())
    try:
        probed = readiness.run(_client(), list(pods.get((namespace, name), [])), backoff)
    except ApiException as exc:
        if exc.status != 403:
            raise
        logger.error(readiness.FORBIDDEN)
        return
    for pod, result in probed:
        logger.info(f"multimodal probe of pod {pod}: " + ("passed" if result.ok else f"failed: {result.error}"))


#: kopf's indexes (live views), kept from the latest child event for the coalesced reconciles
_INDEXES: dict[str, Any] = {}
_CHILD_LOG = logging.getLogger("vlm_operator.children")


def _reconcile_owner(key: Any) -> None:
    namespace, name = key
    _reconcile(namespace, name, _CHILD_LOG, _INDEXES, thorough=False)


#: How long child events of one VLMDeployment are gathered into one reconcile; overridable for tests.
CHILD_WINDOW_SECONDS = float(os.environ.get("VLM_OPERATOR_CHILD_WINDOW_SECONDS", "0.5"))
CHILDREN = coalesce.Coalescer(_reconcile_owner, window_s=CHILD_WINDOW_SECONDS)


@kopf.on.cleanup()
def stop_coalescing(**_: Any) -> None:
    CHILDREN.stop()


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
def child_changed(body: kopf.Body, **kwargs: Any) -> None:
    """A child's status moved (a pod became ready, crashed): recompute the owner's status, once per burst of events
    (:mod:`vlm_operator.coalesce`)."""
    owner = body.get("metadata", {}).get("labels", {}).get(objects.LABEL_OWNER)
    ns = body.get("metadata", {}).get("namespace")
    if not owner or not ns:
        return
    for index in ("vlmd_pods", "vlmd_replicasets"):
        if kwargs.get(index) is not None:
            _INDEXES[index] = kwargs[index]
    CHILDREN.ask((ns, owner))


def validate_vlmd(body: kopf.Body, warnings: list[str], old: Any = None, **_: Any) -> None:
    if old and (body.get("metadata", {}).get("deletionTimestamp") or old.get("spec") == body.get("spec")):
        # An update that leaves the spec as it was (finalizers, annotations, labels, a deletion under way) is never
        # refused: otherwise a spec that got in while the webhook was off, or that a newer policy refuses, could not
        # even have kopf's finalizer removed, and the object (and its namespace) could never be deleted.
        return
    try:
        vlmd = admission.parse(profile_admission.with_defaults(_client(), body))
    except ValidationError as exc:
        raise kopf.AdmissionError(f"invalid VLMDeployment: {admission.validation_message(exc)}", code=422) from None
    decision = admission.decide(vlmd.spec, inventory.SHARED.get(_client()))
    warnings.extend(w[:1000] for w in decision.warnings)
    # platform profiles (VLMPlatformProfile) and GPU quota: limits that check only what this change touches
    old_spec = None
    if old and old.get("spec"):
        try:
            old_spec = admission.parse(old).spec
        except ValidationError:
            old_spec = None
    meta = body.get("metadata", {})
    verdict = profile_admission.admission_verdict(
        _client(), meta.get("namespace", ""), vlmd.spec, old_spec, meta.get("name", "")
    )
    decision = admission.with_policy(
        decision, (str(r) for r in verdict.refusals), verdict.warnings, admission.REASON_PROFILE
    )
    warnings.extend(w[:1000] for w in verdict.warnings)
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
        id=VALIDATE_ID,
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        side_effects=False,
    )(validate_vlmd)
