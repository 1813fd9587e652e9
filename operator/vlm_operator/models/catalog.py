"""The built-in catalog: public config.json excerpts for popular VLMs and text LLMs, parsed on first use.

``catalog.json`` holds, per model, the config.json fields memory depends on, the processor defaults that change tokens
per image, the exact parameter count where known, the source it was copied from and whether it was checked against
that source (``verified``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from vlm_operator.models.facts import ModelFacts
from vlm_operator.models.hf_config import parse_config


class UnknownModelError(KeyError):
    """A model id that is neither in the catalog nor a readable local directory."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


@cache
def raw_entries() -> tuple[dict[str, Any], ...]:
    text = resources.files("vlm_operator.models").joinpath("catalog.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return tuple(data["models"])


def _facts(entry: dict[str, Any]) -> ModelFacts:
    return parse_config(
        entry["config"],
        model_id=entry["id"],
        preprocessor=entry.get("preprocessor") or {},
        total_params=entry.get("total_params"),
        source=entry.get("source", ""),
        verified=bool(entry.get("verified", False)),
        notes=entry.get("notes", ""),
    )


@cache
def _index() -> dict[str, dict[str, Any]]:
    idx: dict[str, dict[str, Any]] = {}
    for e in raw_entries():
        for name in (e["id"], *e.get("aliases", [])):
            idx[name.lower()] = e
            idx.setdefault(name.split("/")[-1].lower(), e)
    return idx


@cache
def lookup(model_id: str) -> ModelFacts:
    """Facts for a catalog model, by ``org/name``, alias or bare name (case-insensitive)."""
    key = model_id.strip().lower()
    entry = _index().get(key) or _index().get(key.split("/")[-1])
    if entry is None:
        raise UnknownModelError(
            f"{model_id!r} is not in the built-in catalog; pass --model-dir with its config.json, "
            f"or one of: {', '.join(sorted(e['id'] for e in raw_entries())[:8])} ..."
        )
    return _facts(entry)


def all_models() -> list[ModelFacts]:
    return [_facts(e) for e in raw_entries()]


def model_ids() -> list[str]:
    return [str(e["id"]) for e in raw_entries()]
