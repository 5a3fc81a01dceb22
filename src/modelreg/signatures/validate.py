"""The fast payload validator: check a payload against a signature's schema, column by column.

Each column is checked as a whole (``set(map(type, column))``, min/max for ranges); only a
column that fails is walked value by value to locate the rows. The wording of every
problem comes from the message functions here, which :mod:`modelreg.signatures.schema_json`
(the jsonschema reference) uses too, so both report the same problems in the same words.
Neither numpy nor jsonschema is imported at module import time.
"""

from __future__ import annotations

import binascii
import heapq
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from modelreg.errors import UsageError
from modelreg.signatures.model import ColumnSpec, Schema, TensorSpec, family
from modelreg.signatures.payload import (
    MISSING,
    ColumnPayload,
    TensorPayload,
    parse_payload,
)

__all__ = ["INT_RANGES", "PayloadProblem", "ValidationReport", "cell_problem", "describe_value",
           "expected_for", "extra_problem", "is_base64_text", "is_datetime_text", "missing_problem",
           "check_payload", "column_problems", "not_record_problem", "problem_sort_key",
           "tensor_family", "validate_payload",
           "validate_records"]

INT_RANGES = {"int4": (-8, 7), "uint4": (0, 15), "int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1),
              "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1),
              "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}
_MAX_SHOWN = 40
_SENTINEL = type(MISSING)
_OK_TYPES: dict[str, frozenset[type]] = {
    "float": frozenset({int, float}), "integer": frozenset({int, float}),
    "boolean": frozenset({bool}), "string": frozenset({str}), "datetime": frozenset({str}),
    "bytes": frozenset({str})}


@dataclass(frozen=True)
class PayloadProblem:
    """One problem: where (1-based record number, column or tensor name) and what."""

    row: int | None
    column: str | None
    message: str


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one payload."""

    ok: bool
    format: str
    rows: int | None
    problems: list[PayloadProblem]
    total_problems: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ok, format, rows, problems, total_problems."""
        return {"ok": self.ok, "format": self.format, "rows": self.rows,
                "problems": [{"row": p.row, "column": p.column, "message": p.message}
                             for p in self.problems],
                "total_problems": self.total_problems}


def _quote(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def describe_value(value: Any) -> str:
    """Word a JSON value for a message: ``string "12.5"``, ``boolean true``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        text = str(value)
        return f"integer {text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + '...'}"
    if isinstance(value, float):
        return f"float {json.dumps(value)}"
    if isinstance(value, str):
        if len(value) <= _MAX_SHOWN:
            return f"string {_quote(value)}"
        return f"string {_quote(value[:_MAX_SHOWN])[:-1]}...\" ({len(value)} characters)"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def cell_problem(index: int, column: str, expected: str, value: Any) -> PayloadProblem:
    """The problem for one bad value (``index`` is 0-based; messages count from 1)."""
    return PayloadProblem(index + 1, column, f"row {index + 1}, column {_quote(column)}: "
                                             f"expected {expected}, got {describe_value(value)}")


def _more(count: int) -> str:
    if count <= 1:
        return ""
    return f" (and {count - 1} more row{'s' if count > 2 else ''})"


def missing_problem(column: str, first: int, count: int) -> PayloadProblem:
    """A required column absent from ``count`` records, the first at 0-based ``first``."""
    return PayloadProblem(first + 1, column, f"row {first + 1}: missing required column "
                                             f"{_quote(column)}{_more(count)}")


def extra_problem(column: str, first: int, count: int) -> PayloadProblem:
    """A column the schema does not have, present in ``count`` records."""
    return PayloadProblem(first + 1, column,
                          f"row {first + 1}: unexpected column {_quote(column)}{_more(count)}")


def not_record_problem(index: int, value: Any) -> PayloadProblem:
    """A record that is not a JSON object."""
    return PayloadProblem(index + 1, None,
                          f"row {index + 1}: expected object, got {describe_value(value)}")


def problem_sort_key(schema: Schema) -> Callable[[PayloadProblem], tuple[int, int, str]]:
    """Return the key that orders a column schema's problems: by row, then column order."""
    order = {c.name: i for i, c in enumerate(schema.columns)}

    def key(p: PayloadProblem) -> tuple[int, int, str]:
        pos = -1 if p.column is None else order.get(p.column, len(order))
        return (p.row or 0, pos, p.column or "")
    return key


def is_datetime_text(text: str) -> bool:
    """Whether ``datetime.fromisoformat`` reads the text (the datetime column rule)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_base64_text(text: str) -> bool:
    """Whether the text is strict base64 (the bytes column rule)."""
    try:
        binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def expected_for(spec: ColumnSpec, value: Any) -> str | None:
    """What a bad value should have been (a family name, or int32/int64 out of range).

    Args:
        spec: The column.
        value: A present JSON value (not a sentinel).

    Returns:
        None when the value is valid, else the word for ``expected ...``.
    """
    kind = family(spec.type)
    if value is None:
        return None if spec.nullable else kind
    if isinstance(value, bool) or kind == "boolean":
        return None if isinstance(value, bool) and kind == "boolean" else kind
    if kind == "float":
        return None if isinstance(value, int | float) else kind
    if kind == "integer":
        if not (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            return kind
        low, high = INT_RANGES[spec.type]
        return None if low <= value <= high else spec.type
    if not isinstance(value, str):
        return kind
    if kind == "datetime":
        return None if is_datetime_text(value) else kind
    if kind == "bytes":
        return None if is_base64_text(value) else kind
    return None


def _column_ok(spec: ColumnSpec, values: list[Any], types: set[type]) -> bool:
    """Whole-column check; False means 'walk it', not necessarily 'bad'."""
    kind = family(spec.type)
    allowed = _OK_TYPES[kind] | {_SENTINEL} | ({type(None)} if spec.nullable else set())
    if not types <= allowed:
        return False
    if kind == "integer":
        nums = values if types <= {int, float} else [v for v in values
                                                      if type(v) in (int, float)]
        if float in types and not all(v.is_integer() for v in nums if type(v) is float):
            return False
        low, high = INT_RANGES[spec.type]
        return not nums or (low <= min(nums) and max(nums) <= high)
    if kind in ("datetime", "bytes"):
        check = is_datetime_text if kind == "datetime" else is_base64_text
        return all(check(v) for v in values if type(v) is str)
    return True


def column_problems(spec: ColumnSpec, values: list[Any],
                    types: set[type]) -> list[tuple[int, str]] | None:
    """The bad values of one column: None when the whole-column check passes.

    Args:
        spec: The column.
        values: Its values, one per record (sentinels where a record lacks it).
        types: ``set(map(type, values))``, already computed by the caller.

    Returns:
        None, or the 0-based index and the expected word of every bad value.
    """
    if _column_ok(spec, values, types):
        return None
    return [(i, e) for i, v in enumerate(values) if type(v) is not _SENTINEL
            and (e := expected_for(spec, v)) is not None]


_Item = tuple[int, int, int, Any]


def _cell_stream(pos: int, name: str, values: list[Any],
                 bad: list[tuple[int, str]]) -> Iterator[_Item]:
    for i, expected in bad:
        yield (i, pos, 2, partial(cell_problem, i, name, expected, values[i]))


def _check_columns(schema: Schema, payload: ColumnPayload, allow_extra: bool,
                   max_errors: int) -> tuple[list[PayloadProblem], int]:
    """All problems of a column payload, in order, capped; and the uncapped count."""
    n = payload.n_rows
    skip = payload.not_records
    streams: list[Iterable[_Item]] = [
        ((i, -1, 0, partial(not_record_problem, i, skip[i])) for i in sorted(skip))]
    total = len(skip)
    structural: list[_Item] = []
    for pos, spec in enumerate(schema.columns):
        values = payload.columns.get(spec.name)
        if values is None:
            if spec.required and n > len(skip):
                first = next(i for i in range(n) if i not in skip)
                structural.append((first, pos, 1, partial(missing_problem, spec.name, first,
                                                          n - len(skip))))
            continue
        types = set(map(type, values))
        if spec.required and _SENTINEL in types:
            gone = [i for i, v in enumerate(values) if v is MISSING]
            if gone:
                structural.append((gone[0], pos, 1, partial(missing_problem, spec.name,
                                                            gone[0], len(gone))))
        bad = column_problems(spec, values, types)
        if bad is None:
            continue
        total += len(bad)
        streams.append(_cell_stream(pos, spec.name, values, bad))
    if not allow_extra:
        known = {c.name for c in schema.columns}
        extras = sorted(k for k in payload.columns if k not in known)
        for pos, name in enumerate(extras, len(schema.columns)):
            rows = [i for i, v in enumerate(payload.columns[name]) if type(v) is not _SENTINEL]
            if rows:
                structural.append((rows[0], pos, 1, partial(extra_problem, name, rows[0],
                                                            len(rows))))
    total += len(structural)
    streams.append(sorted(structural, key=lambda item: item[:3]))
    merged: Iterator[_Item] = heapq.merge(*streams, key=lambda item: item[:3])
    return [item[3]() for item in itertools.islice(merged, max_errors)], total


def validate_records(schema: Schema, columns: dict[str, list[Any]], n_rows: int, *,
                     allow_extra: bool = False, max_errors: int = 20) -> list[PayloadProblem]:
    """Validate records already held as columns (the fast path, without parsing).

    Args:
        schema: A column schema.
        columns: One list of ``n_rows`` values per column; :data:`payload.MISSING` marks a
            record without that key.
        n_rows: The number of records.
        allow_extra: Accept columns the schema does not name.
        max_errors: Report at most this many problems.

    Returns:
        The first ``max_errors`` problems, ordered by row then column.
    """
    payload = ColumnPayload("columns", columns, n_rows)
    return _check_columns(schema, payload, allow_extra, max_errors)[0]


def tensor_family(dtype: str) -> str:
    """The JSON family a tensor dtype accepts: integer, boolean, string or float."""
    if dtype in INT_RANGES:
        return "integer"
    return {"bool": "boolean", "string": "string"}.get(dtype, "float")


def _json_shape(value: Any) -> tuple[tuple[int, ...] | None, bool, list[Any]]:
    """(shape or None if ragged, whether the shape is complete, the leaf values)."""
    shape: list[int] = []
    level = [value]
    while True:
        kinds = set(map(type, level))
        if list not in kinds:
            return tuple(shape), True, level
        if kinds != {list} or len(set(map(len, level))) != 1:
            return None, False, []
        shape.append(len(level[0]))
        if not shape[-1]:
            return tuple(shape), False, []
        level = list(itertools.chain.from_iterable(level))


def _json_dtype_problem(spec: TensorSpec, leaves: list[Any]) -> str | None:
    kind = tensor_family(spec.dtype)
    types = set(map(type, leaves))
    if kind == "integer" and types == {int}:
        low, high = INT_RANGES[spec.dtype]
        if low <= min(leaves) and max(leaves) <= high:
            return None
    elif types <= _OK_TYPES[kind] and (kind != "integer" or not types):
        return None
    for value in leaves:
        if isinstance(value, bool):
            good = kind == "boolean"
        elif kind == "float":
            good = isinstance(value, int | float)
        elif kind == "integer":
            low, high = INT_RANGES[spec.dtype]
            good = (isinstance(value, int) or isinstance(value, float) and value.is_integer()) \
                and low <= value <= high
        else:
            good = kind == "string" and isinstance(value, str)
        if not good:
            return f"got {describe_value(value)}"
    return None


def _numpy_dtype_problem(spec: TensorSpec, array: Any) -> str | None:
    got = array.dtype
    if spec.dtype == "string":
        return None if got.kind in "US" else f"got {got.name}"
    name = "string" if got.kind in "US" else got.name
    return None if name.replace("_", "") == spec.dtype else f"got {name}"


def _check_tensors(schema: Schema, payload: TensorPayload,
                   allow_extra: bool) -> tuple[list[PayloadProblem], int | None]:
    problems: list[PayloadProblem] = []
    batch: int | None = None

    def add(name: str, text: str) -> None:
        problems.append(PayloadProblem(None, name, text))
    for spec in schema.tensors:
        where = f"tensor {_quote(spec.name)}"
        if spec.name not in payload.tensors:
            add(spec.name, f"missing {where}")
            continue
        value = payload.tensors[spec.name]
        if spec.kind != "tensor":
            continue
        if hasattr(value, "dtype") and hasattr(value, "shape"):
            shape: tuple[int, ...] | None = tuple(value.shape)
            complete = True
            dtype_problem = _numpy_dtype_problem(spec, value)
        else:
            shape, complete, leaves = _json_shape(value)
            dtype_problem = _json_dtype_problem(spec, leaves)
        if shape is None:
            add(spec.name, f"{where}: ragged nested lists, not a tensor")
            continue
        if batch is None and shape:
            batch = shape[0]
        if dtype_problem:
            add(spec.name, f"{where}: expected dtype {spec.dtype}, {dtype_problem}")
        if spec.shape is None:
            continue
        if len(shape) != len(spec.shape) and (complete or len(shape) > len(spec.shape)):
            add(spec.name, f"{where}: expected rank {len(spec.shape)}, got {len(shape)}")
            continue
        for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=False)):
            if isinstance(want, int) and want >= 0 and want != got:
                add(spec.name, f"{where}: dimension {axis} must be {want}, got {got}")
    if not allow_extra:
        known = {t.name for t in schema.tensors}
        for name in sorted(set(payload.tensors) - known):
            add(name, f"unexpected tensor {_quote(name)}")
    return problems, batch


def validate_payload(schema: Schema, data: bytes, *, filename: str | None = None,
                     fmt: str | None = None, allow_extra: bool = False,
                     max_errors: int = 20) -> ValidationReport:
    """Parse a payload and check it against a schema.

    Args:
        schema: The signature's inputs (or outputs) schema, columns or tensors.
        data: The payload bytes.
        filename: The payload's file name, used to detect its format.
        fmt: An explicit format (json, jsonl, csv, npy, npz, or a JSON shape such as
            dataframe_split); see docs/signatures.md.
        allow_extra: Accept columns or tensors the schema does not name.
        max_errors: Keep at most this many problems in the report (all are counted).

    Returns:
        The report; ``ok`` is true when there is no problem at all.

    Raises:
        UsageError: The payload cannot be parsed at all, its format does not fit the
            schema, or ``max_errors`` is negative.
    """
    return check_payload(schema, parse_payload(schema, data, filename=filename, fmt=fmt),
                         allow_extra=allow_extra, max_errors=max_errors)


def check_payload(schema: Schema, payload: ColumnPayload | TensorPayload, *,
                  allow_extra: bool = False, max_errors: int = 20) -> ValidationReport:
    """Check an already parsed payload (see :func:`validate_payload`).

    Raises:
        UsageError: ``max_errors`` is negative.
    """
    if max_errors < 0:
        raise UsageError("max_errors must be 0 or more")
    if isinstance(payload, TensorPayload):
        problems, batch = _check_tensors(schema, payload, allow_extra)
        return ValidationReport(not problems, payload.format, batch, problems[:max_errors],
                                len(problems))
    capped, total = _check_columns(schema, payload, allow_extra, max_errors)
    return ValidationReport(total == 0, payload.format, payload.n_rows, capped, total)
