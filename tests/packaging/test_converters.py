"""modelreg.packaging.converters: real scikit-learn and torch models converted, checked and
proven (the whole chain: load, sample, convert, parity)."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
torch = pytest.importorskip("torch")
joblib = pytest.importorskip("joblib")

from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from modelreg.errors import EXIT_MODEL, EXIT_POLICY, ModelError, PolicyDenied  # noqa: E402
from modelreg.packaging.converters import Conversion, convert  # noqa: E402
from modelreg.packaging.exporting import export_record  # noqa: E402
from modelreg.packaging.onnxfile import check_and_infer  # noqa: E402
from modelreg.packaging.parity import DEFAULT_ATOL, DEFAULT_RTOL, check_parity  # noqa: E402
from modelreg.packaging.runtime import InferenceRunner, load_session  # noqa: E402
from modelreg.packaging.samples import sample_inputs  # noqa: E402
from modelreg.packaging.sources import SourceModel, load_source  # noqa: E402
from modelreg.signatures.model import parse_signature  # noqa: E402


def close(got: Any, want: Any) -> None:
    """The parity rule, as numpy states it."""
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64).reshape(np.shape(want)),
                               want, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL)


def save_sklearn(directory: Path, model: Any, name: str = "model.pkl") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / name)
    return directory


def end_to_end(directory: Path, **sample: Any) -> tuple[SourceModel, Conversion, Any]:
    source = load_source(directory, allow_pickle=True)
    inputs = sample_inputs(source, sample=sample.get("data"), sample_name=sample.get("name"),
                           signature=sample.get("signature"))
    conversion = convert(source, inputs)
    assert check_and_infer(conversion.onnx_bytes)  # already checked; checking again passes
    report = check_parity(source, conversion, inputs)
    assert report.ok, report.details
    return source, conversion, report


# --- scikit-learn -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diabetes() -> Any:
    x, y = load_diabetes(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def iris() -> Any:
    x, y = load_iris(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def test_regressor(tmp_path: Path, diabetes: tuple[Any, Any, Any, Any]) -> None:
    x_train, x_test, y_train, _ = diabetes
    model = Ridge(alpha=0.1).fit(x_train, y_train)
    source, conversion, report = end_to_end(save_sklearn(tmp_path / "v1", model))
    assert (source.framework, source.kind, source.n_features) == ("sklearn", "pickle", 10)
    assert conversion.converter == "skl2onnx" and conversion.converter_version
    assert conversion.input_names == ["X"] and conversion.output_names == ["variable"]
    assert conversion.opset >= 13  # skl2onnx writes the lowest opset its float64 graph needs
    assert InferenceRunner(conversion.onnx_bytes).input_types == {"X": "tensor(double)"}
    assert report.samples == 32 and report.label_mismatches == 0
    assert report.max_abs_err > 0 and report.outputs == ["variable"]
    # held-out rows through a fresh runner equal scikit-learn's predictions
    got = InferenceRunner(conversion.onnx_bytes).run({"X": x_test})["variable"]
    close(got, model.predict(x_test))


def test_classifier_labels_and_probabilities(tmp_path: Path,
                                             iris: tuple[Any, Any, Any, Any]) -> None:
    x_train, x_test, y_train, _ = iris
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    _, conversion, report = end_to_end(save_sklearn(tmp_path / "v1", model, "clf.joblib"))
    assert conversion.output_names == ["label", "probabilities"]  # zipmap off: plain tensors
    assert report.label_mismatches == 0 and len(report.details) == 2
    out = InferenceRunner(conversion.onnx_bytes).run({"X": x_test.astype(np.float32)})
    assert isinstance(out["probabilities"], np.ndarray)
    np.testing.assert_array_equal(out["label"], model.predict(x_test))
    close(out["probabilities"], model.predict_proba(x_test))


def test_pipeline_with_preprocessing_and_string_labels(
        tmp_path: Path, iris: tuple[Any, Any, Any, Any]) -> None:
    x_train, x_test, y_train, _ = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, names[y_train])
    csv = "a,b,c,d\n" + "\n".join(",".join(map(str, row)) for row in x_train[:20])
    _, conversion, report = end_to_end(save_sklearn(tmp_path / "v1", model),
                                       data=csv.encode(), name="sample.csv")
    assert report.samples == 20
    out = InferenceRunner(conversion.onnx_bytes).run({"X": x_test})
    assert list(out["label"]) == list(model.predict(x_test))
    close(out["probabilities"], model.predict_proba(x_test))


def test_forced_bad_tolerance_reports_figures(tmp_path: Path,
                                              diabetes: tuple[Any, Any, Any, Any]) -> None:
    x_train, _, y_train, _ = diabetes
    source = load_source(save_sklearn(tmp_path / "v1", Ridge().fit(x_train, y_train)),
                         allow_pickle=True)
    inputs = sample_inputs(source, sample=None, sample_name=None, signature=None, n=8)
    conversion = convert(source, inputs)
    report = check_parity(source, conversion, inputs, rtol=0.0, atol=0.0)
    assert not report.ok  # float64 -> float32 is not bit-exact
    assert report.max_abs_err > 0 and report.max_rel_err > 0 and report.samples == 8
    assert (report.rtol, report.atol) == (0.0, 0.0)
    assert "values outside" in report.details[0]
    doc = report.to_dict()
    assert doc["ok"] is False and doc["max_abs_err"] == report.max_abs_err


def test_opset_static_batch_and_export_record(tmp_path: Path,
                                              iris: tuple[Any, Any, Any, Any]) -> None:
    x_train, _, y_train, _ = iris
    source = load_source(save_sklearn(tmp_path / "v1", LogisticRegression(max_iter=500)
                                      .fit(x_train, y_train)), allow_pickle=True)
    inputs = sample_inputs(source, sample=None, sample_name=None, signature=None, n=5)
    conversion = convert(source, inputs, opset=17, dynamic_batch=False)
    assert conversion.opset == 17
    assert load_session(conversion.onnx_bytes).get_inputs()[0].shape == [5, 4]
    report = check_parity(source, conversion, inputs)
    record = export_record(source, conversion, report, columns=["a", "b", "c", "d"])
    assert record["converter"] == "skl2onnx" and record["opset"] == 17
    assert record["parity"]["ok"] is True and "details" not in record["parity"]
    assert record["columns"] == ["a", "b", "c", "d"]


# --- torch ----------------------------------------------------------------------------------

class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(torch.relu(self.hidden(x))), dim=-1)


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 2)
        self.b = torch.nn.Linear(3, 2)

    def forward(self, features: Any, extra: Any) -> Any:
        z = self.a(features) + self.b(extra)
        return {"score": z, "best": z.argmax(dim=1)}


@pytest.fixture(scope="module")
def net() -> Any:
    torch.manual_seed(0)
    return Net().eval()


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_torchscript(tmp_path: Path, net: Any) -> None:
    (tmp_path / "v1").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(tmp_path / "v1" / "model.pt"))
    rows = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    source, conversion, report = end_to_end(  # no pickle involved, but allowed anyway
        tmp_path / "v1", data=npz(x=rows), name="sample.npz")
    assert source.kind == "torchscript" and conversion.converter == "torch.onnx"
    assert conversion.input_names == ["x"] and conversion.output_names == ["output"]
    assert report.samples == 16
    held_out = np.random.default_rng(2).standard_normal((7, 4)).astype(np.float32)
    got = InferenceRunner(conversion.onnx_bytes).run({"x": held_out})["output"]
    with torch.no_grad():
        close(got, net(torch.from_numpy(held_out)).numpy())
    # TorchScript needs no pickle permission
    assert load_source(tmp_path / "v1", allow_pickle=False).kind == "torchscript"


def test_whole_module_saved_with_torch_save(tmp_path: Path, net: Any) -> None:
    (tmp_path / "v1").mkdir()
    torch.save(net, tmp_path / "v1" / "model.pth")
    with pytest.raises(PolicyDenied) as denied:
        load_source(tmp_path / "v1", allow_pickle=False)
    assert denied.value.exit_code == EXIT_POLICY
    assert "arbitrary code" in str(denied.value) and "--allow-pickle" in str(denied.value)
    signature = parse_signature({"inputs": {"tensors": [
        {"name": "x", "dtype": "float32", "shape": ["batch", 4]}]}})
    source, conversion, report = end_to_end(tmp_path / "v1", signature=signature)
    assert source.kind == "torch_save" and report.samples == 32
    held_out = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    got = InferenceRunner(conversion.onnx_bytes).run({"x": held_out})["output"]
    with torch.no_grad():
        close(got, net(torch.from_numpy(held_out)).numpy())


def test_exported_program_with_named_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoHeads().eval()
    example = (torch.randn(4, 4), torch.randn(4, 3))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, example, dynamic_shapes=({0: batch}, {0: batch}))
    (tmp_path / "v1").mkdir()
    torch.export.save(program, tmp_path / "v1" / "model.pt2")
    with pytest.raises(PolicyDenied, match="unpickles"):
        load_source(tmp_path / "v1", allow_pickle=False)
    source, conversion, report = end_to_end(tmp_path / "v1")  # shapes recorded at export
    assert source.kind == "exported_program"
    assert conversion.input_names == ["features", "extra"]
    assert conversion.output_names == ["score", "best"]
    assert report.label_mismatches == 0 and report.samples == 32
    held_out = {"features": np.random.default_rng(4).standard_normal((9, 4)),
                "extra": np.random.default_rng(5).standard_normal((9, 3))}
    out = InferenceRunner(conversion.onnx_bytes).run(held_out)
    with torch.no_grad():
        want = model(*(torch.from_numpy(v).float() for v in held_out.values()))
    close(out["score"], want["score"].numpy())
    np.testing.assert_array_equal(out["best"], want["best"].numpy())


# --- refusals ---------------------------------------------------------------------------


def test_truncated_conversion_is_refused(tmp_path: Path,
                                         iris: tuple[Any, Any, Any, Any]) -> None:
    x_train, _, y_train, _ = iris
    source = load_source(save_sklearn(tmp_path / "v1", LogisticRegression(max_iter=500)
                                      .fit(x_train, y_train)), allow_pickle=True)
    conversion = convert(source, sample_inputs(source, sample=None, sample_name=None,
                                               signature=None))
    with pytest.raises(ModelError):
        check_and_infer(conversion.onnx_bytes[: len(conversion.onnx_bytes) // 2])


def test_missing_converter_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           iris: tuple[Any, Any, Any, Any]) -> None:
    x_train, _, y_train, _ = iris
    source = load_source(save_sklearn(tmp_path, Ridge().fit(x_train, y_train)),
                         allow_pickle=True)
    inputs = sample_inputs(source, sample=None, sample_name=None, signature=None)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import now raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'modelreg\[sklearn\]'") as err:
        convert(source, inputs)
    assert err.value.exit_code == EXIT_MODEL


def test_forward_must_return_tensors(tmp_path: Path) -> None:
    class Odd(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return x.numpy()

    source = SourceModel("torch", "torch_save", tmp_path / "odd.pt", Odd(), None)
    with pytest.raises(ModelError, match="forward must return tensors"):
        convert(source, {"x": np.zeros((2, 2), dtype=np.float32)})


def test_exporter_failure_quotes_the_exporter_and_keeps_stdout_clean(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    class Spectrum(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.fft.fft(x).abs()  # aten::fft_fft has no ONNX export

    source = SourceModel("torch", "torch_save", tmp_path / "fft.pt", Spectrum(), None)
    with pytest.raises(ModelError, match="fft") as err:
        convert(source, {"x": np.zeros((2, 4), dtype=np.float32)})
    assert err.value.exit_code == EXIT_MODEL and "torch.onnx cannot export" in str(err.value)
    assert capfd.readouterr().out == ""  # torch's graph dump went to stderr, not stdout


def test_estimator_without_converter(tmp_path: Path) -> None:
    from sklearn.cross_decomposition import CCA

    x = np.random.default_rng(0).standard_normal((20, 3))
    source = load_source(save_sklearn(tmp_path, CCA(n_components=1).fit(x, x[:, :2])),
                         allow_pickle=True)
    with pytest.raises(ModelError, match="skl2onnx cannot convert CCA"):
        convert(source, sample_inputs(source, sample=None, sample_name=None, signature=None))


# --- input order ------------------------------------------------------------------------


def test_inputs_bind_by_name_whatever_the_sample_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = SourceModel("torch", "torch_save", tmp_path / "m.pt", TwoHeads().eval(), None)
    rng = np.random.default_rng(0)
    sample = {"extra": rng.standard_normal((6, 3)).astype(np.float32),
              "features": rng.standard_normal((6, 4)).astype(np.float32)}
    conversion = convert(source, sample)
    assert conversion.input_names == ["features", "extra"]
    assert check_parity(source, conversion, sample).ok
