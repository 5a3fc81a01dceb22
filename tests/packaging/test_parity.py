"""modelreg.packaging.parity: the comparison rule, label checks and the report."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from modelreg.packaging.converters import convert  # noqa: E402
from modelreg.packaging.parity import (  # noqa: E402
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ParityReport,
    _compare,
    check_parity,
)
from modelreg.packaging.sources import SourceModel  # noqa: E402


def sk(model: Any) -> SourceModel:
    return SourceModel("sklearn", "pickle", Path("model.pkl"), model, 4)


@pytest.fixture(scope="module")
def iris_x() -> Any:
    return load_iris(return_X_y=True)[0].astype(np.float32)


def test_defaults_are_documented_values() -> None:
    assert (DEFAULT_RTOL, DEFAULT_ATOL) == (1e-3, 1e-4)


def test_wrong_labels_are_counted(iris_x: Any) -> None:
    y = load_iris(return_X_y=True)[1]
    good = sk(LogisticRegression(max_iter=1000).fit(iris_x, y))
    shuffled = sk(LogisticRegression(max_iter=1000).fit(iris_x, (y + 1) % 3))
    sample = {"X": iris_x[::10]}
    report = check_parity(good, convert(shuffled, sample), sample)
    assert not report.ok
    assert report.label_mismatches > 0 and report.samples == 15
    assert "values differ (first at [0]" in report.details[0]


def test_missing_outputs_fail(iris_x: Any) -> None:
    y = load_iris(return_X_y=True)[1]
    source = sk(LogisticRegression(max_iter=1000).fit(iris_x, y))
    sample = {"X": iris_x[:5]}
    conversion = replace(convert(source, sample), output_names=["label"])
    report = check_parity(source, conversion, sample)
    assert not report.ok and "the source gives 2 outputs, the ONNX graph 1" in report.details


def test_nan_matches_only_nan() -> None:
    nan = math.nan
    ok = _compare("y", np.array([nan, 1.0], np.float32), np.array([nan, 1.0]), 0.0, 0.0)
    assert ok[:4] == (0.0, 0.0, 0, True)
    bad = _compare("y", np.array([nan, 1.0], np.float32), np.array([0.0, 1.0]), 1.0, 1.0)
    assert bad[3] is False and bad[0] == math.inf


def test_rule_is_atol_plus_rtol_times_source() -> None:
    want = np.array([100.0, 0.0])
    assert _compare("y", want + [0.1, 0.0], want, 1e-3, 0.0)[3]  # 0.1 <= 1e-3 * 100
    assert not _compare("y", want + [0.0, 1e-3], want, 1e-3, 1e-4)[3]  # near zero: atol
    _, rel, _, _, line = _compare("y", want + [0.05, 0.0], want, 1e-3, 1e-4)
    assert rel == pytest.approx(5e-4) and "0 of 2 values outside" in line
    assert not _compare("y", np.zeros(3), np.zeros(2), 1.0, 1.0)[3]  # shape mismatch


def test_strings_compare_exactly() -> None:
    got = np.array(["a", "b"], dtype=object)
    assert _compare("label", got, np.array(["a", "b"]), 0, 0)[2:4] == (0, True)
    assert _compare("label", got, np.array(["a", "c"]), 0, 0)[2:4] == (1, False)


def test_report_to_dict_is_json_ready() -> None:
    report = ParityReport(False, 3, math.inf, math.nan, 1e-3, 1e-4, 0, ["y"], ["y: bad"])
    doc = report.to_dict()
    assert doc["max_abs_err"] is None and doc["max_rel_err"] is None
    assert sorted(doc) == ["atol", "details", "label_mismatches", "max_abs_err",
                           "max_rel_err", "ok", "outputs", "rtol", "samples"]


