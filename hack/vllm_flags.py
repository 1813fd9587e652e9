#!/usr/bin/env python3
"""Extract the `vllm serve` CLI flags of real vLLM releases into a committed JSON table.

    python hack/vllm_flags.py            # (re)generate operator/vlm_operator/releases/data/vllm_flags.json
                                         # and operator/vlm_operator/releases/data/vllm_architectures.json
    python hack/vllm_flags.py --check    # regenerate into temp files; exit 1 if either differs from the committed one

How it works
------------
* Release artifacts come from PyPI: the file list and sha256 digests from the JSON API
  (https://pypi.org/pypi/vllm/<version>/json, falling back to the project document https://pypi.org/pypi/vllm/json,
  whose ``releases`` map has the same file records). We prefer the sdist; a release without one (0.4.0 only has
  wheels) uses its smallest wheel. Files are cached in ``~/.cache/vlm-operator/vllm-sdists/`` (outside the
  repository; override with ``VLM_VLLM_SDIST_CACHE``) and every file is checked against PyPI's sha256 before use.
* vLLM is never imported. The Python sources are read from the archive and the argparse construction code is
  interpreted *abstractly* over the ``ast``:
  - 0.4.x-0.5.1: ``make_arg_parser()`` in ``vllm/entrypoints/openai/cli_args.py`` (the OpenAI api_server); the
    command was ``python -m vllm.entrypoints.openai.api_server --model M`` (``vllm serve MODEL`` exists since
    v0.5.2, vLLM #5090).
  - 0.5.2-0.7.x: the ``serve`` sub-parser built in ``vllm/scripts.py:main``.
  - later: ``ServeSubcommand.subparser_init`` in ``vllm/entrypoints/cli/serve.py``.
  Calls such as ``EngineArgs.add_cli_args(parser)``, ``make_arg_parser(parser)``, ``FrontendArgs.add_cli_args``,
  ``cls._customize_cli_kwargs(kwargs)`` are followed. ``parser.add_argument("--x", ...)`` records a flag.
* From 2025 most flags are generated from config dataclass fields, ``parser.add_argument("--max-model-len",
  **model_kwargs["max_model_len"])`` with ``model_kwargs = get_kwargs(ModelConfig)`` (vllm/engine/arg_utils.py).
  ``get_kwargs`` is emulated from the field annotations with the rules of
  ``vllm/engine/arg_utils.py:_compute_kwargs``: a bool field becomes ``argparse.BooleanOptionalAction``
  (``--x`` and ``--no-x``), a Literal gives ``choices``, list/tuple/set give ``nargs="+"``, a dict or a config
  dataclass takes JSON, int/float/str take a value.
* Conditions the interpreter cannot decide (``if not ("serve" in sys.argv ...)``) take both branches.

* The model architectures each release serves come from the same archives: the module-level ``_*_MODELS`` dict
  literals of ``vllm/model_executor/models/registry.py`` (``models/__init__.py`` before 0.6.3), read with ``ast``
  (``**other`` expansions followed). Served = the keys of ``_VLLM_MODELS`` (``_MODELS`` before 0.6.3); the kind of an
  architecture (text, multimodal, pooling, speculative, transformers) is the category dict that holds it in the newest
  release that serves it; ``_PREVIOUSLY_SUPPORTED_MODELS`` (from 0.10.0) is vLLM's own "last release" note. The
  table lists each architecture once with the spans of covered releases that serve it.

Every flag record has ``kind`` (``store_true``, ``store_false``, ``boolean-optional``, ``value``, ``json-dict``,
``kv-pairs``, ``optional-value`` or ``help``), and when known ``aliases``, ``choices``, ``nargs``, ``type`` and
``deprecated``. The output is deterministic: sorted keys, releases in version order, no timestamps.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import difflib
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "operator" / "vlm_operator" / "releases" / "data" / "vllm_flags.json"
ARCH_TABLE = REPO / "operator" / "vlm_operator" / "releases" / "data" / "vllm_architectures.json"
PYPI_JSON = "https://pypi.org/pypi/vllm/json"
PYPI_VERSION_JSON = "https://pypi.org/pypi/vllm/{version}/json"
SCHEMA_VERSION = 1

# Releases covered by the table. Every final release from 0.4.0 on that has an sdist on PyPI, plus 0.4.0 itself
# (wheels only). 0.15.0 and 0.15.1 publish only ~500 MB wheels and are skipped: lookups for them fall back to 0.14.1.
RELEASES: tuple[str, ...] = (
    "0.4.0",
    "0.4.1",
    "0.4.2",
    "0.4.3",
    "0.5.0",
    "0.5.1",
    "0.5.2",
    "0.5.3",
    "0.5.4",
    "0.5.5",
    "0.6.0",
    "0.6.1",
    "0.6.2",
    "0.6.3",
    "0.6.4",
    "0.6.5",
    "0.6.6",
    "0.7.0",
    "0.7.1",
    "0.7.2",
    "0.7.3",
    "0.8.0",
    "0.8.1",
    "0.8.2",
    "0.8.3",
    "0.8.4",
    "0.8.5",
    "0.9.0",
    "0.9.1",
    "0.9.2",
    "0.10.0",
    "0.10.1",
    "0.10.2",
    "0.11.0",
    "0.11.1",
    "0.11.2",
    "0.12.0",
    "0.13.0",
    "0.14.0",
    "0.14.1",
    "0.16.0",
    "0.17.0",
    "0.17.1",
    "0.18.0",
    "0.18.1",
    "0.19.0",
    "0.19.1",
    "0.20.0",
    "0.20.1",
    "0.20.2",
    "0.21.0",
    "0.22.0",
    "0.22.1",
    "0.23.0",
    "0.24.0",
    "0.25.0",
    "0.25.1",
    "0.26.0",
    "0.27.0",
    "0.27.1",
    "0.28.0",
    "0.29.0",
    "0.30.0",
    "0.31.0",
    "0.32.0",
    "0.33.0",
)

LEGACY_ENTRYPOINT = "python -m vllm.entrypoints.openai.api_server"
SERVE_ENTRYPOINT = "vllm serve"


# --------------------------------------------------------------------------------------------------------------
# PyPI download and cache
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    version: str
    filename: str
    packagetype: str
    sha256: str
    url: str


def cache_dir() -> Path:
    env = os.environ.get("VLM_VLLM_SDIST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vlm-operator" / "vllm-sdists"


def _get_json(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "vlm-operator-hack/1"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


_PROJECT_DOC: dict[str, Any] | None = None


def _release_files(version: str) -> tuple[str, list[dict[str, Any]]]:
    """The PyPI file records of one release, and the URL their relative links resolve against."""
    global _PROJECT_DOC
    url = PYPI_VERSION_JSON.format(version=version)
    try:
        doc = _get_json(url)
        files: list[dict[str, Any]] = doc["urls"]
        return url, files
    except Exception:
        if _PROJECT_DOC is None:
            _PROJECT_DOC = _get_json(PYPI_JSON)
        return PYPI_JSON, list(_PROJECT_DOC["releases"][version])


def pick_artifact(version: str) -> Artifact:
    base, files = _release_files(version)
    files = [f for f in files if not f.get("yanked")]
    sdists = [f for f in files if f["packagetype"] == "sdist"]
    if sdists:
        chosen = sdists[0]
    else:
        wheels = sorted(
            (f for f in files if f["packagetype"] == "bdist_wheel"), key=lambda f: (f["size"], f["filename"])
        )
        if not wheels:
            raise SystemExit(f"vllm {version}: no sdist or wheel on PyPI")
        chosen = wheels[0]
    return Artifact(
        version=version,
        filename=chosen["filename"],
        packagetype=chosen["packagetype"],
        sha256=chosen["digests"]["sha256"],
        url=urllib.parse.urljoin(base, chosen["url"]),
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(art: Artifact) -> Path:
    """Download ``art`` into the cache (if missing) and verify its sha256."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / art.filename
    if path.exists() and _sha256(path) == art.sha256:
        return path
    part = path.with_name(path.name + ".part")
    print(f"  downloading {art.url}", file=sys.stderr)
    req = urllib.request.Request(art.url, headers={"User-Agent": "vlm-operator-hack/1"})
    with urllib.request.urlopen(req, timeout=600) as resp, part.open("wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    got = _sha256(part)
    if got != art.sha256:
        part.unlink()
        raise SystemExit(f"{art.filename}: sha256 mismatch: PyPI says {art.sha256}, downloaded {got}")
    part.replace(path)
    return path


def read_sources(path: Path) -> dict[str, str]:
    """Map module name (``vllm.engine.arg_utils``) to source text for every ``vllm/**.py`` in the archive."""
    out: dict[str, str] = {}

    def add(member: str, data: bytes) -> None:
        parts = member.split("/")
        if "vllm" not in parts or not member.endswith(".py"):
            return
        parts = parts[parts.index("vllm") :]
        if len(parts) > 1 and parts[0] == "vllm" and parts[1] == "vllm":
            return
        mod = ".".join(parts)[: -len(".py")]
        mod = mod.removesuffix(".__init__")
        out.setdefault(mod, data.decode("utf-8", errors="replace"))

    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.startswith("vllm/") and name.endswith(".py"):
                    add(name, zf.read(name))
    else:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf:
                # sdist layout: vllm-<ver>/vllm/...; skip tests, benchmarks and examples.
                parts = m.name.split("/")
                if m.isfile() and len(parts) > 2 and parts[1] == "vllm" and m.name.endswith(".py"):
                    fh = tf.extractfile(m)
                    if fh is not None:
                        add("/".join(parts[1:]), fh.read())
    return out


# --------------------------------------------------------------------------------------------------------------
# Abstract values
# --------------------------------------------------------------------------------------------------------------


class Opaque:
    """A value the interpreter does not model; keeps the source text (used for ``type=`` / ``action=``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Opaque({self.text})"


@dataclass
class Module:
    name: str
    tree: ast.Module
    is_pkg: bool
    source: str
    defs: dict[str, ast.AST] = field(default_factory=dict)


@dataclass
class ClassVal:
    module: Module
    node: ast.ClassDef


@dataclass
class FuncVal:
    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef
    owner: ClassVal | None = None
    bound: Any = None  # cls for classmethods, instance for methods
    has_bound: bool = False


@dataclass
class ModuleVal:
    module: Module


@dataclass
class Instance:
    cls: ClassVal


@dataclass
class SuperVal:
    cls: ClassVal
    bound: Any


@dataclass
class FieldInfo:
    """A config dataclass field, as needed by the get_kwargs emulation."""

    name: str
    annotation: ast.expr
    module: Module
    doc: str


class DictVal(dict[str, Any]):
    """A mutable kwargs dict (the per-field dicts from ``get_kwargs`` and dict literals)."""


class KwargsTable(dict[str, DictVal]):
    """The result of ``get_kwargs(SomeConfig)``: field name -> argparse kwargs."""


@dataclass
class FlagRec:
    option_strings: list[str]
    kwargs: dict[str, Any]


@dataclass
class ParserVal:
    name: str
    add_help: bool = True
    flags: list[FlagRec] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)


@dataclass
class SubparsersVal:
    interp: Interpreter


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


UNKNOWN = Opaque("<unknown>")
MAX_DEPTH = 14

# Markers for the get_kwargs emulation (stored in DictVal["type"]).
DATACLASS_JSON = Opaque("<config dataclass: JSON>")


# --------------------------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------------------------


class Interpreter:
    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources
        self.modules: dict[str, Module] = {}
        self.subparsers: dict[str, ParserVal] = {}
        self.root_parsers: list[ParserVal] = []
        self.depth = 0
        self.stack: list[int] = []
        arg_utils = sources.get("vllm.engine.arg_utils", "")
        # _compute_kwargs rules that only newer releases have (see module docstring).
        self.rule_dataclass_json = "is_dataclass" in arg_utils
        self.rule_optional_value = "{bool, str, type(None)}" in arg_utils
        # `Literal[...] | str` gives a metavar instead of choices (literal_to_kwargs in newer releases)
        self.rule_literal_or_str_metavar = '"metavar" if contains_type(type_hints, str)' in arg_utils

    # ---- modules and names -------------------------------------------------------------------------------

    def module(self, name: str) -> Module | None:
        if name in self.modules:
            return self.modules[name]
        src = self.sources.get(name)
        if src is None:
            return None
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return None
        is_pkg = any(k.startswith(name + ".") for k in self.sources)
        mod = Module(name=name, tree=tree, is_pkg=is_pkg, source=src)
        self._collect_defs(mod, tree.body)
        self.modules[name] = mod
        return mod

    def _collect_defs(self, mod: Module, body: list[ast.stmt]) -> None:
        for st in body:
            if isinstance(st, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                mod.defs.setdefault(st.name, st)
            elif isinstance(st, ast.Assign):
                for t in st.targets:
                    if isinstance(t, ast.Name):
                        mod.defs.setdefault(t.id, st)
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                mod.defs.setdefault(st.target.id, st)
            elif isinstance(st, ast.ImportFrom | ast.Import):
                for alias in st.names:
                    local = alias.asname or alias.name.split(".")[0]
                    if alias.name != "*":
                        mod.defs.setdefault(local, st)
            elif isinstance(st, ast.If):
                self._collect_defs(mod, st.body)
                self._collect_defs(mod, st.orelse)
            elif isinstance(st, ast.Try):
                self._collect_defs(mod, st.body)
                for h in st.handlers:
                    self._collect_defs(mod, h.body)

    def _import_base(self, mod: Module, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        pkg = mod.name if mod.is_pkg else mod.name.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        return f"{pkg}.{node.module}" if node.module else pkg

    def resolve(self, mod: Module, name: str, _seen: set[tuple[str, str]] | None = None) -> Any:
        """Resolve a global name in ``mod`` to an abstract value (following imports and re-exports)."""
        seen = _seen if _seen is not None else set()
        if (mod.name, name) in seen:
            return Opaque(name)
        seen.add((mod.name, name))
        node = mod.defs.get(name)
        if node is None:
            return Opaque(name)
        if isinstance(node, ast.ClassDef):
            return ClassVal(mod, node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return FuncVal(mod, node)
        if isinstance(node, ast.Assign | ast.AnnAssign):
            if node.value is None:
                return Opaque(name)
            return self.eval(node.value, {}, mod)
        if isinstance(node, ast.ImportFrom):
            base = self._import_base(mod, node)
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    if not base.startswith("vllm"):
                        return Opaque(f"{base}.{alias.name}")
                    sub = self.module(f"{base}.{alias.name}")
                    target = self.module(base)
                    if target is not None and alias.name in target.defs:
                        return self.resolve(target, alias.name, seen)
                    if sub is not None:
                        return ModuleVal(sub)
                    return Opaque(f"{base}.{alias.name}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    m = self.module(alias.name)
                    return ModuleVal(m) if m is not None else Opaque(alias.name)
                if alias.asname is None and alias.name.split(".")[0] == name:
                    m = self.module(name)
                    return ModuleVal(m) if m is not None else Opaque(name)
        return Opaque(name)

    def resolve_type_node(self, mod: Module, name: str) -> tuple[Module, ast.AST] | None:
        """Like resolve, but returns the defining node (class or alias expression) for type analysis."""
        seen: set[tuple[str, str]] = set()
        cur = mod
        while (cur.name, name) not in seen:
            seen.add((cur.name, name))
            node = cur.defs.get(name)
            if node is None:
                return None
            if isinstance(node, ast.ClassDef):
                return cur, node
            if isinstance(node, ast.Assign | ast.AnnAssign):
                return (cur, node.value) if node.value is not None else None
            if isinstance(node, ast.ImportFrom):
                base = self._import_base(cur, node)
                alias = next(a for a in node.names if (a.asname or a.name) == name)
                target = self.module(base) if base.startswith("vllm") else None
                if target is None:
                    return None
                cur, name = target, alias.name
                continue
            return None
        return None

    # ---- class helpers -----------------------------------------------------------------------------------

    def mro(self, cls: ClassVal) -> list[ClassVal]:
        out: list[ClassVal] = []

        def visit(c: ClassVal) -> None:
            if any(o.node is c.node for o in out):
                return
            out.append(c)
            for b in c.node.bases:
                bv = self.eval(b, {}, c.module)
                if isinstance(bv, ClassVal):
                    visit(bv)

        visit(cls)
        return out

    def class_attr(self, cls: ClassVal, attr: str, bound: Any, start: int = 0) -> Any:
        for c in self.mro(cls)[start:]:
            for st in c.node.body:
                if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef) and st.name == attr:
                    decos = {ast.unparse(d) for d in st.decorator_list}
                    if "staticmethod" in decos:
                        return FuncVal(c.module, st, owner=c)
                    if "classmethod" in decos:
                        target = bound.cls if isinstance(bound, Instance) else bound
                        return FuncVal(c.module, st, owner=c, bound=target, has_bound=True)
                    if isinstance(bound, Instance):
                        return FuncVal(c.module, st, owner=c, bound=bound, has_bound=True)
                    return FuncVal(c.module, st, owner=c)
                if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in st.targets):
                    return self.eval(st.value, {}, c.module)
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.target.id == attr:
                    return self.eval(st.value, {}, c.module) if st.value is not None else Opaque(attr)
        return Opaque(f"{cls.node.name}.{attr}")

    def dataclass_fields(self, cls: ClassVal) -> list[FieldInfo]:
        fields: dict[str, FieldInfo] = {}
        for c in reversed(self.mro(cls)):
            body = c.node.body
            for i, st in enumerate(body):
                if not (isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)):
                    continue
                ann = ast.unparse(st.annotation)
                if "ClassVar" in ann or "InitVar" in ann:
                    continue
                doc = ""
                if i + 1 < len(body):
                    nxt = body[i + 1]
                    if (
                        isinstance(nxt, ast.Expr)
                        and isinstance(nxt.value, ast.Constant)
                        and isinstance(nxt.value.value, str)
                    ):
                        doc = nxt.value.value
                name = st.target.id
                if name in fields:
                    fields[name] = FieldInfo(name, st.annotation, c.module, doc or fields[name].doc)
                else:
                    fields[name] = FieldInfo(name, st.annotation, c.module, doc)
        return list(fields.values())

    # ---- get_kwargs emulation ----------------------------------------------------------------------------

    def type_hints(self, mod: Module, ann: ast.AST, depth: int = 0) -> list[tuple[str, Any]]:
        """Flatten an annotation into (category, detail) hints: bool/int/float/str/none/literal/list/tuple/set/
        dict/dataclass/other."""
        if depth > 12:
            return [("other", None)]
        if isinstance(ann, ast.Constant):
            if ann.value is None:
                return [("none", None)]
            if isinstance(ann.value, str):
                try:
                    return self.type_hints(mod, ast.parse(ann.value, mode="eval").body, depth + 1)
                except SyntaxError:
                    return [("other", None)]
            return [("other", None)]
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
            return self.type_hints(mod, ann.left, depth + 1) + self.type_hints(mod, ann.right, depth + 1)
        if isinstance(ann, ast.Subscript):
            base = ast.unparse(ann.value).split(".")[-1]
            args = list(ann.slice.elts) if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            if base == "Optional":
                return [*self.type_hints(mod, args[0], depth + 1), ("none", None)]
            if base == "Union":
                return [h for a in args for h in self.type_hints(mod, a, depth + 1)]
            if base in ("Annotated", "SkipValidation"):
                return self.type_hints(mod, args[0], depth + 1)
            if base == "Literal":
                values: list[Any] = []
                for a in args:
                    if isinstance(a, ast.Constant):
                        values.append(a.value)
                    else:
                        for cat, det in self.type_hints(mod, a, depth + 1):
                            if cat == "literal":
                                values.extend(det)
                return [("literal", values)]
            if base in ("list", "List", "Sequence", "MutableSequence"):
                return [("list", args[0])]
            if base in ("tuple", "Tuple"):
                return [("tuple", args)]
            if base in ("set", "Set", "frozenset"):
                return [("set", args[0])]
            if base in ("dict", "Dict", "Mapping", "MutableMapping", "TypedDict"):
                return [("dict", None)]
            return [("other", None)]
        if isinstance(ann, ast.Name | ast.Attribute):
            name = ast.unparse(ann)
            simple = {
                "bool": "bool",
                "int": "int",
                "float": "float",
                "str": "str",
                "None": "none",
                "dict": "dict",
                "Dict": "dict",
                "list": "list",
                "tuple": "tuple",
                "set": "set",
            }
            if name in simple:
                return [(simple[name], None)]
            if isinstance(ann, ast.Name):
                found = self.resolve_type_node(mod, ann.id)
                if found is not None:
                    fmod, node = found
                    if isinstance(node, ast.ClassDef):
                        return [self._class_category(ClassVal(fmod, node))]
                    return self.type_hints(fmod, node, depth + 1)
            return [("other", None)]
        return [("other", None)]

    def _class_category(self, cls: ClassVal) -> tuple[str, Any]:
        for c in self.mro(cls):
            decos = " ".join(ast.unparse(d) for d in c.node.decorator_list)
            bases = " ".join(ast.unparse(b) for b in c.node.bases)
            if re.search(r"\b(dict|Dict|TypedDict)\b", bases):
                return ("dict", None)
            if c is cls and re.search(r"\b(dataclass|config)\b", decos):
                return ("dataclass", cls.node.name)
        return ("other", None)

    def get_kwargs(self, cls: ClassVal) -> KwargsTable:
        table = KwargsTable()
        for f in self.dataclass_fields(cls):
            table[f.name] = self._field_kwargs(f)
        return table

    def _field_kwargs(self, f: FieldInfo) -> DictVal:
        hints = self.type_hints(f.module, f.annotation)
        cats = {c for c, _ in hints}
        kw = DictVal(help=f.doc)

        def detail(cat: str) -> Any:
            return next(d for c, d in hints if c == cat)

        def elem_kwargs(elem: ast.AST | None) -> None:
            kw["nargs"] = "+"
            if elem is None:
                kw["type"] = Opaque("str")
                return
            sub = self.type_hints(f.module, elem)
            subcats = {c for c, _ in sub}
            if "literal" in subcats:
                kw["choices"] = next(d for c, d in sub if c == "literal")
                kw["type"] = Opaque(type(kw["choices"][0]).__name__ if kw["choices"] else "str")
            elif subcats & {"int", "float", "str"}:
                kw["type"] = Opaque(next(c for c in ("int", "float", "str") if c in subcats))
            else:
                kw["type"] = Opaque("str")

        if "dataclass" in cats and self.rule_dataclass_json:
            kw["type"] = DATACLASS_JSON
        elif self.rule_optional_value and cats == {"bool", "str", "none"}:
            kw["type"] = Opaque("str")
            kw["nargs"] = "?"
            kw["const"] = True
        elif "bool" in cats:
            kw["action"] = Opaque("argparse.BooleanOptionalAction")
        elif "literal" in cats:
            literal = list(detail("literal"))
            if not (self.rule_literal_or_str_metavar and "str" in cats):
                kw["choices"] = literal
            kw["type"] = Opaque(type(literal[0]).__name__ if literal else "str")
        elif "tuple" in cats:
            args = detail("tuple")
            if args and not any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in args) and len(args) > 1:
                elem_kwargs(args[0])
                kw["nargs"] = len(args)
            else:
                elem_kwargs(args[0] if args else None)
        elif "list" in cats:
            elem_kwargs(detail("list"))
        elif "set" in cats:
            elem_kwargs(detail("set"))
        elif "int" in cats:
            kw["type"] = Opaque("int")
        elif "float" in cats:
            kw["type"] = Opaque("float")
        elif "dict" in cats:
            kw["type"] = Opaque("json.loads")
        else:
            kw["type"] = Opaque("str")
        return kw

    # ---- expression evaluation ---------------------------------------------------------------------------

    def eval(self, node: ast.AST | None, env: dict[str, Any], mod: Module) -> Any:
        if node is None:
            return None
        try:
            return self._eval(node, env, mod)
        except _Return:
            raise
        except RecursionError:
            return UNKNOWN
        except Exception:
            return Opaque(ast.unparse(node) if isinstance(node, ast.expr) else "<stmt>")

    def _eval(self, node: ast.AST, env: dict[str, Any], mod: Module) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            if node.id in mod.defs:
                return self.resolve(mod, node.id)
            return Opaque(node.id)
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(str(v.value))
                elif isinstance(v, ast.FormattedValue):
                    val = self.eval(v.value, env, mod)
                    if not isinstance(val, str | int | float):
                        return Opaque(ast.unparse(node))
                    parts.append(str(val))
            return "".join(parts)
        if isinstance(node, ast.Attribute):
            obj = self.eval(node.value, env, mod)
            return self.getattr(obj, node.attr, node)
        if isinstance(node, ast.Subscript):
            obj = self.eval(node.value, env, mod)
            key = self.eval(node.slice, env, mod)
            if isinstance(obj, dict | list | tuple | str) and not isinstance(key, Opaque):
                return obj[key]
            return Opaque(ast.unparse(node))
        if isinstance(node, ast.Dict):
            out = DictVal()
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    val = self.eval(v, env, mod)
                    if isinstance(val, dict):
                        out.update(val)
                else:
                    key = self.eval(k, env, mod)
                    if isinstance(key, str):
                        out[key] = self.eval(v, env, mod)
            return out
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items: list[Any] = []
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    val = self.eval(e.value, env, mod)
                    if isinstance(val, list | tuple):
                        items.extend(val)
                    else:
                        items.append(Opaque(ast.unparse(e)))
                else:
                    items.append(self.eval(e, env, mod))
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left, env, mod), self.eval(node.right, env, mod)
            if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(left, str | list | tuple):
                return left + right
            if isinstance(node.op, ast.BitOr) and isinstance(left, dict) and isinstance(right, dict):
                return DictVal({**left, **right})
            return Opaque(ast.unparse(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            val = self.eval(node.operand, env, mod)
            return UNKNOWN if isinstance(val, Opaque) else not val
        if isinstance(node, ast.BoolOp):
            vals = [self.eval(v, env, mod) for v in node.values]
            if any(isinstance(v, Opaque) for v in vals):
                return UNKNOWN
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = self.eval(node.left, env, mod), self.eval(node.comparators[0], env, mod)
            op = node.ops[0]
            if isinstance(left, Opaque) or isinstance(right, Opaque):
                return UNKNOWN
            if isinstance(op, ast.In):
                return left in right
            if isinstance(op, ast.NotIn):
                return left not in right
            if isinstance(op, ast.Is):
                return left is right
            if isinstance(op, ast.IsNot):
                return left is not right
            if isinstance(op, ast.Eq):
                return bool(left == right)
            return UNKNOWN
        if isinstance(node, ast.IfExp):
            test = self.eval(node.test, env, mod)
            if isinstance(test, Opaque):
                return Opaque(ast.unparse(node))
            return self.eval(node.body if test else node.orelse, env, mod)
        if isinstance(node, ast.Call):
            return self.call(node, env, mod)
        return Opaque(ast.unparse(node) if isinstance(node, ast.expr) else "<node>")

    def getattr(self, obj: Any, attr: str, node: ast.Attribute) -> Any:
        if isinstance(obj, ModuleVal):
            if attr in obj.module.defs:
                return self.resolve(obj.module, attr)
            sub = self.module(f"{obj.module.name}.{attr}")
            return ModuleVal(sub) if sub is not None else Opaque(ast.unparse(node))
        if isinstance(obj, ClassVal):
            return self.class_attr(obj, attr, obj)
        if isinstance(obj, Instance):
            return self.class_attr(obj.cls, attr, obj)
        if isinstance(obj, SuperVal):
            return self.class_attr(obj.cls, attr, obj.bound, start=1)
        if isinstance(obj, ParserVal | SubparsersVal | DictVal | KwargsTable | str | list):
            return ("method", obj, attr)
        if isinstance(obj, Opaque):
            return Opaque(f"{obj.text}.{attr}")
        return Opaque(ast.unparse(node))

    # ---- calls ---------------------------------------------------------------------------------------------

    def call(self, node: ast.Call, env: dict[str, Any], mod: Module) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "super" and not node.args:
            cls = env.get("__class__")
            if isinstance(cls, ClassVal):
                return SuperVal(cls, env.get("__self__"))
            return UNKNOWN
        callee = self.eval(func, env, mod)
        args: list[Any] = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                val = self.eval(a.value, env, mod)
                args.extend(val if isinstance(val, list | tuple) else [Opaque(ast.unparse(a))])
            else:
                args.append(self.eval(a, env, mod))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            val = self.eval(kw.value, env, mod)
            if kw.arg is None:
                if isinstance(val, dict):
                    kwargs.update(val)
            else:
                # keep the source text of types and actions for the record
                if kw.arg in ("type", "action") and isinstance(val, FuncVal | ClassVal | Opaque | type(None)):
                    val = Opaque(ast.unparse(kw.value)) if not isinstance(val, Opaque) else val
                kwargs[kw.arg] = val
        text = ast.unparse(func)
        if isinstance(callee, tuple) and len(callee) == 3 and callee[0] == "method":
            return self.method(callee[1], callee[2], args, kwargs, node)
        name = text.split(".")[-1]
        if name in ("get_kwargs", "_compute_kwargs") and args and isinstance(args[0], ClassVal):
            return self.get_kwargs(args[0])
        if name.endswith("ArgumentParser") and not isinstance(callee, FuncVal):
            p = ParserVal(name="root", add_help=kwargs.get("add_help", True) is not False)
            self.root_parsers.append(p)
            return p
        if name == "deepcopy" and args:
            return copy.deepcopy(args[0]) if isinstance(args[0], dict) else args[0]
        if name == "dict" and not args:
            return DictVal(kwargs)
        if name == "dict" and args and isinstance(args[0], dict):
            return DictVal({**args[0], **kwargs})
        if isinstance(callee, FuncVal):
            interesting = any(
                isinstance(v, ParserVal | SubparsersVal | KwargsTable | DictVal | ClassVal)
                for v in [*args, *kwargs.values()]
            ) or callee.node.name in ("make_arg_parser", "add_cli_args", "subparser_init")
            if interesting:
                return self.invoke(callee, args, kwargs)
            return Opaque(ast.unparse(node))
        if isinstance(callee, ClassVal):
            return Instance(callee)
        return Opaque(ast.unparse(node))

    def method(self, obj: Any, attr: str, args: list[Any], kwargs: dict[str, Any], node: ast.Call) -> Any:
        if isinstance(obj, ParserVal):
            if attr == "add_argument":
                names = [a for a in args if isinstance(a, str)]
                if names and not names[0].startswith("-"):
                    obj.positionals.append(names[0])
                elif names:
                    obj.flags.append(FlagRec(names, dict(kwargs)))
                return Opaque("<action>")
            if attr in ("add_argument_group", "add_mutually_exclusive_group"):
                return obj
            if attr == "add_subparsers":
                return SubparsersVal(self)
            return Opaque(f"parser.{attr}")
        if isinstance(obj, SubparsersVal):
            if attr == "add_parser":
                name = args[0] if args and isinstance(args[0], str) else "<subcommand>"
                p = ParserVal(name=name, add_help=kwargs.get("add_help", True) is not False)
                self.subparsers.setdefault(name, p)
                return p
            return Opaque(f"subparsers.{attr}")
        if isinstance(obj, dict):
            if attr == "items":
                return [(k, v) for k, v in obj.items()]
            if attr == "keys":
                return list(obj.keys())
            if attr == "values":
                return list(obj.values())
            if attr == "get":
                return obj.get(args[0], args[1] if len(args) > 1 else None) if args else None
            if attr == "pop" and args:
                return obj.pop(args[0], args[1] if len(args) > 1 else None)
            if attr == "update":
                if args and isinstance(args[0], dict):
                    obj.update(args[0])
                obj.update(kwargs)
                return None
            if attr == "copy":
                return copy.copy(obj)
            if attr == "setdefault" and args:
                return obj.setdefault(args[0], args[1] if len(args) > 1 else None)
            return Opaque(f"dict.{attr}")
        if isinstance(obj, list):
            if attr == "remove" and args and args[0] in obj:
                obj.remove(args[0])
            elif attr == "append" and args:
                obj.append(args[0])
            elif attr == "extend" and args and isinstance(args[0], list | tuple):
                obj.extend(args[0])
            return None
        string_methods = ("replace", "lower", "upper", "strip", "removeprefix", "removesuffix")
        if isinstance(obj, str) and attr in string_methods and all(isinstance(a, str) for a in args):
            return getattr(obj, attr)(*args)
        return Opaque(ast.unparse(node))

    def invoke(self, fn: FuncVal, args: list[Any], kwargs: dict[str, Any]) -> Any:
        key = id(fn.node)
        if self.depth >= MAX_DEPTH or self.stack.count(key) >= 2:
            return UNKNOWN
        a = fn.node.args
        params = [p.arg for p in [*a.posonlyargs, *a.args]]
        env: dict[str, Any] = {}
        if fn.has_bound:
            args = [fn.bound, *args]
        defaults = a.defaults
        for i, p in enumerate(params):
            if i < len(args):
                env[p] = args[i]
            elif p in kwargs:
                env[p] = kwargs[p]
            else:
                di = i - (len(params) - len(defaults))
                env[p] = self.eval(defaults[di], {}, fn.module) if di >= 0 else UNKNOWN
        for kwonly, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
            env[kwonly.arg] = kwargs.get(kwonly.arg, self.eval(d, {}, fn.module) if d is not None else UNKNOWN)
        if fn.owner is not None:
            env["__class__"] = fn.owner
            env["__self__"] = fn.bound if fn.has_bound else None
        self.depth += 1
        self.stack.append(key)
        try:
            self.exec_body(fn.node.body, env, fn.module)
        except _Return as r:
            return r.value
        finally:
            self.depth -= 1
            self.stack.pop()
        return None

    # ---- statements ----------------------------------------------------------------------------------------

    def exec_body(self, body: list[ast.stmt], env: dict[str, Any], mod: Module) -> None:
        for st in body:
            self.exec_stmt(st, env, mod)

    def assign(self, target: ast.expr, value: Any, env: dict[str, Any], mod: Module) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Subscript):
            obj = self.eval(target.value, env, mod)
            key = self.eval(target.slice, env, mod)
            if isinstance(obj, dict) and isinstance(key, str):
                obj[key] = value
        elif isinstance(target, ast.Tuple | ast.List) and isinstance(value, tuple | list):
            for t, v in zip(target.elts, value, strict=False):
                self.assign(t, v, env, mod)

    def exec_stmt(self, st: ast.stmt, env: dict[str, Any], mod: Module) -> None:
        if isinstance(st, ast.Expr):
            self.eval(st.value, env, mod)
        elif isinstance(st, ast.Assign):
            value = self.eval(st.value, env, mod)
            if (
                isinstance(value, Opaque)
                and any(isinstance(t, ast.Subscript) for t in st.targets)
                and isinstance(st.value, ast.Name | ast.Attribute | ast.Call)
            ):
                value = Opaque(ast.unparse(st.value))
            for t in st.targets:
                self.assign(t, value, env, mod)
        elif isinstance(st, ast.AnnAssign) and st.value is not None:
            self.assign(st.target, self.eval(st.value, env, mod), env, mod)
        elif isinstance(st, ast.Return):
            raise _Return(self.eval(st.value, env, mod) if st.value is not None else None)
        elif isinstance(st, ast.If):
            test = self.eval(st.test, env, mod)
            if isinstance(test, Opaque):
                # Undecidable at build time: the flag set is the union of both branches.
                for branch in (st.body, st.orelse):
                    with contextlib.suppress(_Return):
                        self.exec_body(branch, env, mod)
            else:
                self.exec_body(st.body if test else st.orelse, env, mod)
        elif isinstance(st, ast.For):
            it = self.eval(st.iter, env, mod)
            if isinstance(it, list | tuple):
                for item in it:
                    self.assign(st.target, item, env, mod)
                    self.exec_body(st.body, env, mod)
        elif isinstance(st, ast.With):
            self.exec_body(st.body, env, mod)
        elif isinstance(st, ast.Try):
            self.exec_body(st.body, env, mod)
            self.exec_body(st.orelse, env, mod)
            self.exec_body(st.finalbody, env, mod)
        elif isinstance(st, ast.Delete):
            for t in st.targets:
                if isinstance(t, ast.Subscript):
                    obj = self.eval(t.value, env, mod)
                    key = self.eval(t.slice, env, mod)
                    if isinstance(obj, dict) and isinstance(key, str):
                        obj.pop(key, None)
        elif isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef):
            env[st.name] = FuncVal(mod, st)


# --------------------------------------------------------------------------------------------------------------
# From interpreted parsers to table records
# --------------------------------------------------------------------------------------------------------------

_DEPRECATED_RE = re.compile(
    r"\[deprecated\]|\bis deprecated\b|\bdeprecated[:.,;]|\bdeprecated (?:and|in favou?r|since)\b"
    r"|\bwill be removed in\b|^\s*deprecated\b",
    re.IGNORECASE,
)


def _text(v: Any) -> str:
    if isinstance(v, Opaque):
        return v.text
    if isinstance(v, FuncVal):
        return v.node.name
    if isinstance(v, ClassVal):
        return v.node.name
    return str(v)


def _json_scalar(v: Any) -> Any:
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return _text(v)


def flag_record(rec: FlagRec) -> dict[str, Any]:
    kw = rec.kwargs
    action = _text(kw["action"]) if "action" in kw and kw["action"] is not None else "store"
    type_text = _text(kw["type"]) if "type" in kw and kw["type"] is not None else ""
    nargs = kw.get("nargs")
    out: dict[str, Any] = {}
    if action.endswith("BooleanOptionalAction"):
        kind = "boolean-optional"
    elif action in ("store_true", "store_false", "help", "version"):
        kind = action
    elif action in ("store_const", "count", "append_const") or nargs == 0:
        kind = "store_true"
    elif nargs == "?" and "const" in kw:
        kind = "optional-value"
    elif kw.get("type") is DATACLASS_JSON or re.search(r"json|optional_dict|union_dict_and_str|from_cli", type_text):
        kind = "json-dict"
    elif "nullable_kvs" in type_text:
        kind = "kv-pairs"
    else:
        kind = "value"
    out["kind"] = kind
    if kind in ("value", "optional-value", "kv-pairs", "json-dict"):
        if kw.get("type") is DATACLASS_JSON:
            out["type"] = "json"
        elif type_text:
            out["type"] = type_text
        else:
            out["type"] = "str"
        if action == "append":
            out["repeatable"] = True
        elif action != "store" and kind == "value":
            out["action"] = action
        if nargs is not None:
            out["nargs"] = nargs if isinstance(nargs, int | str) else _text(nargs)
        choices = kw.get("choices")
        if isinstance(choices, list | tuple):
            vals = [_json_scalar(c) for c in choices]
            if not any(isinstance(c, Opaque) for c in choices):
                out["choices"] = sorted({json.dumps(v) for v in vals if v is not None})
                out["choices"] = [json.loads(v) for v in out["choices"]]
    help_text = kw.get("help")
    if kw.get("deprecated") is True or (isinstance(help_text, str) and _DEPRECATED_RE.search(help_text)):
        out["deprecated"] = True
    return out


def parser_table(parser: ParserVal) -> dict[str, dict[str, Any]]:
    flags: dict[str, dict[str, Any]] = {}
    seen_strings: set[str] = set()
    recs = list(parser.flags)
    if parser.add_help:
        recs.insert(0, FlagRec(["-h", "--help"], {"action": "help"}))
    for rec in recs:
        strings = [s for s in rec.option_strings if s not in seen_strings]
        if not strings:
            continue
        longs = [s for s in strings if s.startswith("--")]
        canonical = longs[0] if longs else strings[0]
        record = flag_record(rec)
        aliases = sorted(s for s in strings if s != canonical)
        if aliases:
            record["aliases"] = aliases
        seen_strings.update(strings)
        if record["kind"] == "boolean-optional":
            seen_strings.update("--no-" + s[2:] for s in strings if s.startswith("--"))
        flags[canonical] = record
    return dict(sorted(flags.items()))


def extract(sources: dict[str, str]) -> tuple[str, list[str], dict[str, dict[str, Any]]]:
    """Return (entrypoint, positionals, flags) for one release's sources."""
    interp = Interpreter(sources)
    serve_mod = interp.module("vllm.entrypoints.cli.serve")
    if serve_mod is not None:
        cls = next(
            (
                ClassVal(serve_mod, n)
                for n in serve_mod.tree.body
                if isinstance(n, ast.ClassDef)
                and any(isinstance(s, ast.FunctionDef) and s.name == "subparser_init" for s in n.body)
            ),
            None,
        )
        if cls is None:
            raise SystemExit("vllm/entrypoints/cli/serve.py has no class with subparser_init")
        fn = interp.class_attr(cls, "subparser_init", Instance(cls))
        result = interp.invoke(fn, [SubparsersVal(interp)], {})
        parser = result if isinstance(result, ParserVal) else interp.subparsers.get("serve")
        entry = SERVE_ENTRYPOINT
    elif (scripts := interp.module("vllm.scripts")) is not None:
        interp.invoke(FuncVal(scripts, _func(scripts, "main")), [], {})
        parser = interp.subparsers.get("serve")
        entry = SERVE_ENTRYPOINT
    else:
        cli = interp.module("vllm.entrypoints.openai.cli_args")
        if cli is not None and "make_arg_parser" in cli.defs:
            result = interp.invoke(FuncVal(cli, _func(cli, "make_arg_parser")), [], {})
        else:
            api = interp.module("vllm.entrypoints.openai.api_server")
            if api is None:
                raise SystemExit("no OpenAI api_server module")
            result = interp.invoke(FuncVal(api, _func(api, "parse_args")), [], {})
        parser = result if isinstance(result, ParserVal) else (interp.root_parsers[0] if interp.root_parsers else None)
        entry = LEGACY_ENTRYPOINT
    if not isinstance(parser, ParserVal) or not parser.flags:
        raise SystemExit("could not find the serve parser")
    return entry, parser.positionals, parser_table(parser)


def _func(mod: Module, name: str) -> ast.FunctionDef:
    node = mod.defs.get(name)
    if not isinstance(node, ast.FunctionDef):
        raise SystemExit(f"{mod.name}.{name} not found")
    return node


# --------------------------------------------------------------------------------------------------------------
# Table assembly and output
# --------------------------------------------------------------------------------------------------------------


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def build_release(version: str) -> dict[str, Any]:
    art = pick_artifact(version)
    path = fetch(art)
    sources = read_sources(path)
    entry, positionals, flags = extract(sources)
    return {
        "artifact": {"filename": art.filename, "packagetype": art.packagetype, "sha256": art.sha256},
        "entrypoint": entry,
        "flags": flags,
        "positionals": positionals,
        "version": version,
        "_architectures": extract_architectures(sources),
    }


# --------------------------------------------------------------------------------------------------------------
# Model registry (architectures served)
# --------------------------------------------------------------------------------------------------------------

_REGISTRY_MODULES = ("vllm.model_executor.models.registry", "vllm.model_executor.models")
#: Registry dicts that are not sets of served architectures.
_NOT_SERVED = {
    "_OOT_MODELS",
    "_OOT_SUPPORTED_MODELS",
    "_PREVIOUSLY_SUPPORTED_MODELS",
    "_ROCM_PARTIALLY_SUPPORTED_MODELS",
}


def _registry_kind(dict_name: str) -> str:
    if "MULTIMODAL" in dict_name or "CONDITIONAL_GENERATION" in dict_name:
        return "multimodal"
    if "SPECULATIVE" in dict_name:
        return "speculative"
    if "TRANSFORMERS" in dict_name:
        return "transformers"
    if any(w in dict_name for w in ("EMBEDDING", "CROSS_ENCODER", "LATE_INTERACTION", "REWARD", "CLASSIFICATION")):
        return "pooling"
    return "text"


def extract_architectures(sources: dict[str, str]) -> dict[str, Any]:
    """``{"served": {arch: kind}, "previously_supported": {arch: last release}}`` of one release."""
    src = next((sources[m] for m in _REGISTRY_MODULES if m in sources and "_MODELS" in sources[m]), None)
    if src is None:
        raise SystemExit("no model registry found")
    dicts: dict[str, dict[str, str]] = {}
    previously: dict[str, str] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        if not re.fullmatch(r"_[A-Z0-9_]*MODELS", name) or not isinstance(value, ast.Dict):
            continue
        if name == "_PREVIOUSLY_SUPPORTED_MODELS":
            previously = {
                k.value: v.value
                for k, v in zip(value.keys, value.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and isinstance(k.value, str)
            }
            continue
        if name in _NOT_SERVED:
            continue
        entries: dict[str, str] = {}
        for k, v in zip(value.keys, value.values, strict=True):
            if k is None and isinstance(v, ast.Name):
                entries.update(dicts.get(v.id, {}))
            elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                entries[k.value] = _registry_kind(name)
        dicts[name] = entries
    served = dicts.get("_VLLM_MODELS") or dicts.get("_MODELS")
    if not served:
        raise SystemExit("the model registry has neither _VLLM_MODELS nor _MODELS")
    return {"served": served, "previously_supported": previously}


def render_architectures(releases: list[dict[str, Any]]) -> str:
    """One line per architecture: its kind and the spans of covered releases that serve it (deterministic)."""
    ordered = sorted(releases, key=lambda r: version_key(r["version"]))
    versions = [r["version"] for r in ordered]
    served_in: dict[str, list[int]] = {}
    kind: dict[str, str] = {}
    for i, rel in enumerate(ordered):
        for arch, k in rel["_architectures"]["served"].items():
            served_in.setdefault(arch, []).append(i)
            kind[arch] = k  # the newest release's category wins
    newest_previously: dict[str, str] = ordered[-1]["_architectures"]["previously_supported"]

    def spans(idx: list[int]) -> list[list[str]]:
        out: list[list[int]] = []
        for i in idx:
            if out and out[-1][1] == i - 1:
                out[-1][1] = i
            else:
                out.append([i, i])
        return [[versions[a], versions[b]] for a, b in out]

    def dumps(v: Any) -> str:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    lines = ["{", '  "architectures": {']
    names = sorted(served_in)
    for n, arch in enumerate(names):
        rec: dict[str, Any] = {"kind": kind[arch], "served": spans(served_in[arch])}
        if arch in newest_previously:
            rec["last_release"] = newest_previously[arch]
        lines.append(f"    {dumps(arch)}: {dumps(rec)}" + ("," if n < len(names) - 1 else ""))
    lines.append("  },")
    lines.append(f'  "generator": {dumps("hack/vllm_flags.py")},')
    lines.append(f'  "releases": {dumps(versions)},')
    lines.append(f'  "schema_version": {SCHEMA_VERSION},')
    lines.append(
        f'  "source": {dumps("vllm/model_executor/models/registry.py of the PyPI artifacts in vllm_flags.json")}'
    )
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)
    return text


def render(releases: list[dict[str, Any]]) -> str:
    """Serialise deterministically: sorted keys, one flag per line (for readable diffs)."""

    def dumps(v: Any) -> str:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    lines = ["{"]
    lines.append(f'  "generator": {dumps("hack/vllm_flags.py")},')
    lines.append('  "releases": [')
    ordered = sorted(releases, key=lambda r: version_key(r["version"]))
    for ri, rel in enumerate(ordered):
        lines.append("    {")
        lines.append(f'      "artifact": {dumps(rel["artifact"])},')
        lines.append(f'      "entrypoint": {dumps(rel["entrypoint"])},')
        lines.append('      "flags": {')
        items = sorted(rel["flags"].items())
        for fi, (name, rec) in enumerate(items):
            comma = "," if fi < len(items) - 1 else ""
            lines.append(f"        {dumps(name)}: {dumps(rec)}{comma}")
        lines.append("      },")
        lines.append(f'      "positionals": {dumps(rel["positionals"])},')
        lines.append(f'      "version": {dumps(rel["version"])}')
        lines.append("    }" + ("," if ri < len(ordered) - 1 else ""))
    lines.append("  ],")
    lines.append(f'  "schema_version": {SCHEMA_VERSION},')
    lines.append(f'  "source": {dumps("PyPI vllm release artifacts, parsed with ast (never imported)")}')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # must stay valid JSON
    return text


def generate(versions: tuple[str, ...]) -> dict[Path, str]:
    """The text of every generated table, by path."""
    releases = []
    for v in versions:
        print(f"vllm {v}", file=sys.stderr)
        releases.append(build_release(v))
    return {TABLE: render(releases), ARCH_TABLE: render_architectures(releases)}


def _iter_diff(old: str, new: str, path: Path) -> Iterator[str]:
    yield from difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), str(path), "regenerated", n=1
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--check", action="store_true", help="regenerate to a temp file and diff against the table")
    ap.add_argument("--output", type=Path, default=TABLE, help="where to write the table")
    ap.add_argument("--only", nargs="+", metavar="VERSION", help="debug: extract only these releases to stdout")
    args = ap.parse_args(argv)

    if args.only:
        releases = [build_release(v) for v in args.only]
        sys.stdout.write(render(releases))
        return 0
    tables = generate(RELEASES)
    if args.check:
        stale = 0
        for path, text in tables.items():
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as tmp:
                tmp.write(text)
            try:
                old = path.read_text(encoding="utf-8") if path.exists() else ""
                new = Path(tmp.name).read_text(encoding="utf-8")
            finally:
                os.unlink(tmp.name)
            if old != new:
                sys.stdout.writelines(_iter_diff(old, new, path))
                print(f"\n{path.relative_to(REPO)} is out of date: run python hack/vllm_flags.py", file=sys.stderr)
                stale += 1
            else:
                print(f"{path.relative_to(REPO)} is up to date ({len(RELEASES)} releases)", file=sys.stderr)
        return 1 if stale else 0
    outputs = {args.output: tables[TABLE], args.output.parent / ARCH_TABLE.name: tables[ARCH_TABLE]}
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(RELEASES)} releases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
