"""Parsing signatures: compact and full forms, errors that name the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import NotFound, UsageError
from modelreg.registry.manifest import Manifest, decode_manifest, encode_manifest
from modelreg.signatures.model import (
    COLUMN_TYPES,
    ColumnSpec,
    Schema,
    Signature,
    load_signature_file,
    parse_signature,
)
from modelreg.types import Artifact, FileInfo, Lineage


def test_compact_form() -> None:
    s = parse_signature({"inputs": {"distance": "float", "is_hazardous": "bool"},
                         "outputs": {"estimated_time_minutes": "float"}})
    assert s.inputs.columns == (ColumnSpec("distance", "float64"),
                                ColumnSpec("is_hazardous", "boolean"))
    assert s.outputs is not None
    assert s.outputs.names() == ["estimated_time_minutes"]


def test_full_form_round_trips() -> None:
    s = parse_signature({"inputs": {"columns": [
        {"name": "a", "type": "int32", "required": False, "nullable": True},
        {"name": "b", "type": "datetime"}]},
        "outputs": {"tensors": [{"name": "y", "dtype": "float32", "shape": ["batch", 1]}]}})
    assert parse_signature(s.to_dict()) == s
    assert s.to_dict()["outputs"]["tensors"][0]["shape"] == ["batch", 1]


def test_tensor_compact_form() -> None:
    s = parse_signature({"inputs": {"x": {"dtype": "float", "shape": [-1, 4]}}})
    assert s.inputs.kind == "tensors"
    assert s.inputs.tensors[0].dtype == "float32"
    assert s.inputs.tensors[0].shape == (-1, 4)


@pytest.mark.parametrize(("doc", "fragment"), [
    ({}, "inputs"),
    ({"inputs": {}}, "inputs"),
    ({"inputs": {"a": "complex"}}, "unknown column type"),
    ({"inputs": {"x": {"dtype": "float99", "shape": [1]}}}, "unknown tensor dtype"),
    ({"inputs": {"x": {"dtype": "float32", "shape": [-2]}}}, "bad dimension"),
    ({"inputs": {"columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}},
     "twice"),
    ({"inputs": {"a": {"type": "int", "nullable": "yes"}}}, "true or false"),
    ({"inputs": {"a": "int"}, "colour": 1}, "unknown keys"),
])
def test_errors_name_the_place(doc, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_signature(doc)


def test_load_file_json_and_toml(tmp_path: Path) -> None:
    j = tmp_path / "sig.json"
    j.write_text(json.dumps({"inputs": {"distance": "float"}}))
    t = tmp_path / "sig.toml"
    t.write_text('[inputs]\ndistance = "float"\n')
    assert load_signature_file(j) == load_signature_file(t)
    with pytest.raises(NotFound):
        load_signature_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match="does not parse"):
        load_signature_file(bad)


columns = st.lists(
    st.builds(ColumnSpec, name=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                       min_size=1, max_size=12),
              type=st.sampled_from(COLUMN_TYPES), required=st.booleans(),
              nullable=st.booleans()),
    min_size=1, max_size=6, unique_by=lambda c: c.name)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(columns)
def test_signature_survives_the_manifest(cols) -> None:
    sig = Signature(Schema(columns=tuple(cols)))
    m = Manifest("m", 1, "2026-01-01T00:00:00+00:00", "a", None, {},
                 Artifact("file", "sha256:" + "0" * 64, 1,
                          [FileInfo("f", "sha256:" + "0" * 64, 1)]),
                 Lineage(), signature=sig.to_dict())
    back = decode_manifest(encode_manifest(m), "x")
    assert back.signature is not None
    assert parse_signature(back.signature) == sig
