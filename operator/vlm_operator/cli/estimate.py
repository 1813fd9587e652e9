"""`vlmctl estimate`: will this model fit this GPU under these `vllm serve` flags, and if not, what would?

Offline and fast: only argparse is imported at module load; the estimator, the catalog and rich load inside ``run``.
Exit codes: 0 fits, 2 does not fit, 1 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from vlm_operator.releases import DEFAULT_VLLM_VERSION

_SIZE_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30}
#: the GPU an estimate is for when neither --gpu nor --gpu-memory-gib (nor the manifest) names one
DEFAULT_GPU = "H100"


class BadInput(ValueError):
    """A flag value that cannot be used; printed without a traceback, exit code 1."""


def parse_human_int(text: str) -> int:
    """vLLM's human-readable numbers: ``32k`` = 32,000, ``32K`` = 32,768 (vllm/engine/arg_utils.py).

    Only positive whole numbers: a count of tokens, bytes or sequences. ``1.5k`` is fine (1,500); ``1.5`` is not.
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"must be a positive integer (e.g. 32768, 32k, 32K), got {text!r}")
    value, suffix = float(m.group(1)), m.group(2)
    mult = _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    number = value * mult
    if number <= 0 or number != int(number):
        raise argparse.ArgumentTypeError(f"must be a positive integer (e.g. 32768, 32k, 32K), got {text!r}")
    return int(number)


def positive_int(text: str) -> int:
    """A plain count (``-tp 2``, ``--max-num-seqs 64``): a whole number > 0."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def fraction(text: str) -> float:
    """``--gpu-memory-utilization``: a fraction of the GPU, 0 < x <= 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], e.g. 0.9, got {text!r}")
    return value


def _json_arg(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg} ({text!r})") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("model and GPU")
    src.add_argument("-f", "--file", help="a VLMDeployment YAML (needs the api package)")
    src.add_argument(
        "--model",
        help="a model id, e.g. Qwen/Qwen2.5-VL-7B-Instruct: the built-in catalog first, then the Hugging Face Hub",
    )
    src.add_argument("--revision", help="branch, tag or commit of a Hub model (default main)")
    src.add_argument("--hf-endpoint", help="the Hub or a mirror (default $HF_ENDPOINT or https://huggingface.co)")
    src.add_argument("--hf-token", help="token for gated or private models (default $HF_TOKEN)")
    src.add_argument(
        "--offline",
        action="store_true",
        help="never use the network: the catalog, --model-dir, and models already in the Hub cache only",
    )
    src.add_argument("--model-dir", help="a local checkpoint directory (config.json, safetensors)")
    src.add_argument(
        "--gpu",
        help="GPU product or alias from the GPU table, e.g. H100, L4, A100-40GB (left out: H100-80GB, and the output "
        "says it was assumed)",
    )
    src.add_argument("--gpu-memory-gib", type=float, help="GPU memory in GiB instead of --gpu")
    src.add_argument("--mig-profile", help="a MIG slice of --gpu, e.g. 3g.40gb (one engine per slice, no TP)")
    eng = parser.add_argument_group("engine (as vllm serve; a flag left out takes vLLM's default for the release)")
    eng.add_argument(
        "-tp", "--tensor-parallel-size", type=positive_int, default=1, help="GPUs the model is split over (default 1)"
    )
    eng.add_argument(
        "-pp", "--pipeline-parallel-size", type=positive_int, default=1, help="pipeline stages, by layer (default 1)"
    )
    eng.add_argument(
        "-dp",
        "--data-parallel-size",
        type=positive_int,
        default=1,
        help="engine copies (default 1); each needs its own GPUs, and each holds its own processor cache",
    )
    eng.add_argument(
        "--max-model-len",
        type=parse_human_int,
        help="context length in tokens, e.g. 32768, 32k (32,000) or 32K (32,768); default the model's own",
    )
    eng.add_argument(
        "--max-num-seqs", type=positive_int, help="sequences per step (default by release and GPU, e.g. 256 or 1024)"
    )
    eng.add_argument(
        "--max-num-batched-tokens",
        type=parse_human_int,
        help="tokens per step, which sizes the activation peak (default by release and GPU, e.g. 8192 or 16384)",
    )
    eng.add_argument(
        "--gpu-memory-utilization",
        type=fraction,
        help="fraction of GPU memory vLLM may use, 0 < x <= 1 (default 0.9)",
    )
    eng.add_argument(
        "--dtype", default="auto", help="weights and activations: auto (the checkpoint's), bfloat16, float16, float32"
    )
    eng.add_argument(
        "-q",
        "--quantization",
        help="quantization method; default the checkpoint's quantization_config (fp8 or bitsandbytes quantize a "
        "16-bit checkpoint at load)",
    )
    eng.add_argument("--kv-cache-dtype", default="auto", help="auto (the model dtype), fp8, fp8_e4m3, fp8_e5m2")
    eng.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="no CUDA graphs (saves their memory, costs decode speed)",
    )
    eng.add_argument("--enable-expert-parallel", action="store_true", help="MoE: whole experts per rank")
    eng.add_argument("--block-size", type=positive_int, help="tokens per KV-cache block (default 16)")
    eng.add_argument(
        "--kv-cache-memory-bytes",
        type=parse_human_int,
        help="a fixed KV-cache size instead of what gpu_memory_utilization leaves, e.g. 20G",
    )
    eng.add_argument(
        "--api-server-count",
        type=positive_int,
        help="API server processes (each holds a processor cache; default the release's)",
    )
    eng.add_argument(
        "--vllm-version",
        default=DEFAULT_VLLM_VERSION,
        help=f"vLLM release the estimate is for (default {DEFAULT_VLLM_VERSION})",
    )
    eng.add_argument("--engine", choices=["v0", "v1"], help="force the V0 or V1 engine (default the release's)")
    mm = parser.add_argument_group("multimodal")
    mm.add_argument("--limit-mm-per-prompt", type=_json_arg, help='JSON, e.g. \'{"image": 4, "video": 0}\'')
    mm.add_argument("--mm-processor-kwargs", type=_json_arg, help="JSON, e.g. '{\"max_pixels\": 1003520}'")
    mm.add_argument(
        "--mm-encoder-tp-mode",
        choices=["weights", "data"],
        default="weights",
        help="weights: split the vision encoder over TP ranks; data: a whole copy per rank (default weights)",
    )
    mm.add_argument(
        "--skip-mm-profiling",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="vLLM does not profile the encoder (the estimate still counts its peak)",
    )
    mm.add_argument("--media-io-kwargs", type=_json_arg, help='JSON, e.g. \'{"video": {"num_frames": 16}}\'')
    mm.add_argument(
        "--mm-processor-cache-gb", type=float, help="host memory for processed items, per process (default 4)"
    )
    mm.add_argument(
        "--mm-processor-cache-type",
        choices=["lru", "shm"],
        default="lru",
        help="lru: per-process cache; shm: one cache in /dev/shm (default lru)",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")


def _limits(raw: dict[str, Any] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in (raw or {}).items():
        count = v.get("count") if isinstance(v, dict) else v
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadInput(f"--limit-mm-per-prompt: {k!r} needs a count >= 0, got {v!r}")
        out[str(k)] = count
    return out


def build_request(args: argparse.Namespace) -> Any:
    """Turn flags into an ``EstimateRequest`` (raises BadInput)."""
    from vlm_operator import gpus
    from vlm_operator.estimator.request import (
        GIB,
        EngineSettings,
        EstimateRequest,
        GPUSpec,
        MultimodalSettings,
    )
    from vlm_operator.models import catalog
    from vlm_operator.models.hf_config import ConfigError

    if args.file:
        try:
            from_spec = importlib.import_module("vlm_operator.estimator.from_spec")
        except ImportError:
            raise BadInput("-f needs the VLMDeployment API package, which this build lacks") from None
        from vlm_operator.models.hub import HubResolver

        # a manifest naming a model outside the catalog is looked up like --model (the Hub, or its cache offline)
        hub = HubResolver(_hub_settings(args))
        try:
            with from_spec.using_hub(hub):
                return from_spec.request_from_file(args.file, gpu=args.gpu)
        except (ValueError, gpus.UnknownGPUError) as exc:  # pydantic.ValidationError is a ValueError
            raise BadInput(str(exc)) from None
    if bool(args.model) == bool(args.model_dir):
        raise BadInput("give exactly one of --model or --model-dir (or -f FILE)")
    try:
        if args.model_dir:
            from vlm_operator.models.local import read_model_dir

            facts = read_model_dir(args.model_dir)
        else:
            facts = _catalog_or_hub(args)
    except (catalog.UnknownModelError, ConfigError) as exc:
        raise BadInput(str(exc)) from None
    if args.gpu and args.gpu_memory_gib:
        raise BadInput("give --gpu or --gpu-memory-gib, not both")
    if args.mig_profile and args.gpu_memory_gib is not None:
        raise BadInput("--mig-profile needs --gpu (the product the slice is cut from), not --gpu-memory-gib")
    if args.gpu_memory_gib is not None:
        if args.gpu_memory_gib <= 0:
            raise BadInput("--gpu-memory-gib must be > 0")
        gpu = GPUSpec(f"{args.gpu_memory_gib:g} GiB GPU", int(args.gpu_memory_gib * GIB), (9, 0))
    else:
        try:
            p = gpus.lookup(args.gpu or DEFAULT_GPU)
        except gpus.UnknownGPUError as exc:
            raise BadInput(str(exc)) from None
        mig = None
        if args.mig_profile:
            try:
                mig = p.mig(args.mig_profile)
            except gpus.UnknownGPUError as exc:
                raise BadInput(f"--mig-profile {exc}") from None
            if args.tensor_parallel_size * args.pipeline_parallel_size != 1:
                raise BadInput("--mig-profile serves from one slice: vLLM cannot span MIG instances; use TP 1 and PP 1")
        gpu = GPUSpec.of(p, mig)
    frames = None
    if args.media_io_kwargs:
        video = args.media_io_kwargs.get("video") or {}
        if isinstance(video, dict) and "num_frames" in video:
            frames = int(video["num_frames"])
    return EstimateRequest(
        model=facts,
        gpu=gpu,
        engine=EngineSettings.taken_from(args),
        multimodal=MultimodalSettings(
            limit_per_prompt=_limits(args.limit_mm_per_prompt),
            processor_kwargs=args.mm_processor_kwargs or {},
            encoder_tp_mode=args.mm_encoder_tp_mode,
            skip_mm_profiling=args.skip_mm_profiling,
            video_num_frames=frames,
            processor_cache_gb=args.mm_processor_cache_gb,
            processor_cache_type=args.mm_processor_cache_type,
        ),
        vllm_version=args.vllm_version,
    )


def assumed_gpu(args: argparse.Namespace) -> str | None:
    """The GPU product the estimate assumed because nothing named one: no --gpu / --gpu-memory-gib, and with -f no
    ``resources.gpu.product`` / ``minMemoryGiB`` in the manifest (None when one was named)."""
    if args.gpu or args.gpu_memory_gib is not None:
        return None
    if args.file:
        import yaml

        try:
            data = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
            spec = data.get("spec", data) if isinstance(data, dict) else {}
            gpu = ((spec.get("resources") or {}).get("gpu") or {}) if isinstance(spec, dict) else {}
        except (OSError, yaml.YAMLError, AttributeError):
            return None
        if not isinstance(gpu, dict) or gpu.get("product") or gpu.get("minMemoryGiB"):
            return None
    from vlm_operator import gpus

    return gpus.lookup(DEFAULT_GPU).short_name


def item_report(result: Any) -> dict[str, Any]:
    """Per modality, what one worst-case item costs (``tokens.modality_costs``; docs/estimator.md §4)."""
    from vlm_operator.estimator import tokens

    costs = tokens.modality_costs(
        result.request.model,
        result.item_costs,
        kwargs=result.resolved.processor_kwargs,
        limits=result.resolved.limits,
        cross_bytes_per_token=result.cross_bytes_per_token,
        version=result.resolved.version,
    )
    limits = result.resolved.limits
    return {m: {"limit_per_prompt": limits.get(m, 0), **c.to_json()} for m, c in costs.items()}


def _catalog_or_hub(args: argparse.Namespace) -> Any:
    """The catalog's facts for ``--model``; a model it lacks comes from the Hub (or the Hub cache when offline)."""
    from vlm_operator.models import catalog

    if not args.revision:
        try:
            return catalog.lookup(args.model)
        except catalog.UnknownModelError:
            if "/" not in args.model:  # a bare name can only be a catalog name
                raise
    from vlm_operator.models.hub import HubResolver

    return HubResolver(_hub_settings(args)).resolve(args.model, args.revision)


def _hub_settings(args: argparse.Namespace) -> Any:
    from vlm_operator.models.hub import HubSettings

    return HubSettings(endpoint=args.hf_endpoint, token=args.hf_token, offline=args.offline)


def _gpu_choices() -> tuple[Any, ...]:
    from vlm_operator import gpus
    from vlm_operator.estimator.request import GPUSpec

    return tuple(GPUSpec.of(p) for p in gpus.GPU_PRODUCTS)


def _print_table(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    d = data["details"]
    console = Console()
    t = Table(title=f"{data['model']} on {data['gpu']} (vLLM {data['vllm_version']}, {data['engine']}), per GPU")
    t.add_column("term")
    t.add_column("GiB", justify="right")
    t.add_column("note")
    t.add_row("budget", f"{d['budget_gib']:.2f}", f"total x gpu_memory_utilization {d['gpu_memory_utilization']}")
    t.add_row("weights", f"{data['weights_gib']:.2f}", f"vision {d['vision_weights_gib']:.2f}")
    t.add_row(
        "activation peak",
        f"{data['activation_gib']:.2f}",
        f"encoder {d['encoder_activation_gib']:.2f} + cache {d['encoder_cache_gib']:.2f}, "
        f"LM {d['lm_activation_gib']:.2f}, sampler {d['sampler_gib']:.2f}",
    )
    t.add_row("non-torch", f"{data['non_torch_gib']:.2f}", "")
    t.add_row(
        "CUDA graphs",
        f"{data['cuda_graph_gib']:.2f}",
        "in budget" if d["cuda_graph_in_budget"] else "outside gpu_memory_utilization",
    )
    t.add_row(
        "KV cache",
        f"{data['kv_cache_gib']:.2f}",
        f"{data['kv_cache_tokens']:,} tokens, {data['max_concurrency']:.2f}x at max_model_len {d['max_model_len']}",
    )
    console.print(t)
    if data.get("gpu_assumed"):
        console.print(f"GPU: assumed {data['gpu_assumed']} (no --gpu given; pass --gpu to choose)")
    if data["items"]:
        it = Table(title="one worst-case item, in tokens (docs/estimator.md §4)")
        has_cross = any(c["cross_attention_tokens_per_sequence"] for c in data["items"].values())
        for col in ("item", "encoder", "prompt", "markers", "size", "vLLM"):
            it.add_column(col, justify="left" if col in ("item", "size") else "right", no_wrap=True)
        if has_cross:
            it.add_column("cross/seq", no_wrap=True)
        for modality, c in data["items"].items():
            if not c["limit_per_prompt"]:
                continue  # not allowed in a prompt: nothing to cost
            w, h = c["worst_case_size"]
            cross = f"{c['cross_attention_tokens_per_sequence']:,} {c['cross_attention_gib_per_sequence']:.2f}GiB"
            it.add_row(
                modality,
                f"{c['encoder_tokens']:,}",
                f"{c['prompt_tokens']:,}",
                f"{c['marker_tokens']:,}",
                f"{w}x{h}" if w else "-",
                f"{c['vllm_profile_encoder_tokens']:,}" + (" (<)" if c["exceeds_vllm_profile"] else ""),
                *([cross] if has_cross else []),
            )
        console.print(it)
        console.print(
            "  encoder: features the encoder outputs (vLLM profiles and caches them); prompt: positions in the "
            "context, markers included; vLLM: what vLLM's own profiling item yields"
            + ("; cross/seq: encoder states one sequence keeps for cross-attention" if has_cross else "")
        )
        for modality, c in data["items"].items():
            if c["note"] and c["limit_per_prompt"]:
                console.print(f"  {modality}: {c['note']}", markup=False)
    console.print(
        f"profiled {d['profiled_items']} {d['profiled_modality'] or '-'} "
        f"item(s); max_num_seqs {d['max_num_seqs']}, max_num_batched_tokens {d['max_num_batched_tokens']}"
    )
    console.print(
        f"host memory for the processor cache: {d['host_memory_gib']:.2f} GiB; /dev/shm: {d['shm_gib']:.2f} GiB"
    )
    checked = "checked against a public config.json copy" if d["model_verified"] else "not checked against a copy"
    if data.get("model_notes"):
        checked += f"; {data['model_notes']}"
    # a path or URL must stay copyable: no wrapping inside it, whatever the terminal width
    console.print(f"model facts: {d['model_source'] or '-'} ({checked})", markup=False, soft_wrap=True)
    verdict = "[green]FITS[/green]" if data["fits"] else "[red]DOES NOT FIT[/red]"
    console.print(f"verdict: {verdict}")
    for reason in d["reasons"]:
        console.print(f"  - {reason}")
    for warning in d["warnings"]:
        console.print(f"  [yellow]warning[/yellow]: {warning}")
    if data["recommendations"]:
        console.print("recommendations (each re-checked):")
        for rec in data["recommendations"]:
            console.print(
                f"  {rec['rank']}. {rec['change']}  -> KV {rec['kv_cache_gib']:.2f} GiB, {rec['max_concurrency']:.2f}x"
            )


def run(args: argparse.Namespace) -> int:
    from vlm_operator.estimator.core import check_architecture
    from vlm_operator.estimator.memory import InputError
    from vlm_operator.estimator.recommend import estimate_with_recommendations
    from vlm_operator.estimator.tokens import TokenError

    try:
        req = build_request(args)
        served = check_architecture(req)  # a release that cannot serve the model is refused before sizing
        result = estimate_with_recommendations(req, _gpu_choices())
        if served:
            result = dataclasses.replace(result, warnings=(served, *result.warnings))
    except (BadInput, InputError, TokenError) as exc:
        print(f"vlmctl estimate: {exc}", file=sys.stderr)
        return 1
    data = result.to_json()
    data["gpu_assumed"] = assumed_gpu(args)
    data["items"] = item_report(result)
    data["model_notes"] = result.request.model.notes
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        _print_table(data)
    return 0 if result.fits else 2
