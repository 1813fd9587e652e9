"""Read model facts from a local checkpoint directory: config.json, preprocessor_config.json, and the parameter
count from ``model.safetensors.index.json`` or the safetensors headers. Pure file parsing; no torch.

safetensors format: 8-byte little-endian header length, then a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}`` (huggingface/safetensors README "Format").
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from vlm_operator.models.facts import ModelFacts
from vlm_operator.models.hf_config import ConfigError, parse_config

_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_MAX_HEADER = 100 * 1024 * 1024


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return data


def safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ConfigError(f"{path} is too short to be safetensors")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER:
            raise ConfigError(f"{path}: safetensors header of {n} bytes is implausible")
        header = json.loads(fh.read(n).decode("utf-8"))
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: bad safetensors header")
    return header


def count_params(directory: Path) -> tuple[int, int] | None:
    """(parameters, bytes) summed over every ``*.safetensors`` header; None when there are none."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    params = nbytes = 0
    for f in files:
        for name, meta in safetensors_header(f).items():
            if name == "__metadata__" or not isinstance(meta, dict):
                continue
            n = math.prod(int(d) for d in meta.get("shape", []))
            params += n
            nbytes += n * _DTYPE_BYTES.get(str(meta.get("dtype")), 2)
    return params, nbytes


def facts_from_files(
    config: dict[str, Any],
    preprocessor: dict[str, Any],
    *,
    model_id: str,
    source: str,
    counted_params: int | None = None,
    index_total_size: int | None = None,
) -> ModelFacts:
    """Facts from a checkpoint's files, wherever they came from (a directory here, the Hub in ``models.hub``).

    The exact parameter count comes from the safetensors headers (``counted_params``) or, failing that, from the
    index's ``metadata.total_size`` divided by the checkpoint dtype's width. A quantized checkpoint packs several
    weights per stored element, so neither count is the model's parameter count: the exact count of a catalog model
    with the same architecture is used, else the architecture's computed count.
    """
    quantized = "quantization_config" in config or "quantization_config" in (config.get("text_config") or {})
    total: int | None = None
    if not quantized:
        if counted_params:
            total = counted_params
        elif isinstance(index_total_size, int) and index_total_size > 0:
            dtype = str(config.get("torch_dtype") or (config.get("text_config") or {}).get("torch_dtype") or "bf16")
            total = index_total_size // (4 if dtype in ("float32", "float") else 2)
    facts = parse_config(
        config, model_id=model_id, preprocessor=preprocessor, total_params=total, source=source, verified=True
    )
    if quantized and total is None:
        from dataclasses import replace

        from vlm_operator.models.catalog import exact_params_like

        # the base model's exact count when the catalog lists one of the same architecture
        exact = exact_params_like(facts)
        if exact is not None:
            facts = replace(facts, total_params=exact)
    return facts


def read_model_dir(directory: str | Path, model_id: str | None = None) -> ModelFacts:
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise ConfigError(f"{d} has no config.json")
    config = _read_json(d / "config.json")
    pre = _read_json(d / "preprocessor_config.json") if (d / "preprocessor_config.json").is_file() else {}
    counted = count_params(d)
    index_total: int | None = None
    if counted is None and (d / "model.safetensors.index.json").is_file():
        meta = _read_json(d / "model.safetensors.index.json").get("metadata") or {}
        size = meta.get("total_size")
        index_total = size if isinstance(size, int) else None
    return facts_from_files(
        config,
        pre,
        model_id=model_id or d.name,
        source=str(d),
        counted_params=counted[0] if counted else None,
        index_total_size=index_total,
    )
