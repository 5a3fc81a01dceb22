"""Payload parsing: format detection, every accepted shape, CSV typing, parse errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from modelreg.errors import UsageError
from modelreg.signatures.model import parse_signature
from modelreg.signatures.payload import (
    MISSING,
    NOT_A_RECORD,
    ColumnPayload,
    TensorPayload,
    detect_format,
    parse_csv_cell,
    parse_payload,
    read_columns,
    records_to_columns,
)

COLS = parse_signature({"inputs": {"distance": "float", "is_hazardous": "bool",
                                   "n": "int32", "name": "string"}}).inputs
TENSORS = parse_signature({"inputs": {"x": {"dtype": "float32", "shape": [-1, 4]},
                                      "mask": {"dtype": "bool", "shape": [-1]}}}).inputs
ONE_TENSOR = parse_signature({"inputs": {"x": {"dtype": "float32", "shape": [-1, 2]}}}).inputs


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(("data", "filename", "fmt", "expected"), [
    (b"{}", None, "JSONL", "jsonl"),
    (b"{}", None, "ndjson", "jsonl"),
    (b"{}", None, "dataframe_split", "dataframe_split"),
    (b"a,b\n", "x.CSV", None, "csv"),
    (b"{}", "x.jsonl", None, "jsonl"),
    (b"{}", "x.ndjson", None, "jsonl"),
    (b"a\n1\n", "x.json", None, "json"),
    (b"", "x.npz", None, "npz"),
    (b"\x93NUMPY...", None, None, "npy"),
    (b"PK\x03\x04...", None, None, "npz"),
    (b"  \n [1]", None, None, "json"),
    (b"\xef\xbb\xbf{\"a\": 1}", None, None, "json"),
    (b"a,b\n1,2\n", None, None, "csv"),
])
def test_detect_format(data: bytes, filename: str | None, fmt: str | None,
                       expected: str) -> None:
    assert detect_format(data, filename=filename, fmt=fmt) == expected


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown payload format 'xml'"):
        detect_format(b"", fmt="xml")


RECORD_SHAPES = [
    (b'{"distance": 1.5, "n": 2}', "record"),
    (b'[{"distance": 1.5, "n": 2}]', "records"),
    (b'{"distance": 1.5, "n": 2}\n', "record"),
    (b'{"distance": [1.5], "n": [2]}', "columns"),
    (b'{"dataframe_records": [{"distance": 1.5, "n": 2}]}', "dataframe_records"),
    (b'{"dataframe_split": {"columns": ["distance", "n"], "data": [[1.5, 2]]}}',
     "dataframe_split"),
    (b'{"dataframe_split": {"index": [0], "columns": ["distance", "n"], "data": [[1.5, 2]]},'
     b' "params": {"k": 1}}', "dataframe_split"),
    (b'{"inputs": [{"distance": 1.5, "n": 2}]}', "inputs"),
    (b'{"inputs": {"distance": [1.5], "n": [2]}}', "inputs"),
    (b'{"inputs": {"distance": 1.5, "n": 2}}', "inputs"),
    (b'distance,n\n1.5,2\n', "csv"),
]


@pytest.mark.parametrize(("data", "shape"), RECORD_SHAPES)
def test_every_record_shape_reads_to_the_same_columns(data: bytes, shape: str) -> None:
    payload = parse_payload(COLS, data)
    assert isinstance(payload, ColumnPayload)
    assert payload.format == shape
    assert payload.n_rows == 1
    assert payload.columns == {"distance": [1.5], "n": [2]}
    assert payload.records() == [{"distance": 1.5, "n": 2}]


def test_jsonl_keeps_records_apart_and_skips_blank_lines() -> None:
    payload = read_columns(b'{"a": 1}\n\n  \n{"b": "x\\u2028y"}\r\n7\n', fmt="jsonl")
    assert payload.format == "jsonl"
    assert payload.n_rows == 3
    assert payload.columns == {"a": [1, MISSING, NOT_A_RECORD], "b": [MISSING, "x\u2028y",
                                                                      NOT_A_RECORD]}
    assert payload.not_records == {2: 7}
    assert payload.records() == [{"a": 1}, {"b": "x\u2028y"}, 7]


def test_a_json_file_holding_several_values_reads_as_jsonl() -> None:
    payload = read_columns(b'{"a": 1}\n{"a": 2}\n', filename="sample.json")
    assert (payload.format, payload.columns) == ("jsonl", {"a": [1, 2]})


def test_records_with_the_same_keys_in_another_order() -> None:
    payload = records_to_columns([{"a": 1, "b": 2}, {"b": 3, "a": 4}])
    assert payload.columns == {"a": [1, 4], "b": [2, 3]}
    assert payload.not_records == {}


def test_a_column_named_like_a_serving_key_is_a_record() -> None:
    payload = read_columns(b'{"inputs": "text", "params": 2}')
    assert (payload.format, payload.columns) == ("record", {"inputs": ["text"], "params": [2]})


def test_empty_array_is_zero_rows() -> None:
    payload = read_columns(b"[]")
    assert (payload.n_rows, payload.columns) == (0, {})


@pytest.mark.parametrize(("text", "ctype", "value"), [
    ("12.5", "float64", 12.5), (" 3 ", "float32", 3), ("1e3", "float64", 1000.0),
    ("-.5", "float64", -0.5), ("NaN", "float64", "nan"), ("-Infinity", "float64", "-inf"),
    ("abc", "float64", "abc"), ("1_000", "int64", "1_000"), ("7", "int32", 7),
    ("7.0", "int64", 7.0), ("7.5", "int64", 7.5),
    ("true", "boolean", True), ("FALSE", "boolean", False), ("1", "boolean", True),
    ("0", "boolean", False), ("yes", "boolean", "yes"),
    ("", "float64", None), ("", "string", None), ("", "boolean", None),
    (" hi ", "string", " hi "), ("2024-01-01", "datetime", "2024-01-01"),
    ("AAE=", "bytes", "AAE="),
])
def test_csv_cells_are_read_by_column_type(text: str, ctype: str, value: object) -> None:
    got = parse_csv_cell(text, ctype)
    if value in ("nan", "-inf"):
        assert isinstance(got, float) and str(got) == value
    else:
        assert got == value and type(got) is type(value)


def test_csv_with_schema_types_cells_and_keeps_extras_as_text() -> None:
    data = b'distance,is_hazardous,n,name,extra\n12.5,True,3,"a, b",x\n,0,,,\n'
    payload = parse_payload(COLS, data)
    assert isinstance(payload, ColumnPayload)
    assert payload.columns == {"distance": [12.5, None], "is_hazardous": [True, False],
                               "n": [3, None], "name": ["a, b", None], "extra": ["x", None]}


def test_csv_without_schema_keeps_text() -> None:
    payload = read_columns(b"a,b\n1,\n", fmt="csv")
    assert payload.text
    assert payload.columns == {"a": ["1"], "b": [None]}


@pytest.mark.parametrize(("data", "fmt", "message"), [
    (b"", None, "empty"),
    (b"   ", "json", "empty"),
    (b'{"a": ', None, "not valid JSON"),
    (b'{"a": 1}\n{"a": \n', "jsonl", "JSONL line 2 is not valid JSON"),
    (b"\xff\xfe{", "json", "not UTF-8"),
    (b"42", "json", "must be an object"),
    (b"", "csv", "needs a header"),
    (b"a,a\n1,2\n", "csv", "name every column once"),
    (b"a,b\n1\n", "csv", "CSV record 1 has 1 fields"),
    (b'a\n"x\n', "csv", "does not parse"),
    (b'{"a": [1, 2], "b": [1]}', None, "different lengths"),
    (b'{"dataframe_split": {"columns": ["a"]}}', None, "dataframe_split needs"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": []}}', None, "distinct"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', None, "data row 1"),
    (b'{"a": 1}', "records", "in the record shape, not records"),
    (b'{"a": 1}', "columns", "in the record shape, not columns"),
    (b'[{"a": 1}]', "record", "in the records shape, not record"),
    (b'{"a": 1}', "dataframe_records", "no 'dataframe_records' key"),
    (b'{"a": 1}\n{"a": 2}', "records", "JSON Lines, not the records shape"),
    (b'{"inputs": 5}', "inputs", "must be an object, an array of objects"),
    (b'{"x": 5}', "inputs", "no 'inputs' key"),
    (b"\x93NUMPY", None, "carries tensors"),
])
def test_unparseable_column_payloads_are_usage_errors(data: bytes, fmt: str | None,
                                                      message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_payload(COLS, data, fmt=fmt)


def test_npy_feeds_the_single_input() -> None:
    array = np.zeros((3, 2), dtype=np.float32)
    payload = parse_payload(ONE_TENSOR, npy(array), filename="x.npy")
    assert isinstance(payload, TensorPayload)
    assert payload.format == "npy"
    np.testing.assert_array_equal(payload.tensors["x"], array)


def test_npy_needs_a_single_input_signature() -> None:
    with pytest.raises(UsageError, match="use .npz"):
        parse_payload(TENSORS, npy(np.zeros(3)))


def test_npz_is_keyed_by_input_name() -> None:
    payload = parse_payload(TENSORS, npz(x=np.ones((2, 4), np.float32), mask=np.ones(2, bool)))
    assert isinstance(payload, TensorPayload)
    assert payload.format == "npz"
    assert sorted(payload.tensors) == ["mask", "x"]


@pytest.mark.parametrize(("data", "name"), [
    (b"not an array", "npy"), (b"PK\x03\x04garbage", "npz"),
])
def test_broken_numpy_files_are_usage_errors(data: bytes, name: str) -> None:
    with pytest.raises(UsageError, match=f"the {name} payload does not load"):
        parse_payload(ONE_TENSOR, data, fmt=name)


def test_pickled_object_arrays_are_refused() -> None:
    with pytest.raises(UsageError, match="does not load"):
        parse_payload(ONE_TENSOR, npy(np.array([{"a": 1}], dtype=object)))


@pytest.mark.parametrize(("doc", "fmt", "tensors"), [
    ([[1, 2]], "tensors", {"x": [[1, 2]]}),
    ({"x": [[1, 2]]}, "tensors", {"x": [[1, 2]]}),
    ({"inputs": {"x": [[1, 2]]}}, "inputs", {"x": [[1, 2]]}),
    ({"inputs": [[1, 2]]}, "inputs", {"x": [[1, 2]]}),
    ({"inputs": [[1, 2]], "params": {"t": 1}}, "inputs", {"x": [[1, 2]]}),
])
def test_json_tensor_shapes(doc: object, fmt: str, tensors: dict[str, object]) -> None:
    payload = parse_payload(ONE_TENSOR, json.dumps(doc).encode())
    assert isinstance(payload, TensorPayload)
    assert (payload.format, payload.tensors) == (fmt, tensors)


@pytest.mark.parametrize(("data", "fmt", "message"), [
    (b"[[1, 2]]", None, "feeds one input"),
    (b"a,b\n1,2\n", None, "carries columns"),
    (b"[1]\n[2]\n", None, "JSON Lines"),
    (b"[1]", "inputs", "no \"inputs\" key"),
])
def test_tensor_payload_errors(data: bytes, fmt: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_payload(TENSORS, data, fmt=fmt)


def test_npy_and_npz_must_be_what_the_format_says() -> None:
    with pytest.raises(UsageError, match="an .npz file, not npy"):
        parse_payload(ONE_TENSOR, npz(x=np.zeros((1, 2), np.float32)), fmt="npy")
    with pytest.raises(UsageError, match="an .npy file, not npz"):
        parse_payload(ONE_TENSOR, npy(np.zeros((1, 2), np.float32)), filename="a.npz")


def test_a_plain_zip_is_not_an_npz() -> None:
    import io
    import zipfile

    from modelreg.errors import UsageError
    from modelreg.signatures.payload import load_arrays

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(UsageError, match="not .npy arrays"):
        load_arrays(buf.getvalue(), "npz")
