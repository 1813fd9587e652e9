"""parse_quantity reads every suffix the Quantity pattern admits (``Ki`` was read as ``K`` + ``i`` and failed)."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter

from vlm_operator.api._base import _QUANTITY_SUFFIX, Quantity, parse_quantity


@pytest.mark.parametrize("suffix", sorted(_QUANTITY_SUFFIX))
def test_every_suffix_the_pattern_admits_parses(suffix: str) -> None:
    q = f"2.5{suffix}"
    assert TypeAdapter(Quantity).validate_python(q) == q  # admitted by the schema
    assert parse_quantity(q) == pytest.approx(2.5 * _QUANTITY_SUFFIX[suffix])


def test_the_generated_spec_that_found_it() -> None:
    assert parse_quantity("2.5331757567275423304100640Ki") == pytest.approx(2.5331757567275423304100640 * 1024)
    assert parse_quantity("512Ki") == 512 * 1024 and parse_quantity("16Gi") == 16 * 2**30
    assert parse_quantity("500m") == pytest.approx(0.5) and parse_quantity("8") == 8


def test_the_suffix_table_and_the_pattern_agree() -> None:
    pattern = TypeAdapter(Quantity).json_schema()["pattern"]
    admitted = re.search(r"\(([A-Za-z|]+)\)\?\$$", pattern)
    assert admitted is not None
    assert set(admitted.group(1).split("|")) == set(_QUANTITY_SUFFIX) - {""}
