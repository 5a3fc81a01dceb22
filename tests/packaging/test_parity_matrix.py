"""The exporter's parity matrix: every tree family and linear models, with and without a
scaler in front, proven at the default tolerances on real samples and on rows placed at,
and one float32 step either side of, every split threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

from sklearn import ensemble, linear_model, tree  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.ensemble import VotingRegressor  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVR  # noqa: E402

from modelreg.errors import EXIT_MODEL, ModelError  # noqa: E402
from modelreg.packaging.converters import convert  # noqa: E402
from modelreg.packaging.parity import DEFAULT_ATOL, DEFAULT_RTOL, check_parity  # noqa: E402
from modelreg.packaging.runtime import InferenceRunner  # noqa: E402
from modelreg.packaging.samples import sample_inputs  # noqa: E402
from modelreg.packaging.sources import load_source  # noqa: E402

REGRESSORS = {
    "decision_tree": lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestRegressor(8, max_depth=6, random_state=0),
    "extra_trees": lambda: ensemble.ExtraTreesRegressor(8, max_depth=6, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingRegressor(n_estimators=30,
                                                                    random_state=0),
    "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingRegressor(
        max_iter=30, random_state=0),
    "ridge": lambda: linear_model.Ridge(alpha=0.5),
    "linear_regression": linear_model.LinearRegression,
}
CLASSIFIERS = {
    "decision_tree": lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestClassifier(8, max_depth=6, random_state=0),
    "extra_trees": lambda: ensemble.ExtraTreesClassifier(8, max_depth=6, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingClassifier(n_estimators=15,
                                                                     random_state=0),
    "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingClassifier(
        max_iter=15, random_state=0),
    "logistic_regression": lambda: linear_model.LogisticRegression(max_iter=5000),
}
DATA = {"diabetes": load_diabetes, "iris": load_iris, "breast_cancer": load_breast_cancer}
CASES = ([("diabetes", name, scaled) for name in REGRESSORS for scaled in (False, True)]
         + [("iris", name, scaled) for name in CLASSIFIERS for scaled in (False, True)]
         + [("breast_cancer", name, True) for name in ("gradient_boosting",
                                                       "hist_gradient_boosting")])


def splits(model: Any) -> list[tuple[int, float]]:
    """Every (feature, threshold) the model's trees compare against."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    found: list[tuple[int, float]] = []
    trees = [final] if hasattr(final, "tree_") else list(
        np.ravel(getattr(final, "estimators_", [])))
    for t in (e.tree_ for e in trees):
        inner = t.children_left >= 0
        found += zip(t.feature[inner].tolist(), t.threshold[inner].tolist(), strict=True)
    for predictor in (p for it in getattr(final, "_predictors", []) for p in it):
        nodes = predictor.nodes[predictor.nodes["is_leaf"] == 0]
        found += zip(nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(),
                     strict=True)
    return sorted(set(found))


def adversarial(model: Any, base: Any) -> Any:
    """Rows whose value reaching a split is its threshold, the float32 nearest to it, or
    the float32 values either side of that; through the scaler's inverse when there is one.
    """
    values = []
    for feature, threshold in splits(model):
        near = np.float32(threshold)
        for v in (threshold, near, np.nextafter(near, np.float32(np.inf)),
                  np.nextafter(near, np.float32(-np.inf))):
            values.append((feature, float(v)))
    scaler = model.steps[0][1] if isinstance(model, Pipeline) else None
    rows = np.repeat(base[None, :].astype(np.float64), len(values), axis=0)
    if scaler is not None:
        rows = scaler.transform(rows)
    for i, (feature, v) in enumerate(values):
        rows[i, feature] = v
    return scaler.inverse_transform(rows) if scaler is not None else rows


@pytest.mark.parametrize(("dataset", "name", "scaled"), CASES,
                         ids=[f"{d}-{'scaled-' if s else ''}{n}" for d, n, s in CASES])
def test_parity_on_samples_and_at_every_split(tmp_path: Path, dataset: str, name: str,
                                              scaled: bool) -> None:
    x, y = DATA[dataset](return_X_y=True)
    estimator = (REGRESSORS if dataset == "diabetes" else CLASSIFIERS)[name]()
    model = make_pipeline(StandardScaler(), estimator) if scaled else estimator
    model.fit(x[::2], y[::2])
    joblib.dump(model, tmp_path / "model.pkl")
    source = load_source(tmp_path, allow_pickle=True)
    columns = [f"f{i}" for i in range(x.shape[1])]
    held_out = json.dumps([dict(zip(columns, row.tolist(), strict=True)) for row in x[1::6]])
    sample = sample_inputs(source, sample=held_out.encode(), sample_name="sample.json",
                           signature=None)
    conversion = convert(source, sample)
    assert InferenceRunner(conversion.onnx_bytes).input_types == {"X": "tensor(double)"}

    report = check_parity(source, conversion, sample)
    assert report.ok, report.details
    assert (report.rtol, report.atol) == (DEFAULT_RTOL, DEFAULT_ATOL)
    assert report.samples == len(x[1::6]) and report.label_mismatches == 0

    if not splits(model):
        return  # a linear model: no thresholds
    rows = adversarial(model, x[1])
    edge = check_parity(source, conversion, {"X": rows})
    assert edge.ok, edge.details
    assert edge.samples == len(rows) and edge.label_mismatches == 0


def test_adversarial_rows_sit_on_the_edges() -> None:
    """The rows are where float32 arithmetic goes wrong: scaling them in float32 (what the
    float32 graphs did) changes scikit-learn's own answer on some of them."""
    x, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(),
                          ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0))
    model.fit(x, y)
    rows = adversarial(model, x[0])
    in_float32 = model.steps[1][1].predict(
        model.steps[0][1].transform(rows.astype(np.float32)).astype(np.float32))
    assert np.count_nonzero(~np.isclose(in_float32, model.predict(rows), rtol=DEFAULT_RTOL,
                                        atol=DEFAULT_ATOL)) > 0


@pytest.mark.parametrize("model", [
    pytest.param(lambda: SVR(), id="svr"),  # ONNX Runtime has no float64 SVM kernel
    pytest.param(lambda: VotingRegressor([  # trees inside a container get no cast
        ("forest", ensemble.RandomForestRegressor(4, max_depth=4, random_state=0)),
        ("ridge", linear_model.Ridge())]), id="voting"),
])
def test_models_without_a_float64_graph_convert_in_float32(tmp_path: Path,
                                                          model: Any) -> None:
    x, y = load_diabetes(return_X_y=True)
    joblib.dump(model().fit(x, y), tmp_path / "model.pkl")
    source = load_source(tmp_path, allow_pickle=True)
    sample = {"X": x[::9]}
    conversion = convert(source, sample)
    assert InferenceRunner(conversion.onnx_bytes).input_types == {"X": "tensor(float)"}
    report = check_parity(source, conversion, sample)
    assert report.ok, report.details


def test_categorical_histogram_splits_are_refused(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    x[:, 1] = x[:, 1] > 0
    joblib.dump(ensemble.HistGradientBoostingRegressor(max_iter=3, categorical_features=[1])
                .fit(x, y), tmp_path / "model.pkl")
    source = load_source(tmp_path, allow_pickle=True)
    with pytest.raises(ModelError, match="categorical splits of histogram gradient boosting "
                                         "cannot be converted") as refused:
        convert(source, {"X": x[:4]})
    assert refused.value.exit_code == EXIT_MODEL


@pytest.mark.parametrize("case", ["poisson", "missing_values", "float_labels"])
def test_hist_gradient_boosting_links_missing_values_and_labels(tmp_path: Path,
                                                                case: str) -> None:
    x, y = load_diabetes(return_X_y=True)
    if case == "poisson":  # a log link: exp of the raw score
        model = ensemble.HistGradientBoostingRegressor(loss="poisson", max_iter=10)
    elif case == "missing_values":  # NaN follows each split's missing_go_to_left
        x[::7, 2] = np.nan
        model = ensemble.HistGradientBoostingRegressor(max_iter=10)
    else:  # classes 0.0, 1.0, 2.0 come out as int64 labels that equal them
        x, y = load_iris(return_X_y=True)
        y = y.astype(float)
        model = ensemble.HistGradientBoostingClassifier(max_iter=5)
    joblib.dump(model.fit(x, y), tmp_path / "model.pkl")
    source = load_source(tmp_path, allow_pickle=True)
    sample = {"X": x[::5]}
    report = check_parity(source, convert(source, sample), sample)
    assert report.ok and report.label_mismatches == 0, report.details
