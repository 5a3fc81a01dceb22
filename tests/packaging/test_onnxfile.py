"""modelreg.packaging.onnxfile: signatures inferred from real converted models, proven by
running them."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")

from modelreg.errors import EXIT_MODEL, ModelError  # noqa: E402
from modelreg.packaging.onnxfile import (  # noqa: E402
    check_and_infer,
    infer_signature,
    is_onnx_file,
    load_model,
)
from modelreg.signatures.model import Signature, TensorSpec, parse_signature  # noqa: E402

ZIPMAP_PROBA = {"kind": "map", "key": "int64", "value": {"kind": "tensor", "dtype": "float32"}}


# --- helpers ---------------------------------------------------------------------------

def onnx_type_name(dtype: str) -> str:
    """'float32' -> 'float', as onnxruntime spells element types."""
    enum = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return str(onnx.TensorProto.DataType.Name(enum)).lower()


def ort_type(desc: dict[str, Any]) -> str:
    """Our recursive description -> onnxruntime's NodeArg.type string."""
    if desc["kind"] == "tensor":
        return f"tensor({onnx_type_name(desc['dtype'])})"
    if desc["kind"] == "sequence":
        return f"seq({ort_type(desc['elem'])})"
    return f"map({onnx_type_name(desc['key'])},{ort_type(desc['value'])})"


def spec_desc(spec: TensorSpec) -> dict[str, Any]:
    if spec.kind == "tensor":
        return {"kind": "tensor", "dtype": spec.dtype}
    if spec.kind == "sequence":
        assert spec.elem is not None
        return {"kind": "sequence", "elem": spec.elem}
    assert spec.elem is not None
    return {"kind": "map", **spec.elem}


def session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_against_runtime(path: Path, sig: Signature) -> None:
    """onnxruntime's own view of the graph agrees with the inferred signature, and the
    signature re-parses to itself."""
    sess = session(path)
    assert sig.outputs is not None
    for args, specs in ((sess.get_inputs(), sig.inputs.tensors),
                        (sess.get_outputs(), sig.outputs.tensors)):
        assert [a.name for a in args] == [s.name for s in specs]
        for arg, spec in zip(args, specs, strict=True):
            assert arg.type == ort_type(spec_desc(spec))
            if spec.kind == "tensor":
                assert spec.shape is not None
                assert [None if d == -1 else d for d in spec.shape] == arg.shape
    assert parse_signature(json.loads(json.dumps(sig.to_dict()))) == sig


def feed(sig: Signature, data: dict[str, Any]) -> dict[str, Any]:
    """Inputs built only from the inferred dtypes and shapes (a wrong dtype makes
    onnxruntime refuse the feed)."""
    assert sorted(data) == sorted(sig.inputs.names())
    out = {}
    for spec in sig.inputs.tensors:
        value = np.asarray(data[spec.name]).astype(np.dtype(spec.dtype))
        assert spec.shape is not None and value.ndim == len(spec.shape)
        for have, want in zip(value.shape, spec.shape, strict=True):
            assert not isinstance(want, int) or want in (-1, have)
        out[spec.name] = value
    return out


def run(path: Path, sig: Signature, data: dict[str, Any]) -> dict[str, Any]:
    assert sig.outputs is not None
    results = session(path).run(None, feed(sig, data))
    return dict(zip(sig.outputs.names(), results, strict=True))


def zipmap_to_array(rows: list[dict[int, float]]) -> Any:
    assert all(isinstance(k, int) for row in rows for k in row)
    return np.array([[row[k] for k in sorted(row)] for row in rows])


def tensor(name: str, dtype: str, shape: tuple[int | str, ...]) -> TensorSpec:
    return TensorSpec(name, dtype, shape)


# --- real models ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def convert(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    skl2onnx = pytest.importorskip("skl2onnx")

    def make(model: Any, sample: Any, name: str, **kwargs: Any) -> Path:
        proto = skl2onnx.to_onnx(model, sample, **kwargs)
        path = tmp_path_factory.mktemp("models") / f"{name}.onnx"
        path.write_bytes(proto.SerializeToString())
        return path

    return make


def test_linear_regression(convert: Callable[..., Path]) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    x, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(x, y)
    path = convert(model, x[:1], "linreg")
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("X", "float64", (-1, 10)),)
    assert sig.outputs is not None
    assert sig.outputs.tensors == (tensor("variable", "float64", (-1, 1)),)
    assert sig.extra["onnx"]["producer"] == "skl2onnx"
    assert isinstance(sig.extra["onnx"]["opset"], int)
    check_against_runtime(path, sig)
    got = run(path, sig, {"X": x[:25]})["variable"]
    np.testing.assert_allclose(got[:, 0], model.predict(x[:25]), rtol=1e-9)


@pytest.mark.parametrize("zipmap", [True, False])
def test_logistic_regression(convert: Callable[..., Path], iris: tuple[Any, Any],
                             zipmap: bool) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = iris
    model = LogisticRegression(max_iter=500).fit(x, y)
    options = None if zipmap else {"zipmap": False}
    path = convert(model, x[:1], f"logreg-{zipmap}", options=options)
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("X", "float32", (-1, 4)),)
    assert sig.outputs is not None
    if zipmap:
        assert sig.outputs.tensors == (
            tensor("output_label", "int64", (-1,)),
            TensorSpec("output_probability", "", kind="sequence", elem=ZIPMAP_PROBA))
    else:
        assert sig.outputs.tensors == (tensor("label", "int64", (-1,)),
                                       tensor("probabilities", "float32", (-1, 3)))
    check_against_runtime(path, sig)
    label, proba = run(path, sig, {"X": x}).values()
    np.testing.assert_array_equal(label, model.predict(x))
    proba = zipmap_to_array(proba) if zipmap else proba
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=1e-5)


def test_random_forest(convert: Callable[..., Path], iris: tuple[Any, Any]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(x, y)
    path = convert(model, x[:1], "forest")
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("X", "float32", (-1, 4)),)
    assert sig.outputs is not None
    assert sig.outputs.tensors[1] == TensorSpec("output_probability", "", kind="sequence",
                                                elem=ZIPMAP_PROBA)
    check_against_runtime(path, sig)
    out = run(path, sig, {"X": x})
    np.testing.assert_array_equal(out["output_label"], model.predict(x))
    np.testing.assert_allclose(zipmap_to_array(out["output_probability"]),
                               model.predict_proba(x), atol=1e-5)


def test_pipeline_with_scaler(convert: Callable[..., Path], iris: tuple[Any, Any]) -> None:
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    path = convert(model, None, "pipeline",
                   initial_types=[("features", FloatTensorType([None, 4]))])
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("features", "float32", (-1, 4)),)
    assert sig.outputs is not None
    assert sig.outputs.names() == ["output_label", "output_probability"]
    check_against_runtime(path, sig)
    out = run(path, sig, {"features": x[::7]})
    np.testing.assert_array_equal(out["output_label"], model.predict(x[::7]))
    np.testing.assert_allclose(zipmap_to_array(out["output_probability"]),
                               model.predict_proba(x[::7]), atol=1e-5)


def export_torch(tmp_path: Path, keep_initializers_as_inputs: bool = False) -> tuple[Path, Any]:
    """A two-input torch model, exported with the legacy (TorchScript) exporter: torch 2.13's
    default dynamo exporter needs onnxscript, which this project does not install."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(5, 4)
            self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                            torch.nn.Linear(8, 3))

        def forward(self, x: Any, ids: Any) -> Any:
            return torch.softmax(self.body(x + self.embed(ids)), dim=-1)

    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.randn(2, 4), torch.tensor([1, 3])), str(path),
                          input_names=["x", "ids"], output_names=["probs"],
                          dynamic_axes={"x": {0: "batch"}, "ids": {0: "batch"},
                                        "probs": {0: "batch"}},
                          keep_initializers_as_inputs=keep_initializers_as_inputs,
                          dynamo=False)
    return path, net


@pytest.mark.parametrize("keep_initializers_as_inputs", [False, True])
def test_torch_model(tmp_path: Path, keep_initializers_as_inputs: bool) -> None:
    import torch

    path, net = export_torch(tmp_path, keep_initializers_as_inputs)
    if keep_initializers_as_inputs:  # the weights are graph inputs, yet not signature inputs
        assert len(load_model(path).graph.input) > 2
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("x", "float32", ("batch", 4)),
                                  tensor("ids", "int64", ("batch",)))
    assert sig.outputs is not None
    assert sig.outputs.tensors == (tensor("probs", "float32", ("batch", 3)),)
    assert sig.extra["onnx"]["producer"] == "pytorch"
    if not keep_initializers_as_inputs:
        check_against_runtime(path, sig)
    rng = np.random.default_rng(0)
    x, ids = rng.normal(size=(7, 4)), rng.integers(0, 5, size=7)  # batch 7, exported with 2
    got = run(path, sig, {"x": x, "ids": ids})["probs"]
    with torch.no_grad():
        want = net(torch.tensor(x, dtype=torch.float32), torch.tensor(ids)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- graph features real converters rarely emit (hand-built with onnx.helper) ------------

def save(tmp_path: Path, inputs: list[Any], outputs: list[Any]) -> Path:
    h = onnx.helper
    graph = h.make_graph([h.make_node("Identity", [inputs[0].name], [outputs[0].name])],
                         "g", inputs, outputs)
    path = tmp_path / "hand.onnx"
    onnx.save(h.make_model(graph, producer_name="test"), str(path))
    return path


def test_unknown_rank_expressions_and_optional(tmp_path: Path) -> None:
    h, tp = onnx.helper, onnx.TensorProto
    opt = h.make_optional_type_proto(h.make_sequence_type_proto(
        h.make_tensor_type_proto(tp.STRING, [2])))
    path = save(tmp_path, [h.make_tensor_value_info("a", tp.BOOL, None),
                           h.make_tensor_value_info("b", tp.FLOAT16, ["s0 + 1", "n", None])],
                [h.make_tensor_value_info("y", tp.BOOL, None), h.make_value_info("o", opt)])
    sig = infer_signature(path)
    assert sig.inputs.tensors == (TensorSpec("a", "bool", None),
                                  tensor("b", "float16", (-1, "n", -1)))
    assert sig.outputs is not None
    assert sig.outputs.tensors[1] == TensorSpec(
        "o", "", kind="sequence", elem={"kind": "tensor", "dtype": "string", "shape": [2]})
    assert sig.extra["onnx"]["optional"] == ["o"]
    assert parse_signature(sig.to_dict()) == sig


def test_dimensions_shape_inference_invents_read_as_dynamic(tmp_path: Path) -> None:
    h, tp = onnx.helper, onnx.TensorProto
    path = save(tmp_path, [h.make_tensor_value_info("x", tp.DOUBLE, ["unk__3", 2])],
                [h.make_tensor_value_info("y", tp.DOUBLE, ["unk__1", "unk__batch"])])
    sig = infer_signature(path)
    assert sig.inputs.tensors == (tensor("x", "float64", (-1, 2)),)
    assert sig.outputs is not None
    assert sig.outputs.tensors == (tensor("y", "float64", (-1, "unk__batch")),)


def test_unnamed_element_type_is_a_model_error(tmp_path: Path) -> None:
    tp = onnx.TensorProto
    path = save(tmp_path, [onnx.helper.make_tensor_value_info("a", tp.FLOAT8E8M0, [1])],
                [onnx.helper.make_tensor_value_info("y", tp.FLOAT8E8M0, [1])])
    with pytest.raises(ModelError, match="float8e8m0"):
        infer_signature(path)


# --- unreadable files and detection ----------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"this is not a model\n", bytes(range(256)) * 4,
                                     b"\x08\x07\xff\xff\xff"])
def test_corrupt_file_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    for call in (load_model, infer_signature):
        with pytest.raises(ModelError, match="not a readable ONNX model") as info:
            call(path)
        assert info.value.exit_code == EXIT_MODEL == 7


def test_missing_file_and_directory_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="not a file"):
        load_model(tmp_path)


def test_is_onnx_file(tmp_path: Path) -> None:
    path, _ = export_torch(tmp_path)
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "lookalike.bin").write_bytes(b"\x08\x07\xff\xff\xff")
    assert is_onnx_file(path) and is_onnx_file(renamed)
    assert is_onnx_file(tmp_path / "junk.onnx")  # by extension; load_model decides
    assert not is_onnx_file(tmp_path / "notes.txt")
    assert not is_onnx_file(tmp_path / "lookalike.bin")
    assert not is_onnx_file(tmp_path) and not is_onnx_file(tmp_path / "absent.onnx")


# --- the checker and shape inference on serialized graphs ------------------------------

@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08\x07\x12\x02garbage"])
def test_broken_graph_is_a_model_error(content: bytes) -> None:
    with pytest.raises(ModelError) as err:
        check_and_infer(content)
    assert err.value.exit_code == EXIT_MODEL


def test_graph_the_checker_rejects_names_the_problem() -> None:
    onnx = pytest.importorskip("onnx")
    h, tp = onnx.helper, onnx.TensorProto
    graph = h.make_graph([h.make_node("Add", ["x", "nowhere"], ["y"])], "g",
                         [h.make_tensor_value_info("x", tp.FLOAT, [1])],
                         [h.make_tensor_value_info("y", tp.FLOAT, [1])])
    with pytest.raises(ModelError, match="checker") as err:
        check_and_infer(h.make_model(graph).SerializeToString())
    assert "nowhere" in str(err.value)
