"""modelreg.packaging.runtime: ONNX Runtime sessions, the runner, and the bench rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from modelreg.errors import ModelError  # noqa: E402
from modelreg.packaging.onnxfile import check_and_infer  # noqa: E402
from modelreg.packaging.parity import DEFAULT_ATOL, DEFAULT_RTOL  # noqa: E402
from modelreg.packaging.runtime import (  # noqa: E402
    BenchResult,
    BenchRow,
    InferenceRunner,
    load_session,
)
from modelreg.types import to_json_data  # noqa: E402


def close(got: Any, want: Any) -> None:
    """The parity rule, as numpy states it."""
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64).reshape(np.shape(want)),
                               want, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL)


@pytest.fixture(scope="module")
def iris() -> Any:
    x, y = load_iris(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def test_runner_returns_zipmap_rows_as_dicts_and_checks_names(
        iris: tuple[Any, Any, Any, Any]) -> None:
    import skl2onnx

    x_train, x_test, y_train, _ = iris
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    proto = skl2onnx.to_onnx(model, x_train[:1].astype(np.float32))  # ZipMap left on
    runner = InferenceRunner(check_and_infer(proto.SerializeToString()))
    assert runner.input_names == ["X"] and runner.input_shapes["X"] == [None, 4]
    out = runner.run({"X": x_test[:3]}, outputs=["output_probability"])
    rows = out["output_probability"]
    assert isinstance(rows, list) and all(type(r) is dict for r in rows)
    assert sorted(rows[0]) == [0, 1, 2] and all(type(v) is float for v in rows[0].values())
    close([[r[k] for k in sorted(r)] for r in rows], model.predict_proba(x_test[:3]))
    with pytest.raises(ModelError, match="no X; unknown Y"):
        runner.run({"Y": x_test})
    with pytest.raises(ModelError, match="failed to run"):
        runner.run({"X": x_test[:, :2]})


def test_load_session_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        load_session(tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="cannot load"):
        load_session(b"\x08\x07garbage")


def test_bench_rows_keep_their_json_form() -> None:
    row = BenchRow(16, 200, p50_ms=0.0123, p95_ms=0.02, p99_ms=0.031,
                   throughput_rows_per_s=1234.5)
    result = BenchResult("m@2", [row])
    expected = {"ref": "m@2", "results": [
        {"batch_size": 16, "runs": 200, "p50_ms": 0.0123, "p95_ms": 0.02, "p99_ms": 0.031,
         "throughput_rows_per_s": 1234.5}]}
    assert result.to_dict() == expected
    assert to_json_data(result) == expected  # what `bench --json` prints
    assert json.loads(json.dumps(to_json_data(result))) == expected
    with pytest.raises(AttributeError):
        row.p95_ms = 1.0  # type: ignore[misc]
