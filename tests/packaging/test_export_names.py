"""Exports through the CLI: a tree pipeline proven and run in float64, and the declared
names (outputs, and the columns behind the one input) carried into the ONNX file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("skl2onnx")

from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from modelreg.registry import Registry  # noqa: E402
from tests.helpers import run_cli  # noqa: E402


def register(registry: Registry, tmp_path: Path, name: str, model: Any,
             signature: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(model))
    (tmp_path / f"{name}.sig.json").write_text(json.dumps(signature))
    (tmp_path / f"{name}.sample.json").write_text(json.dumps(rows))
    done = run_cli("register", name, tmp_path / f"{name}.pkl", "--no-git", "--signature",
                   tmp_path / f"{name}.sig.json", "--sample", tmp_path / f"{name}.sample.json",
                   registry=registry.layout.root)
    assert done.returncode == 0, done.stderr


def the_onnx_file(registry: Registry, ref: str, dest: Path) -> Any:
    pulled = run_cli("pull", ref, dest, registry=registry.layout.root)
    assert pulled.returncode == 0, pulled.stderr
    (path,) = dest.rglob("*.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


def test_scaled_gradient_boosting_exports_and_predicts_in_float64(
        registry: Registry, tmp_path: Path) -> None:
    data = load_diabetes()
    cols = list(data.feature_names)
    model = make_pipeline(StandardScaler(),
                          GradientBoostingRegressor(n_estimators=30, random_state=0))
    model.fit(data.data, data.target)
    rows = [dict(zip(cols, r.tolist(), strict=True)) for r in data.data[::11]]  # 41 rows
    register(registry, tmp_path, "progress", model,
             {"inputs": {c: "float" for c in cols}, "outputs": {"progression": "float"}}, rows)

    exported = run_cli("export", "progress@1", "--allow-pickle", "--json",
                       registry=registry.layout.root)
    assert exported.returncode == 0, exported.stderr
    parity = json.loads(exported.stdout)["parity"]
    assert parity["ok"] is True and parity["samples"] == len(rows)
    assert (parity["rtol"], parity["atol"]) == (1e-3, 1e-4)
    assert parity["outputs"] == ["progression"]

    shown = run_cli("show", "progress@2", "--json", registry=registry.layout.root)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    sig = doc["signature"]
    assert sig["inputs"]["tensors"] == [{"name": "X", "kind": "tensor", "dtype": "float64",
                                         "shape": [-1, 10]}]
    assert [t["name"] for t in sig["outputs"]["tensors"]] == ["progression"]
    assert sig["extra"]["binding"]["dtype"] == "float64"
    assert [c["name"] for c in sig["extra"]["binding"]["columns"]] == cols
    assert doc["lineage"]["export"]["outputs"] == ["progression"]

    payload = tmp_path / "payload.json"
    held_out = data.data[5::37]
    payload.write_text(json.dumps([dict(zip(cols, r.tolist(), strict=True))
                                   for r in held_out]))
    predicted = run_cli("predict", "progress@2", payload, registry=registry.layout.root)
    assert predicted.returncode == 0, predicted.stderr
    got = np.asarray(json.loads(predicted.stdout)["outputs"]["progression"]).reshape(-1)
    np.testing.assert_allclose(got, model.predict(held_out), rtol=1e-3, atol=1e-4)
    assert run_cli("validate", "progress@2", payload,
                   registry=registry.layout.root).returncode == 0
    bench = run_cli("bench", "progress@2", "--duration", "0.1", "--json",
                    registry=registry.layout.root)
    assert bench.returncode == 0, bench.stderr

    graph = the_onnx_file(registry, "progress@2", tmp_path / "pulled").graph
    assert [o.name for o in graph.output] == ["progression"]
    assert graph.input[0].doc_string == f"columns, in order: {', '.join(cols)}"


def test_a_classifier_names_its_label_and_the_file_its_columns(
        registry: Registry, tmp_path: Path) -> None:
    data = load_iris()
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    names = np.array(["setosa", "versicolor", "virginica"])
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0)
    model.fit(data.data, names[data.target])
    rows = [dict(zip(cols, r.tolist(), strict=True)) for r in data.data[::15]]
    register(registry, tmp_path, "iris", model,
             {"inputs": {c: "float" for c in cols}, "outputs": {"species": "string"}}, rows)
    exported = run_cli("export", "iris@1", "--allow-pickle", "--json",
                       registry=registry.layout.root)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["parity"]["label_mismatches"] == 0

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(rows))
    predicted = run_cli("predict", "iris@2", payload, registry=registry.layout.root)
    assert predicted.returncode == 0, predicted.stderr
    outputs = json.loads(predicted.stdout)["outputs"]
    assert sorted(outputs) == ["probabilities", "species"]
    assert outputs["species"] == model.predict(data.data[::15]).tolist()

    model_file = the_onnx_file(registry, "iris@2", tmp_path / "pulled")
    assert [o.name for o in model_file.graph.output] == ["species", "probabilities"]
    meta = {p.key: json.loads(p.value) for p in model_file.metadata_props}
    assert meta["modelreg.columns"] == {"input": "X", "columns": cols}


def test_declared_outputs_that_do_not_fit_register_nothing(registry: Registry,
                                                           tmp_path: Path) -> None:
    data = load_diabetes()
    cols = list(data.feature_names)
    model = GradientBoostingRegressor(n_estimators=5, random_state=0)
    model.fit(data.data, data.target)
    rows = [dict(zip(cols, r.tolist(), strict=True)) for r in data.data[:5]]
    register(registry, tmp_path, "two", model, {"inputs": {c: "float" for c in cols},
                                                "outputs": {"y": "float", "err": "float"}},
             rows)
    refused = run_cli("export", "two@1", "--allow-pickle", registry=registry.layout.root)
    assert refused.returncode == 2
    assert "two@1's signature declares 2 outputs (y, err); the converted model gives 1 " \
           "(variable)" in refused.stderr
    register(registry, tmp_path, "clash", model, {"inputs": {c: "float" for c in cols},
                                                  "outputs": {"X": "float"}}, rows)
    clash = run_cli("export", "clash@1", "--allow-pickle", registry=registry.layout.root)
    assert clash.returncode == 7
    assert "cannot name output 'variable' 'X'" in clash.stderr
    listed = run_cli("versions", "two", "--json", registry=registry.layout.root)
    assert [v["version"] for v in json.loads(listed.stdout)["versions"]] == [1]
