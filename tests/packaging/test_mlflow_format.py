"""`modelreg export --to mlflow`, loaded by real MLflow in its own environment (.venv-mlflow).

`make test` installs MLflow into .venv-mlflow (MODELREG_MLFLOW_PYTHON names another
interpreter). The exported model must load with `mlflow.pyfunc.load_model`, predict what
`modelreg predict` returns for the same rows, and show the translated signature, the input
example and the lineage through `mlflow.models.get_model_info`.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli

pytest.importorskip("sklearn")
REPO = Path(__file__).resolve().parents[2]
MLFLOW_PYTHON = Path(os.environ.get("MODELREG_MLFLOW_PYTHON",
                                    REPO / ".venv-mlflow" / "bin" / "python"))
ACTOR = "ci@example.com"

LOAD = r"""
import json, sys
import mlflow, pandas as pd
path, rows = sys.argv[1], json.loads(sys.argv[2])
model = mlflow.pyfunc.load_model(path)
info = mlflow.models.get_model_info(path)
example = mlflow.models.Model.load(path).load_input_example(path)
df = pd.DataFrame(rows["data"], columns=rows["columns"])
out = model.predict(df)
print(json.dumps({
    "predictions": out.iloc[:, 0].tolist(), "columns": list(out.columns),
    "inputs": info.signature.inputs.to_dict(), "outputs": info.signature.outputs.to_dict(),
    "example": None if example is None else example.to_dict(orient="split"),
    "metadata": info.metadata, "flavors": sorted(info.flavors),
}))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[list[float]]]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    import modelreg

    root = tmp_path_factory.mktemp("mlflow")
    reg, _ = modelreg.init(root)
    data = load_diabetes()
    names = list(data.feature_names)
    path = root / "ridge.pkl"
    path.write_bytes(pickle.dumps(Ridge(alpha=0.5).fit(data.data, data.target)))
    sample = root / "sample.json"
    sample.write_text(json.dumps([dict(zip(names, r, strict=True)) for r in data.data[:4]]))
    sig = {"inputs": {n: "float" for n in names}, "outputs": {"target": "float"}}
    made = modelreg.register("diabetes", [path], registry=reg, signature=sig, sample=sample,
                             git=False, actor=ACTOR, params={"alpha": 0.5},
                             metrics={"mae": 42.0})
    modelreg.export_onnx(made.version.ref, registry=reg, allow_pickle=True, actor=ACTOR)
    return reg.layout.root, names, data.data[10:16].tolist()


def mlflow_load(model: Path, names: list[str], rows: list[list[float]]) -> dict[str, Any]:
    if not MLFLOW_PYTHON.exists():
        pytest.skip(f"no MLflow environment at {MLFLOW_PYTHON} (make test installs it)")
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", LOAD, str(model),
                           json.dumps({"columns": names, "data": rows})],
                          capture_output=True, text=True, timeout=300, cwd=model.parent,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
                               "DO_NOT_TRACK": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def modelreg_predict(root: Path, names: list[str], rows: list[list[float]],
                     tmp_path: Path) -> list[float]:
    payload = tmp_path / "rows.json"
    payload.write_text(json.dumps({"dataframe_split": {"columns": names, "data": rows}}))
    done = run_cli("predict", "diabetes@2", payload, registry=root)
    assert done.returncode == 0, done.stderr
    return [r[0] for r in next(iter(json.loads(done.stdout)["outputs"].values()))]


def test_mlflow_loads_the_export_and_predicts_the_same(
        store: tuple[Path, list[str], list[list[float]]], tmp_path: Path) -> None:
    root, names, rows = store
    out = tmp_path / "model"
    done = run_cli("export", "diabetes@2", "--to", "mlflow", "-o", out, "--json", registry=root)
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["ref"] == "diabetes@2"
    assert {"MLmodel", "diabetes.onnx", "requirements.txt", "python_env.yaml", "conda.yaml",
            "input_example.json"} <= set(written["files"])
    got = mlflow_load(out, names, rows)
    assert got["predictions"] == pytest.approx(modelreg_predict(root, names, rows, tmp_path),
                                               rel=1e-6)
    assert got["flavors"] == ["onnx", "python_function"]
    assert [c["name"] for c in got["inputs"]] == names
    assert {c["type"] for c in got["inputs"]} == {"double"}
    assert got["outputs"][0]["type"] == "tensor"
    assert got["example"]["columns"] == names
    assert len(got["example"]["data"]) == 4
    lineage = got["metadata"]["modelreg"]
    assert lineage["ref"] == "diabetes@2"
    assert lineage["lineage"]["derived_from"] == "diabetes@1"
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("onnxruntime==") for r in requirements)


def test_a_zip_and_the_refusals(store: tuple[Path, list[str], list[list[float]]],
                                tmp_path: Path) -> None:
    root, names, rows = store
    packed = tmp_path / "model.zip"
    assert run_cli("export", "diabetes@2", "--to", "mlflow", "-o", packed,
                   registry=root).returncode == 0
    with zipfile.ZipFile(packed) as zf:
        assert "MLmodel" in zf.namelist()
        extracted = tmp_path / "unzipped"
        zf.extractall(extracted)
    assert mlflow_load(extracted, names, rows)["predictions"]
    again = run_cli("export", "diabetes@2", "--to", "mlflow", "-o", packed, registry=root)
    assert again.returncode == 4
    assert "--force" in again.stderr
    assert run_cli("export", "diabetes@2", "--to", "mlflow", "-o", packed, "--force",
                   registry=root).returncode == 0
    pickle_version = run_cli("export", "diabetes@1", "--to", "mlflow", "-o",
                             tmp_path / "p", registry=root)
    assert pickle_version.returncode == 7
    assert "modelreg export diabetes@1 --to onnx" in pickle_version.stderr
    assert not (tmp_path / "p").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    no_output = run_cli("export", "diabetes@2", "--to", "mlflow", registry=root)
    assert no_output.returncode == 2


LOG = r"""
import json, sys
import mlflow, mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression
work = sys.argv[1]
mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
x = pd.DataFrame({"rooms": [1.0, 2.0, 3.0, 4.0], "age": [10, 20, 5, 40]})
y = x.rooms * 2 + x.age / 10
with mlflow.start_run() as run:
    model = LinearRegression().fit(x, y)
    logged = mlflow.sklearn.log_model(model, name="model", input_example=x[:2],
                                      signature=infer_signature(x, model.predict(x)))
path = mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=f"{work}/model")
print(json.dumps({"path": path, "run_id": run.info.run_id}))
"""


def test_import_a_model_mlflow_logged(tmp_path: Path) -> None:
    if not MLFLOW_PYTHON.exists():
        pytest.skip(f"no MLflow environment at {MLFLOW_PYTHON} (make test installs it)")
    # In tmp_path: MLflow keeps a run's artifacts under ./mlruns of its working directory.
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", LOG, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    logged = json.loads(done.stdout.strip().splitlines()[-1])
    root = tmp_path / "store"
    assert run_cli("init", root).returncode == 0
    imported = run_cli("import", logged["path"], "--as", "houses", "--json",
                       registry=root / ".modelreg")
    assert imported.returncode == 0, imported.stderr
    shown = json.loads(run_cli("show", "houses@1", "--json", registry=root / ".modelreg").stdout)
    assert shown["lineage"]["run"]["id"] == logged["run_id"]
    assert shown["tags"]["mlflow.flavors"] == "python_function,sklearn"
    assert shown["tags"]["mlflow.loader_module"] == "mlflow.sklearn"
    columns = shown["signature"]["inputs"]["columns"]
    assert [(c["name"], c["type"]) for c in columns] == [("rooms", "float64"), ("age", "int64")]
    assert shown["example"] is not None
    files = {f["path"] for f in shown["artifact"]["files"]}
    assert "MLmodel" in files
    payload = tmp_path / "rows.json"
    payload.write_text(json.dumps([{"rooms": 2.0, "age": 3}]))
    assert run_cli("validate", "houses@1", payload, registry=root / ".modelreg").returncode == 0
    payload.write_text(json.dumps([{"rooms": "two", "age": 3}]))
    assert run_cli("validate", "houses@1", payload, registry=root / ".modelreg").returncode == 1


def test_import_refuses_what_is_not_an_mlflow_model(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert run_cli("init", root).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("import", empty, registry=root / ".modelreg")
    assert done.returncode == 2
    assert "no MLmodel file" in done.stderr
    (empty / "MLmodel").write_text("flavors: [unclosed\n")
    done = run_cli("import", empty, registry=root / ".modelreg")
    assert done.returncode == 2
    assert "YAML" in done.stderr
    (empty / "MLmodel").write_text("artifact_path: x\n")
    assert run_cli("import", empty, registry=root / ".modelreg").returncode == 2


def test_export_then_import_round_trip(store: tuple[Path, list[str], list[list[float]]],
                                       tmp_path: Path) -> None:
    root, _, _ = store
    out = tmp_path / "diabetes-mlflow"
    assert run_cli("export", "diabetes@2", "--to", "mlflow", "-o", out,
                   registry=root).returncode == 0
    again = tmp_path / "again"
    assert run_cli("init", again).returncode == 0
    done = run_cli("import", out, "--json", registry=again / ".modelreg")
    assert done.returncode == 0, done.stderr
    source = json.loads(run_cli("show", "diabetes@2", "--json", registry=root).stdout)
    copy = json.loads(run_cli("show", "diabetes-mlflow@1", "--json",
                              registry=again / ".modelreg").stdout)
    onnx_digest = {f["digest"] for f in source["artifact"]["files"]}
    assert onnx_digest <= {f["digest"] for f in copy["artifact"]["files"]}
    assert copy["tags"]["mlflow.flavors"] == "onnx,python_function"
    # The ONNX version takes its columns through a binding; the MLflow model names them.
    assert [c["name"] for c in copy["signature"]["inputs"]["columns"]] == [
        c["name"] for c in source["signature"]["extra"]["binding"]["columns"]]
