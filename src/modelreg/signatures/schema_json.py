"""JSON Schema (draft 2020-12) rendering of signatures, and the jsonschema reference validator.

:func:`to_jsonschema` renders one record (column schemas) or the object of named tensors
(tensor schemas); :func:`signature_jsonschema` wraps inputs and outputs for
``modelreg signature show --format jsonschema``. :func:`reference_validate` lets the
``jsonschema`` library (Draft202012Validator) find the problems and words each with the
fast validator's message functions, so the two can be compared problem for problem.
jsonschema is imported only inside :func:`reference_validate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from modelreg.errors import UsageError
from modelreg.signatures.model import ColumnSpec, Schema, Signature, TensorSpec, family
from modelreg.signatures.validate import (
    INT_RANGES,
    PayloadProblem,
    cell_problem,
    extra_problem,
    is_base64_text,
    is_datetime_text,
    missing_problem,
    not_record_problem,
    problem_sort_key,
    tensor_family,
)

__all__ = ["DRAFT", "reference_validate", "signature_jsonschema", "to_jsonschema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_LEAF: dict[str, dict[str, Any]] = {
    "float": {"type": "number"}, "integer": {"type": "integer"},
    "boolean": {"type": "boolean"}, "string": {"type": "string"},
    "datetime": {"type": "string", "format": "date-time"},
    "bytes": {"type": "string", "contentEncoding": "base64"}}


def _column_schema(spec: ColumnSpec) -> dict[str, Any]:
    doc = dict(_LEAF[family(spec.type)])
    if spec.type in INT_RANGES:
        doc["minimum"], doc["maximum"] = INT_RANGES[spec.type]
    if spec.nullable:
        doc["type"] = [doc["type"], "null"]
    doc["description"] = f"{spec.type}{', nullable' if spec.nullable else ''}"
    return doc


def _tensor_schema(spec: TensorSpec) -> dict[str, Any]:
    if spec.kind != "tensor":
        return {"description": f"{spec.kind} (not checked)"}
    leaf = dict(_LEAF[tensor_family(spec.dtype)])
    if spec.dtype in INT_RANGES:
        leaf["minimum"], leaf["maximum"] = INT_RANGES[spec.dtype]
    if spec.shape is None:
        return {"description": f"{spec.dtype} tensor of any rank"}
    doc = leaf
    for dim in reversed(spec.shape):
        doc = {"type": "array", "items": doc}
        if isinstance(dim, int) and dim >= 0:
            doc["minItems"] = doc["maxItems"] = dim
    dims = ", ".join(str(d) for d in spec.shape)
    return {**doc, "description": f"{spec.dtype} tensor, shape [{dims}]"}


def to_jsonschema(schema: Schema) -> dict[str, Any]:
    """Render a schema as JSON Schema 2020-12.

    Args:
        schema: A column schema (rendered as one record) or a tensor schema (rendered as
            an object of named nested lists).

    Returns:
        The JSON Schema, without ``$schema`` (it is meant to be embedded).
    """
    if schema.tensors:
        props = {t.name: _tensor_schema(t) for t in schema.tensors}
        required = [t.name for t in schema.tensors]
    else:
        props = {c.name: _column_schema(c) for c in schema.columns}
        required = [c.name for c in schema.columns if c.required]
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def signature_jsonschema(sig: Signature) -> dict[str, Any]:
    """Render a signature as one JSON Schema document (draft 2020-12).

    Args:
        sig: The signature.

    Returns:
        A schema whose ``inputs`` (and ``outputs``) properties describe one record, or
        the object of named tensors.
    """
    props = {"inputs": to_jsonschema(sig.inputs)}
    if sig.outputs is not None:
        props["outputs"] = to_jsonschema(sig.outputs)
    return {"$schema": DRAFT, "title": "modelreg signature",
            "description": "inputs and outputs each describe one record (columns) or the "
                           "object of named tensors",
            "type": "object", "properties": props, "required": ["inputs"]}


@cache
def _validator_class() -> Any:
    from jsonschema import (  # type: ignore[import-untyped]
        Draft202012Validator,
        FormatChecker,
        ValidationError,
        validators,
    )

    def content_encoding(validator: Any, encoding: Any, instance: Any,
                         schema: Any) -> Iterator[Any]:
        if encoding == "base64" and isinstance(instance, str) and not is_base64_text(instance):
            yield ValidationError(f"{instance!r} is not base64")

    def date_time(instance: object) -> bool:
        return not isinstance(instance, str) or is_datetime_text(instance)

    checker = FormatChecker(formats=())
    checker.checks("date-time")(date_time)
    cls = validators.extend(Draft202012Validator, {"contentEncoding": content_encoding})
    return cls, checker


def _expected(spec: ColumnSpec, keyword: str) -> tuple[int, str]:
    """(precedence, word) for a jsonschema keyword that failed on a cell."""
    if keyword == "type":
        return 0, family(spec.type)
    if keyword in ("minimum", "maximum"):
        return 1, spec.type
    return 1, family(spec.type)  # format (datetime) or contentEncoding (bytes)


def reference_validate(schema: Schema, records: list[Any], *,
                       allow_extra: bool = False) -> list[PayloadProblem]:
    """Validate records with jsonschema, worded like the fast path.

    jsonschema decides what is wrong; the fast path's message functions word it, with
    the same grouping (one problem per missing or extra column) and order.

    Args:
        schema: A column schema.
        records: Parsed JSON values, one per record.
        allow_extra: Accept columns the schema does not name.

    Returns:
        Every problem, ordered by row then column.

    Raises:
        UsageError: The schema has tensors.
    """
    if schema.tensors:
        raise UsageError("the reference validator checks column records only")
    cls, checker = _validator_class()
    doc = to_jsonschema(schema)
    if allow_extra:
        del doc["additionalProperties"]
    validator = cls(doc, format_checker=checker)
    specs = {c.name: c for c in schema.columns}
    problems: list[PayloadProblem] = []
    missing: dict[str, list[int]] = {}
    extra: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        cells: dict[str, tuple[int, str]] = {}
        absent: list[str] = []
        for error in validator.iter_errors(record):
            if error.path:
                name = str(error.path[0])
                cells[name] = min(cells.get(name, (9, "")), _expected(specs[name],
                                                                      str(error.validator)))
            elif error.validator == "type":
                problems.append(not_record_problem(i, record))
            elif error.validator == "required":
                if not absent:
                    absent = [p for p in error.validator_value if p not in record]
                missing.setdefault(absent.pop(0), []).append(i)
            elif error.validator == "additionalProperties":
                for name in record:
                    if name not in specs:
                        extra.setdefault(name, []).append(i)
            else:  # pragma: no cover - the rendered schema uses no other keyword
                raise UsageError(f"unexpected jsonschema error: {error.message}")
        for name, (_, word) in cells.items():
            problems.append(cell_problem(i, name, word, record[name]))
    problems += [missing_problem(n, rows[0], len(rows)) for n, rows in missing.items()]
    problems += [extra_problem(n, rows[0], len(rows)) for n, rows in extra.items()]
    return sorted(problems, key=problem_sort_key(schema))
