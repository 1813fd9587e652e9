"""Generated specs (hypothesis, from the API models' CRD schema, valid and deliberately invalid) through the real CRD
schema and CEL rules, the operator's validating webhook, and render.

Each spec is sent to the API server as a server-side dry run (``dryRun=All``: schema, CEL and admission webhooks run,
nothing is stored). The figures are printed; the test fails on any of:

* a 5xx answer, a timeout, or a traceback in the operator's log (a crash);
* a refusal that does not name the field (``spec.<field>``, or the CEL/schema cause's field);
* an admitted spec that the refusal policy then refuses or that does not render (admitted must mean renders).

CI runs ``VLM_GENERATED_SPECS`` (default 300); the long run is ``make soak`` (10,000).
"""

from __future__ import annotations

import collections
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cel_cases import CEL_CASES, NAMED_CASES
from tests.conftest import Cluster
from tests.integration.operator_helpers import running_operator
from tests.specgen import SPEC_SCHEMA, specs
from vlm_operator import admission, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

COUNT = int(os.environ.get("VLM_GENERATED_SPECS", "300"))


def _property_names(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        out.update((node.get("properties") or {}).keys())
        for v in node.values():
            out |= _property_names(v)
    elif isinstance(node, list):
        for v in node:
            out |= _property_names(v)
    return out


#: ``spec.<path>`` as the API server writes it, or a field of the schema by its camelCase name (``fitCheck: ...``)
FIELD = re.compile(
    r"spec\.[A-Za-z]|metadata\.name|\b("
    + "|".join(sorted(_property_names(SPEC_SCHEMA), key=len, reverse=True))
    + r")\b"
)


def names_a_field(body: dict[str, Any]) -> bool:
    message = str(body.get("message", ""))
    causes = body.get("details", {}).get("causes", []) or []
    return bool(FIELD.search(message)) or any(FIELD.search(str(c.get("field", ""))) for c in causes)


def test_generated_specs_through_schema_webhook_and_render(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    api = client.CustomObjectsApi(cluster.api_client)
    tally: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    latencies: list[float] = []
    known_bad = [c[1] for c in CEL_CASES] + [c[1] for c in NAMED_CASES]

    with running_operator(cluster, tmp_path / "operator.log") as op:

        @settings(
            max_examples=COUNT,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(specs(known_bad))
        def one(spec: dict[str, Any]) -> None:
            n = sum(tally.values())
            body = {
                "apiVersion": "vlmops.io/v1alpha1",
                "kind": "VLMDeployment",
                "metadata": {"name": f"g{n}", "namespace": namespace},
                "spec": spec,
            }
            t0 = time.monotonic()
            try:
                stored = api.create_namespaced_custom_object(
                    "vlmops.io", "v1alpha1", namespace, "vlmdeployments", body, dry_run="All", _request_timeout=40
                )
            except ApiException as exc:
                latencies.append(time.monotonic() - t0)
                status = int(exc.status or 0)
                answer = json.loads(exc.body) if exc.body else {}
                webhook = "admission webhook" in str(answer.get("message", ""))
                if status >= 500 or status == 0:
                    tally["5xx"] += 1
                    problems.append(f"{status}: {answer.get('message')} for {json.dumps(spec)[:400]}")
                    return
                tally["refused by webhook" if webhook else "refused by schema/CEL"] += 1
                if not names_a_field(answer):
                    tally["refusal without a field"] += 1
                    problems.append(f"no field named: {answer.get('message')} for {json.dumps(spec)[:300]}")
                return
            except Exception as exc:  # a timeout or a dropped connection
                tally["error"] += 1
                problems.append(f"{type(exc).__name__}: {exc} for {json.dumps(spec)[:300]}")
                return
            latencies.append(time.monotonic() - t0)
            tally["admitted"] += 1
            # admitted means renders: the reconciler's plan for the object as the API server would store it (pruned,
            # defaulted, with a uid) allows it and has children
            try:
                plan = reconcile.build_plan(admission.parse(stored))
            except Exception as exc:
                problems.append(f"admitted but {type(exc).__name__}: {exc} for {json.dumps(spec)[:300]}")
                return
            if not plan.decision.allowed or not plan.desired:
                problems.append(f"admitted but refused at render: {plan.decision.message} for {json.dumps(spec)[:300]}")

        started = time.monotonic()
        one()
        elapsed = time.monotonic() - started
        log = op.output()

    tracebacks = log.count("Traceback")
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    print(
        f"\nGENERATED SPECS {sum(tally.values())} in {elapsed:.0f}s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
        + f"; tracebacks in the operator log {tracebacks}; dry-run latency p50 {p50 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000 if latencies else 0:.0f} ms"
    )
    for p in problems[:20]:
        print("  PROBLEM", p)
    assert sum(tally.values()) >= COUNT
    assert tally["admitted"] > 0 and tally["refused by schema/CEL"] > 0 and tally["refused by webhook"] > 0, tally
    assert tracebacks == 0, log[log.index("Traceback") - 2000 : log.index("Traceback") + 3000]
    assert not problems, "\n".join(problems[:20])
