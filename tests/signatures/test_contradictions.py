"""signature_contradictions: where a declared signature contradicts the one a graph infers.

The inferred signatures here are written out as values, so these tests need no onnx. They
are what tests/packaging/test_onnxfile.py asserts ``infer_signature`` reads from the real
graphs: the two-input torch model of ``export_torch`` and a scikit-learn logistic regression
converted with ZipMap on.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelreg.signatures.contradictions import signature_contradictions
from modelreg.signatures.model import Schema, Signature, TensorSpec, parse_signature

ZIPMAP_PROBA = {"kind": "map", "key": "int64", "value": {"kind": "tensor", "dtype": "float32"}}


@pytest.fixture(scope="module")
def torch_sig() -> Signature:
    return Signature(Schema(tensors=(TensorSpec("x", "float32", ("batch", 4)),
                                     TensorSpec("ids", "int64", ("batch",)))),
                     Schema(tensors=(TensorSpec("probs", "float32", ("batch", 3)),)))


@pytest.fixture(scope="module")
def zipmap_sig() -> Signature:
    return Signature(Schema(tensors=(TensorSpec("X", "float32", (-1, 4)),)),
                     Schema(tensors=(TensorSpec("output_label", "int64", (-1,)),
                                     TensorSpec("output_probability", "", kind="sequence",
                                                elem=ZIPMAP_PROBA))))


X = {"name": "x", "dtype": "float32", "shape": ["batch", 4]}
IDS = {"name": "ids", "dtype": "int64", "shape": [-1]}
PROBS = {"name": "probs", "dtype": "float32", "shape": ["b", 3]}


def declare(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None) -> Signature:
    doc: dict[str, Any] = {"inputs": {"tensors": inputs}}
    if outputs is not None:
        doc["outputs"] = {"tensors": outputs}
    return parse_signature(doc)


@pytest.mark.parametrize(("inputs", "outputs", "expected"), [
    ([X, IDS], [PROBS], []),
    ([X, IDS], None, []),  # outputs not declared: nothing to contradict
    ([{**X, "shape": [32, 4]}, {**IDS, "shape": [32]}], [{**PROBS, "shape": [32, 3]}], []),
    ([{**X, "shape": None}, IDS], [{**PROBS, "shape": [-1, -1]}], []),  # output less specific
    ([{**X, "shape": [-1, 5]}, IDS], [PROBS], ["input 'x': dimension 1 declared 5, the graph "
                                               "fixes it to 4"]),
    ([{**X, "shape": [-1, -1]}, IDS], [PROBS], ["input 'x': dimension 1 declared dynamic"]),
    ([{**X, "dtype": "float64"}, IDS], [PROBS], ["declared dtype float64, the graph has "
                                                 "float32"]),
    ([X, {**IDS, "shape": [-1, 1]}], [PROBS], ["input 'ids': declared rank 2"]),
    ([X, {**IDS, "name": "tokens"}], [PROBS], ["input 'tokens' is declared but the graph has "
                                               "no such input", "graph input 'ids' is not "
                                               "declared"]),
    ([X, IDS], [PROBS, {"name": "logits", "dtype": "float32"}], ["output 'logits' is "
                                                                "declared"]),
    ([{**X, "shape": [8, 4]}, IDS], [{**PROBS, "shape": [16, 3]}],
     ["graph dimension 'batch' is one size but is declared as 8 in input 'x'[0], 16 in output "
      "'probs'[0]"]),
])
def test_contradictions(torch_sig: Signature, inputs: list[dict[str, Any]],
                        outputs: list[dict[str, Any]] | None, expected: list[str]) -> None:
    lines = signature_contradictions(declare(inputs, outputs), torch_sig)
    assert len(lines) == len(expected), lines
    for line, fragment in zip(lines, expected, strict=True):
        assert fragment in line


def test_columns_are_not_compared(torch_sig: Signature) -> None:
    declared = parse_signature({"inputs": {"distance": "float", "hazardous": "bool"},
                                "outputs": {"eta": "float"}})
    assert signature_contradictions(declared, torch_sig) == []


@pytest.mark.parametrize(("proba", "expected"), [
    ({"kind": "sequence"}, None),
    ({"kind": "sequence", "elem": ZIPMAP_PROBA}, None),
    ({"kind": "sequence", "elem": {"kind": "map", "key": "int64"}}, None),
    ({"kind": "sequence", "elem": {**ZIPMAP_PROBA, "key": "string"}},
     "element.key: declared 'string', the graph has 'int64'"),
    ({"kind": "tensor", "dtype": "float32", "shape": [-1, 3]}, "declared tensor, the graph "
                                                               "has a sequence"),
])
def test_non_tensor_contradictions(zipmap_sig: Signature, proba: dict[str, Any],
                                   expected: str | None) -> None:
    declared = declare([{"name": "X", "dtype": "float32", "shape": [-1, 4]}],
                       [{"name": "output_label", "dtype": "int64", "shape": [-1]},
                        {"name": "output_probability", **proba}])
    lines = signature_contradictions(declared, zipmap_sig)
    if expected is None:
        assert lines == []
    else:
        assert len(lines) == 1 and expected in lines[0], lines
