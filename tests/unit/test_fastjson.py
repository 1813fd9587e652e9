"""vlm_operator.fastjson: the same documents as ``json`` (the operator's own calls and kopf's watch streams), faster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_operator import fastjson

CHILDREN = Path(__file__).parents[1] / "data" / "children" / "vlm-0000.json"


def test_it_decodes_what_json_decodes_from_bytes_and_str() -> None:
    raw = CHILDREN.read_bytes()
    want = json.loads(raw)
    assert fastjson.accelerated()  # orjson is a dependency
    assert fastjson.loads(raw) == want
    assert fastjson.loads(raw.decode()) == want
    event = json.dumps({"type": "MODIFIED", "object": want["created"]["deployment"]}).encode()
    assert fastjson.loads(event) == json.loads(event)


def test_the_api_servers_numbers_decode_exactly() -> None:
    # int64 and float64 are all the API server writes (it decodes numbers into those and writes them back)
    doc = b'{"a": 9223372036854775807, "b": -9223372036854775808, "f": 1.5, "e": 1e+300, "s": "\\u00e9"}'
    got = fastjson.loads(doc)
    assert got == json.loads(doc) and type(got["a"]) is int and got["s"] == "\u00e9"


def test_invalid_json_raises_jsons_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads(b'{"unterminated": ')


def test_kopfs_watch_stream_decodes_with_it_and_keeps_the_rest_of_json() -> None:
    from kopf._cogs.clients import api

    before = api.json
    try:
        assert fastjson.install_in_kopf() and fastjson.install_in_kopf()  # idempotent
        assert api.json.loads is fastjson.loads
        assert api.json.dumps is json.dumps and api.json.JSONDecodeError is json.JSONDecodeError
    finally:
        api.json = before  # type: ignore[attr-defined]
