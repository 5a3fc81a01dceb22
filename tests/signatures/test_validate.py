"""The fast validator: coercion rules, message wording, every format, the cap, tensors."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from modelreg.errors import UsageError
from modelreg.signatures.model import Schema, parse_signature
from modelreg.signatures.payload import MISSING
from modelreg.signatures.validate import (
    PayloadProblem,
    ValidationReport,
    describe_value,
    validate_payload,
    validate_records,
)

SEED = parse_signature({"inputs": {"distance": "float", "is_hazardous": "bool"}}).inputs


def schema(**columns: Any) -> Schema:
    return parse_signature({"inputs": columns}).inputs


def messages(report: ValidationReport) -> list[str]:
    return [p.message for p in report.problems]


def check(s: Schema, *records: Any, allow_extra: bool = False) -> list[str]:
    return messages(validate_payload(s, json.dumps(list(records)).encode(),
                                     allow_extra=allow_extra, max_errors=1000))


def test_seed_example_string_for_float() -> None:
    report = validate_payload(SEED, b'{"distance": "12.5", "is_hazardous": false}')
    assert not report.ok
    assert report.problems == [PayloadProblem(
        1, "distance", 'row 1, column "distance": expected float, got string "12.5"')]
    assert report.to_dict() == {
        "ok": False, "format": "record", "rows": 1, "total_problems": 1,
        "problems": [{"row": 1, "column": "distance",
                      "message": 'row 1, column "distance": expected float, got string "12.5"'}]}


def test_seed_example_valid() -> None:
    report = validate_payload(SEED, b'{"distance": 12.5, "is_hazardous": false}')
    assert report.ok and report.problems == [] and report.total_problems == 0
    assert report.rows == 1


@pytest.mark.parametrize("data", [
    b'{"distance": 12, "is_hazardous": true}',
    b'[{"distance": 12.5, "is_hazardous": true}, {"distance": 0, "is_hazardous": false}]',
    b'{"distance": 1.5, "is_hazardous": true}\n{"distance": 2, "is_hazardous": false}\n',
    b'{"distance": [1.5, 2], "is_hazardous": [true, false]}',
    b'distance,is_hazardous\n12.5,true\n3,FALSE\n7e2,1\n',
    b'{"dataframe_records": [{"distance": 1.5, "is_hazardous": true}]}',
    b'{"dataframe_split": {"columns": ["is_hazardous", "distance"], "data": [[true, 1.5]]}}',
    b'{"inputs": [{"distance": 1.5, "is_hazardous": true}]}',
    b'{"inputs": {"distance": [1.5], "is_hazardous": [true]}}',
    b'[]',
])
def test_valid_payloads_in_every_format(data: bytes) -> None:
    report = validate_payload(SEED, data)
    assert report.ok, report.to_dict()


@pytest.mark.parametrize(("data", "fmt", "message"), [
    (b'[{"distance": 1, "is_hazardous": true}, {"distance": "12.5", "is_hazardous": true}]',
     "records", 'row 2, column "distance": expected float, got string "12.5"'),
    (b'{"distance": 1, "is_hazardous": true}\n{"distance": 1, "is_hazardous": "yes"}\n',
     "jsonl", 'row 2, column "is_hazardous": expected boolean, got string "yes"'),
    (b'distance,is_hazardous\n1,true\n1,true\nfar,true\n', "csv",
     'row 3, column "distance": expected float, got string "far"'),
    (b'distance,is_hazardous\n1,maybe\n', "csv",
     'row 1, column "is_hazardous": expected boolean, got string "maybe"'),
    (b'{"distance": [1, 2, null], "is_hazardous": [true, true, true]}', "columns",
     'row 3, column "distance": expected float, got null'),
    (b'{"dataframe_split": {"columns": ["distance", "is_hazardous"], "data": [[true, true]]}}',
     "dataframe_split", 'row 1, column "distance": expected float, got boolean true'),
    (b'{"dataframe_records": [{"distance": 1}, {"distance": 2, "is_hazardous": false}]}',
     "dataframe_records", 'row 1: missing required column "is_hazardous"'),
    (b'{"inputs": [{"distance": 1, "is_hazardous": true, "foo": 1}]}', "inputs",
     'row 1: unexpected column "foo"'),
])
def test_invalid_payloads_in_every_format(data: bytes, fmt: str, message: str) -> None:
    report = validate_payload(SEED, data)
    assert (report.ok, report.format, messages(report)) == (False, fmt, [message])


def test_bool_is_not_a_number_and_int_is_not_a_bool() -> None:
    assert check(SEED, {"distance": True, "is_hazardous": 1}) == [
        'row 1, column "distance": expected float, got boolean true',
        'row 1, column "is_hazardous": expected boolean, got integer 1']


def test_integers_accept_integral_floats_and_check_int32_range() -> None:
    s = schema(n="int32", m="int64")
    assert check(s, {"n": 1.0, "m": 2**63 - 1}, {"n": -2**31, "m": -2**63}) == []
    assert check(s, {"n": 1.5, "m": 2**63}, {"n": 2**31, "m": 1e300},
                 {"n": "3", "m": float("inf")}) == [
        'row 1, column "n": expected integer, got float 1.5',
        'row 1, column "m": expected int64, got integer 9223372036854775808',
        'row 2, column "n": expected int32, got integer 2147483648',
        'row 2, column "m": expected int64, got float 1e+300',
        'row 3, column "n": expected integer, got string "3"',
        'row 3, column "m": expected integer, got float Infinity']


def test_nulls_only_where_nullable_and_missing_only_where_optional() -> None:
    s = parse_signature({"inputs": {"columns": [
        {"name": "a", "type": "float", "nullable": True},
        {"name": "b", "type": "string", "required": False},
        {"name": "c", "type": "bool"}]}}).inputs
    assert check(s, {"a": None, "c": True}) == []
    assert check(s, {"a": 1, "b": None, "c": None}, {"a": 2}) == [
        'row 1, column "b": expected string, got null',
        'row 1, column "c": expected boolean, got null',
        'row 2: missing required column "c"']


def test_strings_take_strings_only() -> None:
    assert check(schema(s="string"), {"s": 5}, {"s": ["x"]}, {"s": {"k": 1}}) == [
        'row 1, column "s": expected string, got integer 5',
        'row 2, column "s": expected string, got array',
        'row 3, column "s": expected string, got object']


def test_datetime_is_an_iso_string() -> None:
    s = schema(t="datetime")
    assert check(s, {"t": "2024-05-01"}, {"t": "2024-05-01T10:00:00+02:00"},
                 {"t": "2024-05-01 10:00"}) == []
    assert check(s, {"t": "yesterday"}, {"t": 1714550400}) == [
        'row 1, column "t": expected datetime, got string "yesterday"',
        'row 2, column "t": expected datetime, got integer 1714550400']


def test_bytes_are_base64_strings() -> None:
    s = schema(b="bytes")
    assert check(s, {"b": base64.b64encode(b"\x00\xff").decode()}, {"b": ""}) == []
    assert check(s, {"b": "not base64!"}, {"b": "QQ"}) == [
        'row 1, column "b": expected bytes, got string "not base64!"',
        'row 2, column "b": expected bytes, got string "QQ"']


def test_extra_columns_unless_allowed() -> None:
    assert check(SEED, {"distance": 1, "is_hazardous": True, "foo": 1, "bar": None}) == [
        'row 1: unexpected column "bar"', 'row 1: unexpected column "foo"']
    assert check(SEED, {"distance": 1, "is_hazardous": True, "foo": 1}, allow_extra=True) == []


def test_missing_and_extra_are_reported_once_per_column_with_a_count() -> None:
    records = [{"distance": 1, "foo": 1}] * 3 + [{"distance": 1, "is_hazardous": True}] + \
        [{"distance": 1, "is_hazardous": True, "foo": 2}]
    report = validate_payload(SEED, json.dumps(records).encode())
    assert report.total_problems == 2
    assert messages(report) == ['row 1: missing required column "is_hazardous" '
                                '(and 2 more rows)',
                                'row 1: unexpected column "foo" (and 3 more rows)']
    two = validate_payload(SEED, b'{"distance": [1, 2]}')
    assert messages(two) == ['row 1: missing required column "is_hazardous" (and 1 more row)']


def test_records_that_are_not_objects() -> None:
    assert check(SEED, [1, 2], "x", {"distance": 1, "is_hazardous": True}) == [
        "row 1: expected object, got array", 'row 2: expected object, got string "x"']


def test_max_errors_caps_problems_but_counts_all() -> None:
    records = [{"distance": str(i), "is_hazardous": i} for i in range(50)]
    report = validate_payload(SEED, json.dumps(records).encode(), max_errors=5)
    assert report.total_problems == 100
    assert [(p.row, p.column) for p in report.problems] == [
        (1, "distance"), (1, "is_hazardous"), (2, "distance"), (2, "is_hazardous"),
        (3, "distance")]
    none = validate_payload(SEED, json.dumps(records).encode(), max_errors=0)
    assert (none.problems, none.total_problems, none.ok) == ([], 100, False)
    with pytest.raises(UsageError, match="max_errors"):
        validate_payload(SEED, b"[]", max_errors=-1)


def test_problems_come_in_row_then_column_order() -> None:
    s = schema(a="int", b="int")
    got = check(s, {"b": "x", "a": "y"}, {"a": 1}, {"b": 2, "z": 0})
    assert got == ['row 1, column "a": expected integer, got string "y"',
                   'row 1, column "b": expected integer, got string "x"',
                   'row 2: missing required column "b"',
                   'row 3: missing required column "a"',
                   'row 3: unexpected column "z"']


def test_long_strings_are_quoted_and_truncated() -> None:
    assert describe_value("x" * 100) == 'string "' + "x" * 40 + '..." (100 characters)'
    assert describe_value('say "hi"\n') == 'string "say \\"hi\\"\\n"'
    assert describe_value(float("nan")) == "float NaN"
    assert describe_value(None) == "null"
    assert describe_value(False) == "boolean false"


def test_validate_records_on_columns() -> None:
    problems = validate_records(SEED, {"distance": [1.0, "2"], "is_hazardous": [True, MISSING]},
                                2)
    assert [p.message for p in problems] == [
        'row 2, column "distance": expected float, got string "2"',
        'row 2: missing required column "is_hazardous"']


def test_csv_column_missing_from_header() -> None:
    report = validate_payload(SEED, b"distance\n1\n2\n3\n")
    assert messages(report) == ['row 1: missing required column "is_hazardous" '
                                '(and 2 more rows)']


def test_a_large_batch_with_one_bad_value() -> None:
    rows: list[dict[str, Any]] = [{"distance": float(i), "is_hazardous": i % 2 == 0}
                                  for i in range(20_000)]
    rows[12_345]["distance"] = "oops"
    data = "\n".join(json.dumps(r) for r in rows).encode()
    report = validate_payload(SEED, data, filename="batch.jsonl")
    assert (report.rows, report.total_problems) == (20_000, 1)
    assert messages(report) == ['row 12346, column "distance": expected float, '
                                'got string "oops"']


def test_unparseable_payload_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not valid JSON"):
        validate_payload(SEED, b'{"distance": ')


# Tensors.

TENSORS = parse_signature({"inputs": {
    "x": {"dtype": "float32", "shape": [-1, 4]},
    "ids": {"dtype": "int64", "shape": ["batch"]},
    "mask": {"dtype": "bool", "shape": None}}}).inputs
ONE = parse_signature({"inputs": {"x": {"dtype": "float32", "shape": ["batch", 4]}}}).inputs


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_npz_valid() -> None:
    data = npz(x=np.zeros((3, 4), np.float32), ids=np.arange(3), mask=np.ones((3, 2), bool))
    report = validate_payload(TENSORS, data, filename="batch.npz")
    assert (report.ok, report.format, report.rows) == (True, "npz", 3)


def test_npz_dtype_shape_missing_and_extra() -> None:
    data = npz(x=np.zeros((3, 3), np.int64), mask=np.ones(3, np.float32), foo=np.zeros(1))
    report = validate_payload(TENSORS, data)
    assert not report.ok
    assert messages(report) == [
        'tensor "x": expected dtype float32, got int64',
        'tensor "x": dimension 1 must be 4, got 3',
        'missing tensor "ids"',
        'tensor "mask": expected dtype bool, got float32',
        'unexpected tensor "foo"']
    assert validate_payload(TENSORS, data, allow_extra=True).total_problems == 4


def test_npy_single_input() -> None:
    assert validate_payload(ONE, npy(np.zeros((2, 4), np.float32))).ok
    report = validate_payload(ONE, npy(np.zeros((2, 4, 1), np.float32)))
    assert messages(report) == ['tensor "x": expected rank 2, got 3']


def test_string_tensors_from_numpy() -> None:
    s = parse_signature({"inputs": {"t": {"dtype": "string", "shape": [-1]}}}).inputs
    assert validate_payload(s, npy(np.array(["a", "bc"]))).ok
    report = validate_payload(s, npy(np.array([1, 2])))
    assert messages(report) == ['tensor "t": expected dtype string, got int64']


@pytest.mark.parametrize(("doc", "expected"), [
    ([[1, 2.5, 3, 4]], []),
    ({"inputs": [[1, 2, 3, 4], [5, 6, 7, 8]]}, []),
    ({"x": []}, []),
    ([[1, 2, 3]], ['tensor "x": dimension 1 must be 4, got 3']),
    ([1, 2, 3, 4], ['tensor "x": expected rank 2, got 1']),
    ([[1, 2, 3, 4], [1, 2]], ['tensor "x": ragged nested lists, not a tensor']),
    ([[1, 2, "3", 4]], ['tensor "x": expected dtype float32, got string "3"']),
    ([[1, 2, True, 4]], ['tensor "x": expected dtype float32, got boolean true']),
    ({"y": [[1, 2, 3, 4]]}, ['missing tensor "x"', 'unexpected tensor "y"']),
])
def test_json_tensors(doc: Any, expected: list[str]) -> None:
    assert messages(validate_payload(ONE, json.dumps(doc).encode())) == expected


def test_json_integer_and_bool_tensors() -> None:
    s = parse_signature({"inputs": {
        "i": {"dtype": "uint8", "shape": [-1]}, "b": {"dtype": "bool", "shape": [2]}}}).inputs
    assert validate_payload(s, b'{"i": [0, 255, 3.0], "b": [true, false]}').ok
    report = validate_payload(s, b'{"i": [1, 256], "b": [1, 0]}')
    assert messages(report) == ['tensor "i": expected dtype uint8, got integer 256',
                                'tensor "b": expected dtype bool, got integer 1']
    report = validate_payload(s, b'{"i": [1.5], "b": [true]}')
    assert messages(report) == ['tensor "i": expected dtype uint8, got float 1.5',
                                'tensor "b": dimension 0 must be 2, got 1']


def test_sequence_and_map_values_are_only_checked_for_presence() -> None:
    s = parse_signature({"inputs": {"tensors": [
        {"name": "seq", "kind": "sequence", "dtype": "", "elem": {"dtype": "float32"}}]}}).inputs
    assert validate_payload(s, b'{"seq": [[1], [2, 3]]}').ok
    assert messages(validate_payload(s, b'{"other": 1}')) == [
        'missing tensor "seq"', 'unexpected tensor "other"']


def test_importing_the_validator_stays_light() -> None:
    code = ("import sys, modelreg.signatures.validate, modelreg.signatures.payload, "
            "modelreg.signatures.infer, modelreg.signatures.schema_json; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'jsonschema')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
