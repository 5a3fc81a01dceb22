"""Signature inference: read sample data and infer the column (or tensor) signature it fits.

Rules (docs/signatures.md): a column's type comes from the values seen; it is nullable
when a null (an empty CSV cell) is seen, and not required when some record lacks the key.
``.npy``/``.npz`` samples give tensor signatures with a dynamic first (batch) dimension.
"""

from __future__ import annotations

import re
from typing import Any

from modelreg.errors import UsageError
from modelreg.signatures.model import Signature, parse_signature
from modelreg.signatures.payload import (
    MISSING,
    detect_format,
    load_arrays,
    parse_csv_cell,
    read_columns,
)
from modelreg.signatures.validate import INT_RANGES, describe_value, is_datetime_text

__all__ = ["infer_from_sample"]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT64 = INT_RANGES["int64"]
_JSON_KIND = {bool: "boolean", int: "integer", float: "float", str: "string",
              list: "array", dict: "object"}


def _looks_datetime(values: list[str]) -> bool:
    return all(_DATE.match(v) and is_datetime_text(v) for v in values)


def _int_type(values: list[int]) -> str:
    return "int64" if _INT64[0] <= min(values) and max(values) <= _INT64[1] else "float64"


def _from_text(cells: list[str]) -> str:
    if not cells:
        return "string"
    if all(c.strip().lower() in ("true", "false") for c in cells):
        return "boolean"
    numbers = [parse_csv_cell(c, "float64") for c in cells]
    types = set(map(type, numbers))
    if types == {int}:
        return _int_type(numbers)
    if types <= {int, float}:
        return "float64"
    return "datetime" if _looks_datetime(cells) else "string"


def _from_json(name: str, values: list[Any]) -> str:
    types = set(map(type, values))
    if not types:
        return "string"
    if types & {list, dict}:
        bad = next(v for v in values if isinstance(v, list | dict))
        raise UsageError(f"column {name!r}: {describe_value(bad)} values have no column "
                         "type; columns hold scalars")
    if types == {bool}:
        return "boolean"
    if types == {int}:
        return _int_type(values)
    if types <= {int, float}:
        return "float64"
    if types == {str}:
        return "datetime" if _looks_datetime(values) else "string"
    kinds = sorted({_JSON_KIND.get(t, t.__name__) for t in types})
    raise UsageError(f"column {name!r} mixes {' and '.join(kinds)} values in the sample; "
                     "declare its type in a signature file")


def _tensor_signature(data: bytes, name: str) -> Signature:
    arrays = load_arrays(data, name)
    tensors = []
    for key, array in arrays.items():
        dtype = "string" if array.dtype.kind in "US" else array.dtype.name
        shape: list[int] = list(array.shape)
        if shape:
            shape[0] = -1
        tensors.append({"name": key or "input", "dtype": dtype, "shape": shape})
    if not tensors:
        raise UsageError("the .npz sample holds no arrays")
    return parse_signature({"inputs": {"tensors": tensors}})


def infer_from_sample(data: bytes, *, filename: str | None = None,
                      fmt: str | None = None) -> Signature:
    """Infer a signature from sample data.

    Args:
        data: The sample: JSON (any accepted record shape), JSONL, CSV, or ``.npy``/``.npz``.
        filename: The sample's file name, used to detect its format.
        fmt: An explicit format (see :func:`modelreg.signatures.payload.detect_format`).

    Returns:
        A signature with inputs only: columns in order of first appearance, or tensors
        for ``.npy``/``.npz`` samples.

    Raises:
        UsageError: The sample does not parse, is empty, holds a record that is not an
            object, or has a column whose values fit no single column type.
    """
    name = detect_format(data, filename=filename, fmt=fmt)
    if name in ("npy", "npz"):
        return _tensor_signature(data, name)
    if name == "tensors":
        raise UsageError("infer tensor signatures from .npy or .npz samples")
    payload = read_columns(data, filename=filename, fmt=fmt)
    if payload.n_rows == 0 or not payload.columns:
        raise UsageError("the sample has no records to infer a signature from")
    if payload.not_records:
        index, value = next(iter(payload.not_records.items()))
        raise UsageError(f"sample record {index + 1} is {describe_value(value)}, not an "
                         "object")
    columns = []
    for column, values in payload.columns.items():
        present = [v for v in values if v is not MISSING]
        seen = [v for v in present if v is not None]
        kind = _from_text(seen) if payload.text else _from_json(column, seen)
        columns.append({"name": column, "type": kind, "required": len(present) == len(values),
                        "nullable": len(seen) < len(present)})
    return parse_signature({"inputs": {"columns": columns}})
