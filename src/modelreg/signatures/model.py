"""The signature model: a version's input and output schema, as columns or tensors.

A person writes the compact form (JSON or TOML)::

    {"inputs": {"distance": "float", "is_hazardous": "bool"},
     "outputs": {"estimated_time_minutes": "float"}}

or the full form, for options and tensors::

    {"inputs": {"columns": [{"name": "distance", "type": "float64", "nullable": true}]},
     "outputs": {"tensors": [{"name": "y", "dtype": "float32", "shape": [-1, 1]}]}}

Both parse to :class:`Signature`, whose :meth:`Signature.to_dict` is the canonical full form
stored in the version's manifest. Nothing here imports numpy, onnx or jsonschema.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelreg.errors import NotFound, UsageError

__all__ = [
    "COLUMN_TYPES",
    "TENSOR_DTYPES",
    "ColumnSpec",
    "Schema",
    "Signature",
    "TensorSpec",
    "family",
    "load_signature_file",
    "parse_signature",
]

# Canonical column types, and what people may write for them.
COLUMN_TYPES = ("boolean", "int32", "int64", "float32", "float64", "string", "bytes",
                "datetime")
_COLUMN_ALIASES = {
    "bool": "boolean", "boolean": "boolean",
    "int": "int64", "integer": "int64", "long": "int64", "int64": "int64", "int32": "int32",
    "float": "float64", "double": "float64", "number": "float64", "float64": "float64",
    "float32": "float32",
    "str": "string", "string": "string", "text": "string",
    "bytes": "bytes", "binary": "bytes",
    "datetime": "datetime", "timestamp": "datetime",
}
_FAMILY = {"boolean": "boolean", "int32": "integer", "int64": "integer", "float32": "float",
           "float64": "float", "string": "string", "bytes": "bytes", "datetime": "datetime"}

# ONNX tensor element types (TensorProto.DataType names, lower-case).
TENSOR_DTYPES = ("float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "string",
                 "bool", "float16", "float64", "uint32", "uint64", "complex64", "complex128",
                 "bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz",
                 "uint4", "int4", "float4e2m1")
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "boolean": "bool", "str": "string",
                  "half": "float16", "long": "int64", "int": "int64"}
_NAME = re.compile(r"^[^\x00-\x1f]{1,256}\Z")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def family(column_type: str) -> str:
    """Return the family a person reads in messages (``float`` for float32 and float64)."""
    return _FAMILY.get(column_type, column_type)


@dataclass(frozen=True)
class ColumnSpec:
    """One named column of a record-shaped input or output."""

    name: str
    type: str
    required: bool = True
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Canonical form."""
        return {"name": self.name, "type": self.type, "required": self.required,
                "nullable": self.nullable}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor (or, for ONNX outputs, a sequence or map value).

    ``shape`` holds fixed sizes as non-negative ints and dynamic dimensions as -1 or a
    symbolic name (``"batch"``); None means the rank itself is unknown. ``kind`` is
    ``tensor`` for ordinary tensors; ``sequence`` and ``map`` describe the non-tensor values
    some converters produce (``elem`` then holds the element's description).
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...] | None = None
    kind: str = "tensor"
    elem: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Canonical form."""
        doc: dict[str, Any] = {"name": self.name, "kind": self.kind, "dtype": self.dtype}
        if self.shape is not None:
            doc["shape"] = list(self.shape)
        if self.elem is not None:
            doc["elem"] = self.elem
        return doc

    @property
    def rank(self) -> int | None:
        """The number of dimensions, if known."""
        return None if self.shape is None else len(self.shape)


@dataclass(frozen=True)
class Schema:
    """Either columns or tensors (never both)."""

    columns: tuple[ColumnSpec, ...] = ()
    tensors: tuple[TensorSpec, ...] = ()

    @property
    def kind(self) -> str:
        """``columns`` or ``tensors``."""
        return "tensors" if self.tensors else "columns"

    def names(self) -> list[str]:
        """The column or tensor names, in order."""
        return [c.name for c in self.columns] if self.columns else [t.name for t in self.tensors]

    def to_dict(self) -> dict[str, Any]:
        """Canonical form."""
        if self.tensors:
            return {"tensors": [t.to_dict() for t in self.tensors]}
        return {"columns": [c.to_dict() for c in self.columns]}


@dataclass(frozen=True)
class Signature:
    """A version's input schema and (optionally) output schema."""

    inputs: Schema
    outputs: Schema | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def binding(self) -> tuple[str, str, Schema] | None:
        """Return (tensor input, dtype, column schema) when columns are bound to a tensor.

        An ONNX export of a model that took columns records, in ``extra["binding"]``, that
        callers send those columns and that they are stacked, in order, into the single
        ``[N, F]`` input tensor. Payloads are then validated against the columns.
        """
        return self._binding

    @functools.cached_property
    def _binding(self) -> tuple[str, str, Schema] | None:
        # Read once per signature: `serve` checks every request against one signature.
        bound = self.extra.get("binding")
        if not isinstance(bound, dict):
            return None
        where = "the signature's extra.binding"
        try:
            columns = tuple(ColumnSpec(str(c["name"]), str(c["type"]),
                                       bool(c.get("required", True)),
                                       bool(c.get("nullable", False)))
                            for c in bound["columns"])
            tensor = str(bound["input"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{where} is malformed: it needs an input name and a list of "
                             "columns, each with a name and a type") from exc
        return tensor, _dtype(bound.get("dtype", "float32"), where), Schema(columns=columns)

    def facing_inputs(self) -> Schema:
        """The inputs callers send: the bound columns when there is a binding."""
        bound = self.binding()
        return bound[2] if bound is not None else self.inputs

    def schema_for(self, *, outputs: bool, ref: str) -> Schema:
        """The schema a payload is checked against: the outputs, or the inputs callers send.

        Raises:
            NotFound: ``outputs`` is asked for and the signature declares none.
        """
        if not outputs:
            return self.facing_inputs()
        if self.outputs is None:
            raise NotFound(f"{ref}: the signature declares no outputs")
        return self.outputs

    def to_dict(self) -> dict[str, Any]:
        """The canonical full form, as stored in the manifest."""
        doc: dict[str, Any] = {"inputs": self.inputs.to_dict()}
        if self.outputs is not None:
            doc["outputs"] = self.outputs.to_dict()
        if self.extra:
            doc["extra"] = self.extra
        return doc


def _column_type(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or raw.lower() not in _COLUMN_ALIASES:
        raise UsageError(f"{where}: unknown column type {raw!r} (use one of "
                         f"{', '.join(sorted(set(_COLUMN_ALIASES)))})")
    return _COLUMN_ALIASES[raw.lower()]


def _dtype(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise UsageError(f"{where}: dtype must be a string")
    name = _DTYPE_ALIASES.get(raw.lower(), raw.lower())
    if name not in TENSOR_DTYPES:
        raise UsageError(f"{where}: unknown tensor dtype {raw!r} (ONNX element types: "
                         f"{', '.join(TENSOR_DTYPES)})")
    return name


def _shape(raw: Any, where: str) -> tuple[int | str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise UsageError(f"{where}: shape must be a list of sizes, -1 or names")
    dims: list[int | str] = []
    for d in raw:
        if isinstance(d, bool) or not isinstance(d, int | str):
            raise UsageError(f"{where}: bad dimension {d!r}")
        if isinstance(d, int) and d < -1:
            raise UsageError(f"{where}: bad dimension {d} (use -1 for a dynamic one)")
        if isinstance(d, str) and not _SYMBOL.match(d):
            raise UsageError(f"{where}: bad symbolic dimension {d!r}")
        dims.append(d)
    return tuple(dims)


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"{where}: bad name {name!r}")
    return name


def _bool(value: Any, default: bool, where: str) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UsageError(f"{where} must be true or false")
    return value


def _column(name: str, spec: Any, where: str) -> ColumnSpec:
    if isinstance(spec, str):
        return ColumnSpec(name, _column_type(spec, where))
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: a column is a type name or a table with 'type'")
    unknown = set(spec) - {"name", "type", "required", "nullable", "optional"}
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}")
    required = _bool(spec.get("required"), True, f"{where}.required")
    if spec.get("optional") is not None:
        required = not _bool(spec.get("optional"), False, f"{where}.optional")
    return ColumnSpec(name, _column_type(spec.get("type"), f"{where}.type"), required,
                      _bool(spec.get("nullable"), False, f"{where}.nullable"))


def _tensor(name: str, spec: dict[str, Any], where: str) -> TensorSpec:
    unknown = set(spec) - {"name", "dtype", "shape", "kind", "elem"}
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}")
    kind = spec.get("kind", "tensor")
    if kind not in ("tensor", "sequence", "map"):
        raise UsageError(f"{where}.kind must be tensor, sequence or map")
    dtype = _dtype(spec.get("dtype", "float32"), f"{where}.dtype") if kind == "tensor" else str(
        spec.get("dtype", ""))
    elem = spec.get("elem")
    if elem is not None and not isinstance(elem, dict):
        raise UsageError(f"{where}.elem must be a table")
    return TensorSpec(name, dtype, _shape(spec.get("shape"), f"{where}.shape"), kind, elem)


def _schema(raw: Any, where: str) -> Schema:
    if isinstance(raw, dict) and set(raw) <= {"columns", "tensors"} and raw:
        if "columns" in raw and "tensors" in raw:
            raise UsageError(f"{where}: give columns or tensors, not both")
        items = raw.get("columns", raw.get("tensors"))
        if not isinstance(items, list) or not items:
            raise UsageError(f"{where}: expected a non-empty list")
        named: list[tuple[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise UsageError(f"{where}[{i}]: expected a table with a name")
            named.append((_check_name(item.get("name"), f"{where}[{i}].name"), item))
        is_tensor = "tensors" in raw
    elif isinstance(raw, dict) and raw:
        named = [(_check_name(k, f"{where}.{k}"), v) for k, v in raw.items()]
        is_tensor = any(isinstance(v, dict) and ("dtype" in v or "shape" in v or "kind" in v)
                        for _, v in named)
    else:
        raise UsageError(f"{where}: expected a table of columns, or 'columns'/'tensors' lists")
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:
            raise UsageError(f"{where}: {name!r} appears twice")
        seen.add(name)
    if is_tensor:
        tensors = []
        for name, spec in named:
            if not isinstance(spec, dict):
                raise UsageError(f"{where}.{name}: a tensor is a table with dtype and shape")
            tensors.append(_tensor(name, spec, f"{where}.{name}"))
        return Schema(tensors=tuple(tensors))
    return Schema(columns=tuple(_column(n, s, f"{where}.{n}") for n, s in named))


def parse_signature(doc: Any) -> Signature:
    """Parse a signature in the compact or the full form.

    Args:
        doc: The parsed JSON or TOML document.

    Returns:
        The signature.

    Raises:
        UsageError: The document is not a valid signature; the message names the place.
    """
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise UsageError("a signature is a table with 'inputs' (and optionally 'outputs')")
    unknown = set(doc) - {"inputs", "outputs", "extra"}
    if unknown:
        raise UsageError(f"signature: unknown keys {sorted(unknown)}")
    outputs = doc.get("outputs")
    extra = doc.get("extra", {})
    if not isinstance(extra, dict):
        raise UsageError("signature.extra must be a table")
    return Signature(_schema(doc["inputs"], "inputs"),
                     None if outputs is None else _schema(outputs, "outputs"), dict(extra))


def load_signature_file(path: Path) -> Signature:
    """Read a signature from a JSON or TOML file.

    Raises:
        NotFound: The file does not exist.
        UsageError: It is not a valid signature.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound(f"signature file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read signature file {path}: {exc}") from exc
    try:
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, a 4300-digit integer
        raise UsageError(f"signature file {path} does not parse: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"signature file {path} does not parse: it nests arrays or tables "
                         "too deeply") from exc
    try:
        return parse_signature(doc)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}") from exc
