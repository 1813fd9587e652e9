"""Shared plumbing for the API models: the base class, bounded string types and CEL rules.

Every API model derives from :class:`ApiModel`. It is frozen (the spec is parsed once at the boundary and then only
read), forbids unknown fields (the API server has already pruned them, so an unknown key here is a bug), takes both
the camelCase YAML names and the Python names, and turns each attribute docstring into the field description that the
CRD generator copies into the schema, so that ``kubectl explain`` shows the same text as the code.

Cross-field rules are declared once per model as :class:`CelRule` objects in ``__cel__``. The CRD generator emits
them as ``x-kubernetes-validations``; the model's own validator raises :meth:`CelRule.error` for the same condition,
so the API server and the Python code (webhook, CLI, estimator) reject a spec with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

#: Key the CRD generator turns into a schema ``default``. Only a few fields get a server-side default: the API server
#: would otherwise write every default into every stored object, and some rules need to see what the user wrote.
CRD_DEFAULT = "x-vlmops-crd-default"


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry and the Python check that mirrors it."""

    rule: str
    message: str
    #: Path relative to the object the rule is attached to, e.g. ``.maxReplicas``; shown as the failing field.
    field_path: str | None = None
    #: Names the offending value, e.g. the flag in ``extraArgs`` that a typed field owns: a format (``%s``, ``%d``)
    #: and the CEL expressions that fill it. The API server then answers ``<message>: <value>``
    #: (``messageExpression``, falling back to ``message`` if it cannot be evaluated); the Python mirror passes the
    #: same words to :meth:`error`. One ``format`` call and no ``+``: the API server estimates the cost of a string
    #: concatenation from the operands' sizes, and the size of ``string(int)`` is unknown, so ``'a' + string(n)``
    #: is refused as too expensive, while ``'a %d'.format([n])`` is not.
    value: tuple[str, ...] | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.value:
            fmt, *args = self.value
            text = cel_string((self.message + ": ").replace("%", "%%") + fmt)
            out["messageExpression"] = f"{text}.format([{', '.join(args)}])"
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def error(self, value: str | None = None) -> ValueError:
        """The exception a model validator raises when the condition the rule guards is violated; ``value`` is what
        :attr:`value` evaluates to in CEL, so both say ``<message>: <value>``."""
        return ValueError(self.message if value is None else f"{self.message}: {value}")


def cel_string(text: str) -> str:
    """``text`` as a CEL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ApiModel(BaseModel):
    """Base of every VLMDeployment API model."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        use_attribute_docstrings=True,
        serialize_by_alias=True,
    )

    #: CEL rules attached to this model's object schema; each model's validator mirrors them.
    __cel__: ClassVar[tuple[CelRule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        rules = cls.__dict__.get("__cel__", ())
        if rules:
            target["x-kubernetes-validations"] = [r.to_schema() for r in rules]
        return schema

    def is_set(self, name: str) -> bool:
        """Whether the user wrote field ``name`` (Python name), as opposed to taking its default."""
        return name in self.model_fields_set

    def to_k8s(self) -> dict[str, Any]:
        """The camelCase dict as it would appear in YAML, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Bounded strings. The API server estimates the cost of each CEL rule from these bounds; without them a rule over a
# list of strings is refused as too expensive. The same bounds apply in Python.
Name = Annotated[str, Field(min_length=1, max_length=253)]
"""A Kubernetes object name (DNS subdomain length)."""
ShortStr = Annotated[str, Field(max_length=128)]
MediumStr = Annotated[str, Field(max_length=1024)]
LongStr = Annotated[str, Field(max_length=4096)]
Quantity = Annotated[
    str,
    Field(
        max_length=64,
        pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$",
    ),
]
"""A Kubernetes resource quantity written as a string (``16Gi``, ``500m``, ``8``). No int-or-string union."""
LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]

_QUANTITY_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(q: str) -> float:
    """The value of a quantity string matching :data:`Quantity` (``"16Gi"`` -> 17179869184.0)."""
    num = q.rstrip("mkKMGTPEi")  # ``K`` too: the ``Ki`` suffix (a bare ``K`` does not match Quantity)
    suffix = q[len(num) :]
    return float(num) * _QUANTITY_SUFFIX[suffix]
