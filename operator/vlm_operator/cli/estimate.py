"""`vlmctl estimate`: will this model fit this GPU under these `vllm serve` flags, and if not, what would?

Offline and fast: only argparse is imported at module load; the estimator, the catalog and rich load inside ``run``.
Exit codes: 0 fits, 2 does not fit, 1 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from typing import Any

from vlm_operator.releases import DEFAULT_VLLM_VERSION

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30}


class BadInput(ValueError):
    """A flag value that cannot be used; printed without a traceback, exit code 1."""


def parse_human_int(text: str) -> int:
    """vLLM's human-readable numbers: ``32k`` = 32,000, ``32K`` = 32,768 (``--max-model-len``, facts §1a)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 32768, 32k, 32K)")
    value, suffix = float(m.group(1)), m.group(2)
    mult = _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return int(value * mult)


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
    src.add_argument("--gpu", help="GPU product or alias from the GPU table, e.g. H100, L4, A100-40GB")
    src.add_argument("--gpu-memory-gib", type=float, help="GPU memory in GiB instead of --gpu")
    src.add_argument("--mig-profile", help="a MIG slice of --gpu, e.g. 3g.40gb (one engine per slice, no TP)")
    eng = parser.add_argument_group("engine (as vllm serve)")
    eng.add_argument("-tp", "--tensor-parallel-size", type=int, default=1)
    eng.add_argument("-pp", "--pipeline-parallel-size", type=int, default=1)
    eng.add_argument("-dp", "--data-parallel-size", type=int, default=1)
    eng.add_argument("--max-model-len", type=parse_human_int)
    eng.add_argument("--max-num-seqs", type=int)
    eng.add_argument("--max-num-batched-tokens", type=parse_human_int)
    eng.add_argument("--gpu-memory-utilization", type=float)
    eng.add_argument("--dtype", default="auto")
    eng.add_argument("-q", "--quantization")
    eng.add_argument("--kv-cache-dtype", default="auto")
    eng.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False)
    eng.add_argument("--enable-expert-parallel", action="store_true", help="MoE: whole experts per rank")
    eng.add_argument("--block-size", type=int)
    eng.add_argument("--kv-cache-memory-bytes", type=parse_human_int)
    eng.add_argument("--api-server-count", type=int)
    eng.add_argument(
        "--vllm-version",
        default=DEFAULT_VLLM_VERSION,
        help=f"vLLM release the estimate is for (default {DEFAULT_VLLM_VERSION})",
    )
    eng.add_argument("--engine", choices=["v0", "v1"], help="force the V0 or V1 engine")
    mm = parser.add_argument_group("multimodal")
    mm.add_argument("--limit-mm-per-prompt", type=_json_arg, help='JSON, e.g. \'{"image": 4, "video": 0}\'')
    mm.add_argument("--mm-processor-kwargs", type=_json_arg, help="JSON, e.g. '{\"max_pixels\": 1003520}'")
    mm.add_argument("--mm-encoder-tp-mode", choices=["weights", "data"], default="weights")
    mm.add_argument("--skip-mm-profiling", action=argparse.BooleanOptionalAction, default=False)
    mm.add_argument("--media-io-kwargs", type=_json_arg, help='JSON, e.g. \'{"video": {"num_frames": 16}}\'')
    mm.add_argument("--mm-processor-cache-gb", type=float)
    mm.add_argument("--mm-processor-cache-type", choices=["lru", "shm"], default="lru")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


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
            p = gpus.lookup(args.gpu or "H100")
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
        engine=EngineSettings(
            tensor_parallel_size=args.tensor_parallel_size,
            pipeline_parallel_size=args.pipeline_parallel_size,
            data_parallel_size=args.data_parallel_size,
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            gpu_memory_utilization=args.gpu_memory_utilization,
            dtype=args.dtype,
            quantization=args.quantization,
            kv_cache_dtype=args.kv_cache_dtype,
            enforce_eager=args.enforce_eager,
            enable_expert_parallel=args.enable_expert_parallel,
            block_size=args.block_size,
            kv_cache_memory_bytes=args.kv_cache_memory_bytes,
            api_server_count=args.api_server_count,
            engine=args.engine,
        ),
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


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    data = result.to_json()
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
    items = ", ".join(f"{k}: {v}" for k, v in data["image_tokens_per_item"].items()) or "none"
    console.print(
        f"tokens per item (worst case): {items}; profiled {d['profiled_items']} {d['profiled_modality'] or '-'} "
        f"item(s); max_num_seqs {d['max_num_seqs']}, max_num_batched_tokens {d['max_num_batched_tokens']}"
    )
    console.print(
        f"host memory for the processor cache: {d['host_memory_gib']:.2f} GiB; /dev/shm: {d['shm_gib']:.2f} GiB"
    )
    checked = "checked against a public config.json copy" if d["model_verified"] else "not checked against a copy"
    console.print(f"model facts: {d['model_source'] or '-'} ({checked})", markup=False)
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
    from vlm_operator.estimator.memory import InputError
    from vlm_operator.estimator.recommend import estimate_with_recommendations
    from vlm_operator.estimator.tokens import TokenError

    try:
        req = build_request(args)
        result = estimate_with_recommendations(req, _gpu_choices())
    except (BadInput, InputError, TokenError) as exc:
        print(f"vlmctl estimate: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_table(result)
    return 0 if result.fits else 2
