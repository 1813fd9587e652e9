"""Every call the operator makes to the Kubernetes API goes through this module.

Why one module: the renderer, estimator and status logic stay pure and testable without a cluster, and the
operator's footprint on the API server (server-side apply with one field manager, status patches only when
something changed, events on transitions) is visible in one place.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vlm_operator import fastjson

FIELD_MANAGER = "vlm-operator"
REQUEST_TIMEOUT = 60

#: apiVersion/kind -> URL plural, for the kinds the operator reads or writes.
_PLURALS = {
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Pod"): "pods",
    ("v1", "Node"): "nodes",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ReplicaSet"): "replicasets",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("vlmops.io/v1alpha1", "VLMDeployment"): "vlmdeployments",
    ("kopf.dev/v1", "ClusterKopfPeering"): "clusterkopfpeerings",
    ("kopf.dev/v1", "KopfPeering"): "kopfpeerings",
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): "validatingwebhookconfigurations",
    ("v1", "Namespace"): "namespaces",
    ("v1", "ResourceQuota"): "resourcequotas",
    ("vlmops.io/v1alpha1", "VLMPlatformProfile"): "vlmplatformprofiles",
    ("vlmops.io/v1alpha1", "VLMBatchJob"): "vlmbatchjobs",
    ("batch/v1", "Job"): "jobs",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
}


def new_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, otherwise ``kubeconfig`` or ``$KUBECONFIG``."""
    cfg: Any = config  # the kubernetes package's config loaders are untyped
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        cfg.load_incluster_config()
        return client.ApiClient()
    api: client.ApiClient = cfg.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    return api


def _selectors(field_selector: str | None, label_selector: str | None) -> list[tuple[str, str]]:
    """The query parameters of a LIST or watch that selects by field and/or label (none for an empty selector)."""
    query = [("fieldSelector", field_selector)] if field_selector else []
    if label_selector:
        query.append(("labelSelector", label_selector))
    return query


def arrived(raw: Any, size: int = 1 << 16) -> Iterator[bytes]:
    """The bytes of a streamed response as they arrive (at most ``size`` at a time), until it ends.

    A watch sends an event and then waits: ``stream(size)`` returns only once ``size`` bytes came when the response
    is not chunked (a proxy that passes the body through as it comes, with the connection's end as its end), so the
    events of a quiet watch would sit in the buffer. ``read1`` returns what is there (urllib3 2's ``HTTPResponse``,
    on http.client's ``read1``, which decodes chunked bodies too); without it, ``stream``."""
    read1 = getattr(raw, "read1", None)
    if read1 is None:
        yield from raw.stream(size, decode_content=True)
        return
    while True:
        chunk = read1(size)
        if not chunk:
            return
        yield chunk


def api_base(api_version: str) -> str:
    """The URL path of an API group version: ``/api/v1`` for the core group, ``/apis/<group>/<version>`` otherwise."""
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    path = api_base(api_version) + (f"/namespaces/{namespace}" if namespace else "")
    path += "/" + _PLURALS[(api_version, kind)]
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


@dataclass
class Kube:
    """A thin, typed wrapper over the REST API (JSON in, JSON out)."""

    api: client.ApiClient
    field_manager: str = FIELD_MANAGER

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        api: Any = self.api  # the generated client's low-level methods are loosely typed
        method, url, headers, payload, _ = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        return fastjson.loads(resp.data) if resp.data else None

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
        """One request by URL path, JSON in and out; ApiException for a status outside 2xx."""
        return self._call(method, path, body, query=query)

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call("GET", path)
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._get_or_none(_path(api_version, kind, namespace, name))

    def api_resources(self, group_version: str) -> set[str]:
        """The resource names (plurals) the API server serves for ``group_version``; empty when it serves none."""
        found = self._get_or_none(api_base(group_version))
        return {r["name"] for r in (found or {}).get("resources", [])}

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = _selectors(field_selector, label_selector)
        items: list[dict[str, Any]] = self._call("GET", _path(api_version, kind, namespace), query=query)["items"]
        return items

    def list_page(
        self,
        api_version: str,
        kind: str,
        field_selector: str | None,
        limit: int,
        cont: str | None,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """One page of a LIST, cluster-wide or in ``namespace`` (``limit`` items from ``cont``): the whole response,
        with ``metadata.resourceVersion`` and ``metadata.continue``."""
        query = [("limit", str(limit)), *_selectors(field_selector, label_selector)]
        if cont:
            query.append(("continue", cont))
        page: dict[str, Any] = self._call("GET", _path(api_version, kind, namespace), query=query)
        return page

    def watch(
        self,
        api_version: str,
        kind: str,
        field_selector: str | None,
        resource_version: str,
        timeout_s: int = 290,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream the watch events (``{"type": ..., "object": ...}``) of ``kind``, cluster-wide or in ``namespace``,
        from ``resource_version``, with bookmarks, until the server ends the watch (``timeout_s``)."""
        query = [
            ("watch", "1"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_s)),
            *_selectors(field_selector, label_selector),
        ]
        api: Any = self.api
        method, url, headers, _body, _ = api.param_serialize(
            method="GET",
            resource_path=_path(api_version, kind, namespace),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, _request_timeout=(REQUEST_TIMEOUT, timeout_s + 30))
        raw = resp.response
        try:
            if not 200 <= resp.status < 300:
                resp.read()
                raise ApiException(http_resp=resp)
            buf = b""
            for chunk in arrived(raw):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield fastjson.loads(line)
        finally:
            raw.release_conn()

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply ``obj`` with the operator's field manager (create or update in one request)."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", self.field_manager)] + ([("force", "true")] if force else [])
        out: dict[str, Any] = self._call(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", query=query
        )
        return out

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        content_type: str = "application/strategic-merge-patch+json",
    ) -> dict[str, Any]:
        """Patch an existing object (strategic merge by default: lists with a merge key merge item by item)."""
        out: dict[str, Any] = self._call(
            "PATCH", _path(api_version, kind, namespace, name), body=body, content_type=content_type
        )
        return out

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource (conditions are replaced as a whole list, so send all of them); returns
        the object as the API server stored it."""
        out: dict[str, Any] | None = self._call(
            "PATCH",
            _path(api_version, kind, namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return out

    def patch_status_strategic(
        self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any]
    ) -> None:
        """Strategic-merge-patch the status subresource: a pod's conditions merge by type, others are kept."""
        self._call(
            "PATCH",
            _path(api_version, kind, namespace, name, "status"),
            body=body,
            content_type="application/strategic-merge-patch+json",
        )

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event about ``involved`` (what ``kubectl describe`` shows)."""
        meta = involved["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.field_manager},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.field_manager,
        }
        self._call("POST", _path("v1", "Event", meta["namespace"]), body=ev)

    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The ``/scale`` subresource (an ``autoscaling/v1`` Scale: ``spec.replicas``, ``status``), or None."""
        return self._get_or_none(_path(api_version, kind, namespace, name, "scale"))

    def scale(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        replicas: int,
        *,
        resource_version: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Set ``spec.replicas`` through the ``/scale`` subresource, the path an HPA and KEDA use too.

        With ``resource_version`` the write is conditional: it fails with 409 Conflict when the object changed since
        that version (someone else scaled it), instead of overwriting their count. ``field_manager`` names the
        writer in ``managedFields`` (default: the operator's).
        """
        body: dict[str, Any] = {"spec": {"replicas": replicas}}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        out: dict[str, Any] = self._call(
            "PATCH",
            _path(api_version, kind, namespace, name, "scale"),
            body=body,
            content_type="application/merge-patch+json",
            query=[("fieldManager", field_manager or self.field_manager)],
        )
        return out


_shared: Kube | None = None


def shared() -> Kube:
    """The operator process's one client (handlers, the autoscaler daemon), made on first use from the
    environment's credentials (:func:`new_api_client`)."""
    global _shared
    if _shared is None:
        _shared = Kube(new_api_client())
    return _shared
