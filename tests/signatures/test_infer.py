"""Signature inference from sample data: types, nullable, required, tensors, errors."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from modelreg.errors import UsageError
from modelreg.signatures.infer import infer_from_sample
from modelreg.signatures.model import ColumnSpec, Signature, TensorSpec
from modelreg.signatures.validate import validate_payload


def columns(sig: Signature) -> dict[str, tuple[str, bool, bool]]:
    return {c.name: (c.type, c.required, c.nullable) for c in sig.inputs.columns}


def test_json_records() -> None:
    data = json.dumps([
        {"distance": 12.5, "stops": 3, "hazard": True, "city": "Oslo",
         "at": "2024-05-01T10:00:00", "score": 1},
        {"distance": 3, "stops": 4, "hazard": False, "city": None,
         "at": "2024-05-02", "score": 2.5},
    ]).encode()
    sig = infer_from_sample(data)
    assert sig.outputs is None
    assert columns(sig) == {
        "distance": ("float64", True, False), "stops": ("int64", True, False),
        "hazard": ("boolean", True, False), "city": ("string", True, True),
        "at": ("datetime", True, False), "score": ("float64", True, False)}
    assert validate_payload(sig.inputs, data).ok


def test_a_key_missing_in_some_records_is_optional() -> None:
    sig = infer_from_sample(b'{"a": 1, "b": "x"}\n{"a": 2}\n{"c": null, "a": 3}\n')
    assert columns(sig) == {"a": ("int64", True, False), "b": ("string", False, False),
                            "c": ("string", False, True)}
    assert [c.name for c in sig.inputs.columns] == ["a", "b", "c"]


def test_csv_types_from_text() -> None:
    data = (b"n,x,flag,when,name,bits,empty\n"
            b"1,2.5,true,2024-01-01,ann,1,\n"
            b"-2,3,False,2024-01-02 10:00,,0,\n")
    sig = infer_from_sample(data, filename="sample.csv")
    assert columns(sig) == {
        "n": ("int64", True, False), "x": ("float64", True, False),
        "flag": ("boolean", True, False), "when": ("datetime", True, False),
        "name": ("string", True, True), "bits": ("int64", True, False),
        "empty": ("string", True, True)}
    assert validate_payload(sig.inputs, data, filename="sample.csv").ok


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2**70], "float64"), (["20240101", "2024-01-01"], "string"),
    (["2024-13-01"], "string"), ([None, None], "string"),
])
def test_edge_types(values: list[Any], expected: str) -> None:
    sig = infer_from_sample(json.dumps({"v": values}).encode())
    assert sig.inputs.columns[0].type == expected


@pytest.mark.parametrize(("data", "message"), [
    (b"[]", "no records"),
    (b"a,b\n", "no records"),
    (b'[{"a": 1}, 2]', "sample record 2 is integer 2, not an object"),
    (b'[{"a": 1}, {"a": "x"}]', "column 'a' mixes integer and string values"),
    (b'[{"a": true}, {"a": 1}]', "mixes boolean and integer"),
    (b'[{"a": [1]}]', "column 'a': array values have no column type"),
    (b'{"a": ', "not valid JSON"),
])
def test_inference_errors(data: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        infer_from_sample(data)


def test_tensors_json_is_refused() -> None:
    with pytest.raises(UsageError, match=r"\.npy or \.npz"):
        infer_from_sample(b"[[1, 2]]", fmt="tensors")


def test_npy_and_npz_give_tensor_signatures() -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros((8, 3), np.float32))
    sig = infer_from_sample(buf.getvalue(), filename="x.npy")
    assert sig.inputs.tensors == (TensorSpec("input", "float32", (-1, 3)),)
    buf = io.BytesIO()
    np.savez(buf, ids=np.arange(4), names=np.array(["a", "b", "c", "d"]),
             flag=np.array(True))
    sig = infer_from_sample(buf.getvalue(), filename="x.npz")
    assert sig.inputs.tensors == (TensorSpec("ids", "int64", (-1,)),
                                  TensorSpec("names", "string", (-1,)),
                                  TensorSpec("flag", "bool", ()))
    assert validate_payload(sig.inputs, buf.getvalue()).ok


def test_inferred_names_are_checked_like_declared_ones() -> None:
    with pytest.raises(UsageError, match="bad name"):
        infer_from_sample(b'{"a\\u0001": 1}')
    assert infer_from_sample(b'{"ok": 1}').inputs.columns == (ColumnSpec("ok", "int64"),)
