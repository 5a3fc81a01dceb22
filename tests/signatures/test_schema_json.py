"""JSON Schema rendering (draft 2020-12) and the jsonschema reference validator."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from modelreg.errors import UsageError
from modelreg.signatures.model import parse_signature
from modelreg.signatures.schema_json import (
    DRAFT,
    reference_validate,
    signature_jsonschema,
    to_jsonschema,
)

SIG = parse_signature({
    "inputs": {"columns": [
        {"name": "distance", "type": "float"},
        {"name": "n", "type": "int32", "nullable": True},
        {"name": "when", "type": "datetime", "required": False},
        {"name": "blob", "type": "bytes", "required": False},
        {"name": "ok", "type": "bool"}, {"name": "s", "type": "string"}]},
    "outputs": {"tensors": [{"name": "y", "dtype": "float32", "shape": [-1, 2]},
                            {"name": "k", "dtype": "int8", "shape": None},
                            {"name": "m", "kind": "map", "dtype": "",
                             "elem": {"key": "int64"}}]},
})


def test_column_schema_renders_one_record() -> None:
    doc = to_jsonschema(SIG.inputs)
    assert doc["type"] == "object"
    assert doc["required"] == ["distance", "n", "ok", "s"]
    assert doc["additionalProperties"] is False
    props = doc["properties"]
    assert props["distance"] == {"type": "number", "description": "float64"}
    assert props["n"] == {"type": ["integer", "null"], "minimum": -2**31,
                          "maximum": 2**31 - 1, "description": "int32, nullable"}
    assert props["when"]["format"] == "date-time"
    assert props["blob"]["contentEncoding"] == "base64"
    assert props["ok"]["type"] == "boolean"
    assert "$schema" not in doc


def test_tensor_schema_renders_nested_arrays() -> None:
    assert SIG.outputs is not None
    doc = to_jsonschema(SIG.outputs)
    y = doc["properties"]["y"]
    assert y["type"] == "array"
    assert "minItems" not in y
    assert y["items"] == {"type": "array", "minItems": 2, "maxItems": 2,
                          "items": {"type": "number"}}
    assert doc["properties"]["k"] == {"description": "int8 tensor of any rank"}
    assert doc["properties"]["m"] == {"description": "map (not checked)"}
    assert doc["required"] == ["y", "k", "m"]


def test_signature_schema_is_a_valid_2020_12_schema() -> None:
    doc = signature_jsonschema(SIG)
    assert doc["$schema"] == DRAFT
    assert doc["title"] == "modelreg signature"
    assert set(doc["properties"]) == {"inputs", "outputs"}
    Draft202012Validator.check_schema(doc)
    validator = Draft202012Validator(doc)
    good: dict[str, Any] = {"inputs": {"distance": 1, "n": None, "ok": True, "s": "x"},
                            "outputs": {"y": [[1, 2]], "k": 1, "m": {}}}
    assert list(validator.iter_errors(good)) == []
    bad = {"inputs": {"distance": "1", "n": 2**40, "ok": True, "s": "x"},
           "outputs": {"y": [[1, 2, 3]], "k": 1, "m": {}}}
    assert len(list(validator.iter_errors(bad))) == 3


def test_signature_without_outputs() -> None:
    doc = signature_jsonschema(parse_signature({"inputs": {"a": "int"}}))
    assert set(doc["properties"]) == {"inputs"}
    assert doc["required"] == ["inputs"]


def test_reference_words_problems_like_the_fast_path() -> None:
    problems = reference_validate(SIG.inputs, [
        {"distance": "12.5", "n": 1.0, "ok": True, "s": "x"},
        {"distance": 1, "n": 2**31, "ok": 1, "s": "x", "extra": 1},
        {"distance": 1, "n": None, "s": "x", "when": "nope", "blob": "!!"},
        [1],
    ])
    assert [(p.row, p.column, p.message) for p in problems] == [
        (1, "distance", 'row 1, column "distance": expected float, got string "12.5"'),
        (2, "n", 'row 2, column "n": expected int32, got integer 2147483648'),
        (2, "ok", 'row 2, column "ok": expected boolean, got integer 1'),
        (2, "extra", 'row 2: unexpected column "extra"'),
        (3, "when", 'row 3, column "when": expected datetime, got string "nope"'),
        (3, "blob", 'row 3, column "blob": expected bytes, got string "!!"'),
        (3, "ok", 'row 3: missing required column "ok"'),
        (4, None, "row 4: expected object, got array"),
    ]


def test_reference_type_error_wins_over_range_error() -> None:
    s = parse_signature({"inputs": {"n": "int32"}}).inputs
    assert [p.message for p in reference_validate(s, [{"n": 1e10 + 0.5}])] == [
        'row 1, column "n": expected integer, got float 10000000000.5']


def test_reference_groups_missing_and_allows_extra() -> None:
    s = parse_signature({"inputs": {"a": "int", "b": "int"}}).inputs
    problems = reference_validate(s, [{"z": 1}, {"a": 1, "z": 2}, {"z": 3}], allow_extra=True)
    assert [p.message for p in problems] == [
        'row 1: missing required column "a" (and 1 more row)',
        'row 1: missing required column "b" (and 2 more rows)']


def test_reference_is_for_columns_only() -> None:
    assert SIG.outputs is not None
    with pytest.raises(UsageError, match="column records only"):
        reference_validate(SIG.outputs, [])
