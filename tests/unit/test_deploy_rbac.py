"""deploy/ and the chart agree with the RBAC table, and the table covers every API call the operator makes.

No Helm binary here: the template-free manifests are parsed and checked; the chart's generated ClusterRole is compared
with a fresh rendering. The coverage check reads the operator's source: every ``Kube`` call with a literal (or
module-constant) apiVersion and kind, every kind the renderer applies, and every resource a kopf handler watches.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import importlib.util
import re
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import SAMPLES
from vlm_operator import kube, rbac, webhook_server

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "operator" / "vlm_operator"


def _gen_rbac() -> Any:
    spec = importlib.util.spec_from_file_location("gen_rbac", ROOT / "hack" / "gen_rbac.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def deploy_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


# --- the manifests ---------------------------------------------------------------------------------------------


def test_every_deploy_manifest_parses_with_the_expected_objects() -> None:
    docs = deploy_docs()
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
            "Service",
            "Deployment",
        ]
    )
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]


def test_deploy_wires_identity_service_and_webhook_together() -> None:
    docs = deploy_docs()
    ns = by_kind(docs, "Namespace")["metadata"]["name"]
    sa = by_kind(docs, "ServiceAccount")
    role, binding = by_kind(docs, "ClusterRole"), by_kind(docs, "ClusterRoleBinding")
    svc, dep = by_kind(docs, "Service"), by_kind(docs, "Deployment")
    assert ns == sa["metadata"]["namespace"] == svc["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "vlm-operator",
    }
    assert role["metadata"]["name"] == "vlm-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    (c,) = pod["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    port = next(p for p in svc["spec"]["ports"] if p["name"] == "webhook")
    assert port["port"] == 443
    cport = next(p for p in c["ports"] if p["name"] == port["targetPort"])
    assert cport["containerPort"] == int(env["VLM_OPERATOR_WEBHOOK_PORT"]) == 9443
    assert env["VLM_OPERATOR_WEBHOOK_HOST"] == f"{svc['metadata']['name']}.{ns}.svc"
    assert env["VLM_OPERATOR_WEBHOOK_ADDR"] == "0.0.0.0"
    ref = webhook_server.ServiceRef.parse(env[webhook_server.SERVICE_ENV])
    assert (ref.namespace, ref.name, ref.port) == (ns, svc["metadata"]["name"], 443)
    assert ref.dns_name == env["VLM_OPERATOR_WEBHOOK_HOST"]
    assert c["args"] == ["--liveness", "http://0.0.0.0:8080/healthz"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert next(p for p in c["ports"] if p["name"] == c["livenessProbe"]["httpGet"]["port"])["containerPort"] == 8080
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    ports = [p["containerPort"] for p in c["ports"]]
    assert len(ports) == len(set(ports))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}  # the webhook certificate is written there
    assert by_kind(docs, "ClusterKopfPeering")["metadata"]["name"] == "vlm-operator"  # vlmctl's default --peering


def test_the_deployment_args_and_env_parse_with_the_real_cli() -> None:
    from vlm_operator import cli
    from vlm_operator.cli.operator import settings_from

    (c,) = by_kind(deploy_docs(), "Deployment")["spec"]["template"]["spec"]["containers"]
    argv = ["operator", "run", *c["args"]]  # the image's ENTRYPOINT is `vlmctl operator run`
    args = cli._build_parser(argv).parse_args(argv)
    settings = settings_from(args, {e["name"]: e["value"] for e in c["env"]})
    live = int(args.liveness.rsplit(":", 1)[1].split("/")[0])
    assert live == 8080 and settings.metrics_port not in (live, 0, 9443), "metrics and liveness must not share a port"
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named["metrics"] == settings.metrics_port and settings.metrics_addr == "0.0.0.0"
    assert settings.webhook_service == "vlm-operator/vlm-operator:443"  # the API server dials the webhook's Service


def strip_tpl(text: str) -> str:
    """The generated chart RBAC without its ``{{- if }}``/``{{- end }}`` lines (plain YAML of every rule)."""
    return re.sub(r"^\{\{-.*\}\}$\n?", "", text, flags=re.MULTILINE)


def test_the_cluster_role_is_the_table_and_the_chart_is_not_stale() -> None:
    role = by_kind(deploy_docs(), "ClusterRole")
    assert role["rules"] == rbac.cluster_role_rules()
    gen = _gen_rbac()
    deploy = (ROOT / "deploy" / "operator.yaml").read_text()
    assert gen.render_deploy(deploy) == deploy, "run `python hack/gen_rbac.py`"
    chart_role = (ROOT / "charts" / "vlm-operator" / "templates" / "clusterrole.yaml").read_text()
    assert gen.chart_role() == chart_role, "run `python hack/gen_rbac.py`"
    # the chart's ClusterRole: every rule cluster-wide, only the cluster-scoped ones with watchNamespaces
    namespaced_part, _, clusterwide_part = chart_role.partition("{{- else }}")
    namespaced_part = namespaced_part[namespaced_part.index("rules:") :]
    assert yaml.safe_load(strip_tpl(clusterwide_part))["rules"] == rbac.cluster_role_rules(
        rbac.chart_rules(optional=True)
    )  # the {{ if }} lines stripped
    _, cluster = rbac.namespaced_install()
    assert yaml.safe_load(strip_tpl(namespaced_part))["rules"] == rbac.cluster_role_rules(cluster)
    assert gen.main(["--check"]) == 0


def test_a_namespaced_install_splits_the_table_into_role_and_cluster_role() -> None:
    role, cluster = rbac.namespaced_install()
    assert {r for rule in cluster for r in rule.resources} == {
        "nodes",
        "customresourcedefinitions",
        "validatingwebhookconfigurations",
        "vlmplatformprofiles",
        "namespaces",
    }
    assert all(rule.cluster_scoped for rule in cluster) and not any(rule.cluster_scoped for rule in role)
    assert rbac.NAMESPACED_PEERING in role
    # the chart owns the webhook configuration: no create on webhook configurations, one patch by name
    assert rbac.CHART_WEBHOOK_PATCH in cluster
    assert not rbac.granted("admissionregistration.k8s.io", "validatingwebhookconfigurations", "create", rules=cluster)
    assert not rbac.granted("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", rules=cluster)
    # every namespaced rule of the chart's table is in the Role; only the cluster peering is dropped
    chart = rbac.chart_rules()
    assert {r for r in chart if not r.cluster_scoped} | {rbac.NAMESPACED_PEERING} == set(role)
    assert [r for r in chart if r not in role and r not in cluster] == [
        r for r in chart if "clusterkopfpeerings" in r.resources
    ]


def test_the_chart_metadata_and_values_parse() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "vlm-operator" / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "vlm-operator" and chart["version"]
    values = yaml.safe_load((ROOT / "charts" / "vlm-operator" / "values.yaml").read_text())
    assert values["webhook"] == {
        "port": 9443,
        "servicePort": 443,
        "certSecret": "",
        "certManagerCertificate": "",
        "url": "",
    }
    assert values["replicaCount"] == 1 and values["peering"]["name"] == "vlm-operator"
    templates = ROOT / "charts" / "vlm-operator" / "templates"
    used = set()
    for t in templates.glob("*.yaml"):
        used |= set(re.findall(r"\.Values\.([A-Za-z]+)", t.read_text()))
    assert used <= set(values), used - set(values)


def test_least_privilege_shape() -> None:
    rules = rbac.cluster_role_rules()
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], r
    # no Secrets, no ConfigMaps, no deletes, no escalation paths
    assert not any({"secrets", "configmaps"} & set(r["resources"]) for r in rules)
    assert not any(
        {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & set(r["verbs"]) for r in rules
    )
    assert not rbac.granted("", "secrets", "get")
    # the webhook configurations may be patched by name only
    assert rbac.granted(
        "admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch", "vlm-operator.vlmops.io"
    )
    assert not rbac.granted("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch", "other")
    assert not rbac.granted("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch")


# --- the table covers what the code calls ---------------------------------------------------------------------

#: Kube method -> (subresource, verb) it needs.
_METHODS = {
    "get": (None, "get"),
    "list": (None, "list"),
    "patch_status": ("status", "patch"),
    "patch_status_strategic": ("status", "patch"),
    "event": (None, "create"),
    "delete": (None, "delete"),
    "get_scale": ("scale", "get"),
    "scale": ("scale", "patch"),
}
_API_VERSION = re.compile(r"^(v1|[a-z0-9.-]+/v\d\w*)$")
_KIND = re.compile(r"^[A-Z][A-Za-z]+$")


def _module_constants(tree: ast.Module) -> dict[str, str]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value.value
    return out


def _str(node: ast.expr, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return None


def kube_calls() -> set[tuple[str, str, str, str]]:
    """(file, apiVersion/kind, method, verb) of each Kube call in the operator's source with a resolvable kind."""
    found = set()
    for path in PKG.rglob("*.py"):
        if "devcluster" in path.parts or "simulator" in path.parts:
            continue  # the dev cluster and simulator run as the cluster admin, not as the operator
        tree = ast.parse(path.read_text())
        consts = _module_constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func, args = node.func, list(node.args)
            if (
                args and isinstance(args[0], ast.Attribute) and args[0].attr in _METHODS
            ):  # asyncio.to_thread(k.get, ...)
                func, args = args[0], args[1:]
            if not isinstance(func, ast.Attribute) or func.attr not in _METHODS or len(args) < 2:
                continue
            if func.attr == "event":
                found.add((path.name, "v1/Event", "event", "create"))
                continue
            api_version, kind = _str(args[0], consts), _str(args[1], consts)
            if api_version and kind and _API_VERSION.match(api_version) and _KIND.match(kind):
                found.add((path.name, f"{api_version}/{kind}", func.attr, _METHODS[func.attr][1]))
    return found


def _group_resource(api_version_kind: str) -> tuple[str, str]:
    api_version, _, kind = api_version_kind.rpartition("/")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return group, kube._PLURALS[(api_version, kind)]


def test_the_scan_finds_the_calls_it_must() -> None:
    calls = kube_calls()
    keys = {(k, m) for _, k, m, _ in calls}
    assert ("vlmops.io/v1alpha1/VLMDeployment", "patch_status") in keys
    assert ("apps/v1/Deployment", "get") in keys
    assert ("v1/Pod", "list") in keys
    assert ("v1/Node", "list") in keys


#: What an install may grant: the base table and the rules of opt-in features.
ALL_RULES = (*rbac.RULES, *rbac.OPTIONAL_RULES)


def test_pod_status_is_patched_only_with_the_opt_in_rule() -> None:
    assert not rbac.granted("", "pods/status", "patch")
    assert rbac.granted("", "pods/status", "patch", rules=rbac.OPTIONAL_RULES)
    assert ("v1/Pod", "patch_status_strategic") in {(k, m) for _, k, m, _ in kube_calls()}


def test_every_kube_call_of_the_operator_is_granted() -> None:
    missing = []
    for file, kind, method, verb in sorted(kube_calls()):
        group, resource = _group_resource(kind)
        sub = _METHODS[method][0]
        if not rbac.granted(group, f"{resource}/{sub}" if sub else resource, verb, rules=ALL_RULES):
            missing.append(
                f"{file}: {method}({kind}) needs {verb} on {group or 'core'}/{resource}{'/' + sub if sub else ''}"
            )
    assert not missing, "\n".join(missing)


def test_every_rendered_child_can_be_server_side_applied() -> None:
    from vlm_operator.api import VLMDeployment
    from vlm_operator.reconcile import build_plan

    kinds = set()
    for path in SAMPLES:
        doc = yaml.safe_load(path.read_text())
        doc["metadata"].update(namespace="default", uid="00000000-0000-0000-0000-000000000000")
        try:
            plan = build_plan(VLMDeployment.model_validate(doc))
        except Exception:  # a sample meant to be refused at admission
            continue
        kinds |= {(o["apiVersion"], o["kind"]) for o in plan.desired}
    assert ("apps/v1", "Deployment") in kinds
    for api_version, kind in kinds:
        group, resource = _group_resource(f"{api_version}/{kind}")
        for verb in ("get", "create", "patch"):  # _apply_if_changed reads, then applies (create-by-apply needs create)
            assert rbac.granted(group, resource, verb), (kind, verb)


def test_every_resource_kopf_handles_is_granted() -> None:
    import kopf

    import vlm_operator.handlers
    from vlm_operator.settings import Settings

    registry: Any = vlm_operator.handlers.register(Settings(), kopf.OperatorRegistry())
    watched = [*registry._watching.get_all_handlers(), *registry._changing.get_all_handlers()]
    spawned = list(registry._spawning.get_all_handlers())
    assert watched and spawned is not None
    for h in [*watched, *spawned]:
        sel = h.selector
        for verb in ("list", "watch"):
            assert rbac.granted(sel.group or "", sel.plural or sel.any_name, verb), (h.id, sel, verb)
    for h in [*registry._changing.get_all_handlers(), *spawned]:
        # kopf patches progress annotations (changing handlers) and finalizers (daemons) on the object
        assert rbac.granted(h.selector.group or "", h.selector.plural or h.selector.any_name, "patch"), h.id
    # kopf's own needs: resource discovery, peering, events, its managed webhook configurations
    assert rbac.granted("apiextensions.k8s.io", "customresourcedefinitions", "watch")
    for verb in ("get", "list", "watch", "patch"):
        assert rbac.granted("kopf.dev", "clusterkopfpeerings", verb)
    assert rbac.granted("", "events", "create")
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        assert rbac.granted("admissionregistration.k8s.io", kind, "create")
        assert rbac.granted("admissionregistration.k8s.io", kind, "patch", vlm_operator.handlers.WEBHOOK_NAME)
    assert vlm_operator.handlers.WEBHOOK_NAME == rbac.WEBHOOK_CONFIGURATION


# --- the webhook's Service client config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [("vlm-operator/vlm-operator", ("vlm-operator", "vlm-operator", 443)), ("ns/svc:8443", ("ns", "svc", 8443))],
)
def test_service_ref_parses(text: str, want: tuple[str, str, int]) -> None:
    ref = webhook_server.ServiceRef.parse(text)
    assert (ref.namespace, ref.name, ref.port) == want


@pytest.mark.parametrize("text", ["svc", "/svc", "ns/", "ns/svc:x", "ns/svc:0"])
def test_service_ref_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=webhook_server.SERVICE_ENV):
        webhook_server.ServiceRef.parse(text)


def test_service_webhook_server_serves_tls_and_reports_a_service_reference(tmp_path: Path) -> None:
    from vlm_operator import webhook_certs

    ref = webhook_server.ServiceRef("vlm-operator", "vlm-operator", 443)
    webhook_certs.generate(tmp_path, ref.dns_name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = webhook_server.ServiceWebhookServer(
        service=ref,
        addr="127.0.0.1",
        port=port,
        host=ref.dns_name,
        certfile=str(tmp_path / "tls.crt"),
        pkeyfile=str(tmp_path / "tls.key"),
        cafile=str(tmp_path / "ca.crt"),
    )

    async def fn(*_: Any, **__: Any) -> Any:
        return {}

    async def serve_and_handshake() -> tuple[dict[str, Any], str]:
        gen = server(fn)
        try:
            config: dict[str, Any] = dict(await gen.__anext__())
            # while it serves, the API server's view: the CA bundle verifies the leaf for <name>.<namespace>.svc
            ctx = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=ref.dns_name)
            peer = writer.get_extra_info("peercert")
            writer.close()
            await writer.wait_closed()
            del reader
            return config, str(peer)
        finally:
            await gen.aclose()

    config, peer = asyncio.run(serve_and_handshake())
    assert "url" not in config
    assert config["service"] == {"namespace": "vlm-operator", "name": "vlm-operator", "port": 443, "path": ""}
    assert base64.b64decode(config["caBundle"]) == (tmp_path / "ca.crt").read_bytes()
    assert ref.dns_name in peer
