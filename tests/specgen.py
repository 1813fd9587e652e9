"""Hypothesis strategies for VLMDeployment specs, generated from the CRD's structural schema (itself generated from
the API models), valid and deliberately invalid.

* Every property of every object is optional and drawn from its schema: bounds, enums, patterns, list and map sizes.
* With some probability a leaf breaks its schema on purpose: a number past its bound, a string off its pattern or
  over its length, a value of the wrong type. Known-bad cases (one per CEL rule, ``tests/unit/test_api_models.py``)
  are mixed in, so every validation rule is hit.
* Model names come mostly from the built-in catalog (so a spec can get past the fit check and render), extraArgs
  mostly from vLLM flags, including the ones a typed field owns.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from vlm_operator.api.crd import crd
from vlm_operator.api.field_mappings import FLAG_OWNERS
from vlm_operator.models import catalog

SPEC_SCHEMA: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
MODEL_IDS = sorted(e["id"] for e in catalog.raw_entries())
FREE_FLAGS = ["--enforce-eager", "--disable-log-stats", "--seed", "1", "--swap-space", "4", "--uvicorn-log-level"]

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)  # fmt: skip
_open_object = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8), _json_scalars, max_size=4)
_wrong_type = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=5), st.just([1]), st.just({"x": 1}))


def _bad(strategy: st.SearchStrategy[Any], breaker: st.SearchStrategy[Any], p: int = 30) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``; roughly one draw in ``p`` from ``breaker`` (a value the schema refuses)."""
    return st.integers(0, p - 1).flatmap(lambda n: breaker if n == 0 else strategy)


def _integer(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    lo = node.get("minimum", -1000)
    hi = node.get("maximum", max(lo, 0) + 100_000)
    if node.get("exclusiveMinimum") is True:
        lo += 1
    good = st.integers(int(lo), int(hi))
    return _bad(good, st.one_of(st.integers(int(lo) - 1000, int(lo) - 1), st.integers(int(hi) + 1, int(hi) + 10**6)))


def _number(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    lo = float(node.get("minimum", -1e6))
    hi = float(node.get("maximum", lo + 1e6))
    good = st.floats(
        lo, hi, exclude_min=bool(node.get("exclusiveMinimum")), exclude_max=bool(node.get("exclusiveMaximum"))
    )
    return _bad(good, st.one_of(st.floats(hi + 0.001, hi + 100), st.floats(lo - 100, lo - 0.001)))


def _string(node: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    if "enum" in node:
        return _bad(st.sampled_from(node["enum"]), st.text(max_size=6))
    max_len = int(node.get("maxLength", 64))
    if path.endswith("model.name"):
        good: st.SearchStrategy[str] = st.one_of(
            st.sampled_from(MODEL_IDS), st.from_regex(r"[a-z]{1,8}/[a-z0-9-]{1,12}", fullmatch=True)
        )
    elif "pattern" in node:
        good = st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= max_len)
    else:
        good = st.text(
            "abcdefghijklmnopqrstuvwxyz0123456789-._/",
            min_size=int(node.get("minLength", 0)),
            max_size=min(max_len, 24),
        )
    return _bad(good, st.one_of(st.text(max_size=8), st.just("x" * (max_len + 1))))


def strategy(node: dict[str, Any], path: str = "spec") -> st.SearchStrategy[Any]:
    typ = node.get("type")
    if path.endswith("extraArgs"):
        flags = sorted(FLAG_OWNERS) + FREE_FLAGS
        item = st.one_of(st.sampled_from(flags), st.sampled_from(flags).map(lambda f: f + "=1"), st.text(max_size=10))
        return st.lists(item, max_size=4)
    if node.get("x-kubernetes-preserve-unknown-fields") and typ in (None, "object") and "properties" not in node:
        return _open_object
    if typ == "object":
        props = node.get("properties")
        if props:
            required = set(node.get("required", []))
            fields = {k: strategy(v, f"{path}.{k}") for k, v in props.items()}
            return _bad(
                st.fixed_dictionaries(
                    {k: s for k, s in fields.items() if k in required},
                    optional={k: s for k, s in fields.items() if k not in required},
                ),
                _wrong_type,
                p=60,
            )
        values = strategy(node.get("additionalProperties", {"type": "string"}), f"{path}[*]")
        keys = st.from_regex(r"[a-z][a-z0-9./-]{0,15}", fullmatch=True)
        return st.dictionaries(keys, values, max_size=min(int(node.get("maxProperties", 3)), 3))
    if typ == "array":
        items = strategy(node["items"], f"{path}[]")
        return st.lists(items, min_size=int(node.get("minItems", 0)), max_size=min(int(node.get("maxItems", 3)), 3))
    if typ == "integer":
        return _integer(node)
    if typ == "number":
        return _number(node)
    if typ == "boolean":
        return _bad(st.booleans(), st.text(max_size=3))
    if typ == "string":
        return _string(node, path)
    return _json_scalars


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def specs(known_bad: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Whole specs: generated ones, and generated ones with a known-bad case merged in (about one in five)."""
    generated = strategy(SPEC_SCHEMA).filter(lambda s: isinstance(s, dict))
    model = st.sampled_from(MODEL_IDS).map(lambda m: {"model": {"name": m}})
    base = st.tuples(model, generated).map(lambda t: _merge(t[0], t[1]) if isinstance(t[1], dict) else t[0])
    with_bad = st.tuples(base, st.sampled_from(known_bad)).map(lambda t: _merge(t[0], t[1]))
    return st.integers(0, 4).flatmap(lambda n: with_bad if n == 0 else base)
