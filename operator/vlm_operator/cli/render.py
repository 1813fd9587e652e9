"""`vlmctl render -f vlmd.yaml [--vllm-version V]`: the Kubernetes objects the operator would apply, offline.

A VLMBatchJob file renders to its Indexed Job (the engine as a native sidecar, the batch client beside it).

Prints the Deployment, Service and PodDisruptionBudget as a YAML stream, built exactly as the reconciler builds them
(:func:`vlm_operator.render.args.render_command` for the command, :func:`vlm_operator.render.objects.render_all`
for the objects). The estimator's figures (startup budget, container memory, ``/dev/shm``) come from the fit check
when it can resolve the model; otherwise the objects use their defaults and a note says so on stderr.

A file may lack ``metadata.name`` (the file name is used), ``namespace`` (``default``) and ``uid`` (zeros). Exit
codes: 0 rendered, 1 bad input (a message, no traceback).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

OFFLINE_NAMESPACE = "default"
OFFLINE_UID = "00000000-0000-0000-0000-000000000000"


class BadInput(ValueError):
    """Printed as ``vlmctl render: <message>``, exit code 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--file", required=True, help="a VLMDeployment or VLMBatchJob YAML file ('-' reads stdin)"
    )
    parser.add_argument(
        "--vllm-version",
        help="render for this vLLM release instead of the file's spec.engine.version (the spec is re-validated)",
    )


def _load(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise BadInput(f"{path} is not valid YAML: {exc}") from None
    if len(docs) != 1:
        raise BadInput(f"{path} holds {len(docs)} YAML documents; give exactly one VLMDeployment")
    doc = docs[0]
    if not isinstance(doc, dict):
        raise BadInput(f"{path} is not a YAML mapping")
    return doc


def _default_name(path: str) -> str:
    stem = "vlmd" if path == "-" else Path(path).name.split(".")[0]
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "vlmd"


def _prepare(doc: dict[str, Any], path: str, vllm_version: str | None) -> dict[str, Any]:
    """Fill the metadata an offline file may lack and apply ``--vllm-version``, before validation."""
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise BadInput("metadata must be a mapping")
    meta = {**meta}
    meta.setdefault("name", _default_name(path))
    meta.setdefault("namespace", OFFLINE_NAMESPACE)
    meta.setdefault("uid", OFFLINE_UID)
    out = {**doc, "metadata": meta}
    if vllm_version is not None:
        spec = out.get("spec")
        if not isinstance(spec, dict):
            raise BadInput("spec must be a mapping")
        engine = spec.get("engine") or {}
        if not isinstance(engine, dict):
            raise BadInput("spec.engine must be a mapping")
        out["spec"] = {**spec, "engine": {**engine, "version": vllm_version}}
    out.pop("status", None)
    return out


def _validation_message(exc: Any) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"  {loc or '(root)'}: {msg}")
    return "invalid VLMDeployment:\n" + "\n".join(lines)


def _plan_figures(spec: Any) -> tuple[dict[str, Any], str | None]:
    """RenderPlan keyword arguments from the fit check, and a note when there are none."""
    try:
        from vlm_operator import fitcheck

        outcome = fitcheck.check(spec)
    except ImportError as exc:
        return {}, f"estimator not available ({exc}); startup probe, memory and /dev/shm use defaults"
    except Exception as exc:  # the objects are still useful without the figures
        return {}, f"estimate failed ({type(exc).__name__}: {exc}); startup probe, memory and /dev/shm use defaults"
    if not outcome.resolved:
        return {}, f"{outcome.message}; startup probe, memory and /dev/shm use defaults"
    figures: dict[str, Any] = {
        "weights_gib": outcome.weights_gib_per_replica,
        "host_memory_bytes": outcome.host_memory_bytes,
    }
    if outcome.shm_bytes:
        figures["shm_bytes"] = outcome.shm_bytes
    return figures, None


def run(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from vlm_operator.api import VLMDeployment
    from vlm_operator.render.args import RenderError, render_command
    from vlm_operator.render.objects import RenderPlan, render_all

    try:
        doc = _prepare(_load(args.file), args.file, args.vllm_version)
        if doc.get("kind") == "VLMBatchJob":
            return _run_batch(doc)
        try:
            vlmd = VLMDeployment.model_validate(doc)
        except ValidationError as exc:
            raise BadInput(_validation_message(exc)) from None
        cmd = render_command(vlmd.spec)
    except (BadInput, RenderError) as exc:
        print(f"vlmctl render: {exc}", file=sys.stderr)
        return 1
    for warning in cmd.warnings:
        print(f"vlmctl render: warning: {warning}", file=sys.stderr)
    figures, note = _plan_figures(vlmd.spec)
    if note:
        print(f"vlmctl render: note: {note}", file=sys.stderr)
    plan = RenderPlan(command=cmd.argv, env=cmd.env, **figures)
    objects = render_all(vlmd, plan)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=120))
    return 0


def _run_batch(doc: dict[str, Any]) -> int:
    """A VLMBatchJob: its Indexed Job, built as the operator builds it (handlers/batch.py)."""
    import yaml
    from pydantic import ValidationError

    from vlm_operator.api.batch import VLMBatchJob
    from vlm_operator.render import batch as render_batch
    from vlm_operator.render.args import RenderError, render_command
    from vlm_operator.render.objects import RenderPlan

    try:
        try:
            bj = VLMBatchJob.model_validate(doc)
        except ValidationError as exc:
            raise BadInput(_validation_message(exc).replace("VLMDeployment", "VLMBatchJob", 1)) from None
        spec = bj.spec.deployment_spec()
        cmd = render_command(spec)
    except (BadInput, RenderError) as exc:
        print(f"vlmctl render: {exc}", file=sys.stderr)
        return 1
    for warning in cmd.warnings:
        print(f"vlmctl render: warning: {warning}", file=sys.stderr)
    figures, note = _plan_figures(spec)
    if note:
        print(f"vlmctl render: note: {note}", file=sys.stderr)
    max_len = bj.spec.engine.max_model_len or render_batch.UNKNOWN_MAX_MODEL_LEN
    if not bj.spec.engine.max_model_len:
        from vlm_operator.models import catalog

        try:
            max_len = catalog.lookup(bj.spec.model.name).text.max_position_embeddings
        except (LookupError, ValueError):
            print(
                "vlmctl render: note: the model's context length is unknown; the client will not check it",
                file=sys.stderr,
            )
    settings = render_batch.ClientSettings(max_model_len=max_len)
    job = render_batch.job(bj, RenderPlan(command=cmd.argv, env=cmd.env, **figures), settings)
    sys.stdout.write(yaml.safe_dump(job, sort_keys=False, default_flow_style=False, width=120))
    return 0
