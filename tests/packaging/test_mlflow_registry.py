"""`modelreg import --from-mlflow`: an MLflow registry, built by MLflow itself, moved over.

Both run in the MLflow environment (.venv-mlflow, where `make test` also installs modelreg
with its mlflow extra), as they would for a team moving off MLflow; what arrived is read
back with this environment's modelreg.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
MLFLOW_PYTHON = Path(os.environ.get("MODELREG_MLFLOW_PYTHON",
                                    REPO / ".venv-mlflow" / "bin" / "python"))
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
       "MODELREG_ACTOR": "migrator@example.com"}

BUILD = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import mlflow, mlflow.sklearn, pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression
uri = sys.argv[1]
mlflow.set_tracking_uri(uri)
client = MlflowClient()
x = pd.DataFrame({"rooms": [1.0, 2.0, 3.0, 4.0], "age": [10.0, 20.0, 5.0, 40.0]})
y = x.rooms * 2 + x.age / 10
def log(name, alpha, commit):
    with mlflow.start_run(run_name=f"{name}-{alpha}",
                          tags={"mlflow.source.git.commit": commit}) as run:
        mlflow.log_param("alpha", alpha)
        mlflow.log_metric("mae", 0.5 + alpha)
        model = LinearRegression().fit(x, y * (1 + alpha))
        mlflow.sklearn.log_model(model, name="model", input_example=x[:2],
                                 signature=infer_signature(x, model.predict(x)),
                                 registered_model_name=name)
        return run.info.run_id
runs = [log("houses", 0, "a" * 40), log("houses", 1, "b" * 40), log("fraud", 2, "c" * 40)]
client.transition_model_version_stage("houses", "1", "Production")
client.transition_model_version_stage("fraud", "1", "Staging")
client.set_registered_model_alias("houses", "champion", "2")
client.set_model_version_tag("houses", "2", "team", "risk")
client.update_model_version("houses", "2", description="the second try")
client.update_registered_model("fraud", description="flags fraud")
print(json.dumps(runs))
"""


def mlflow_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not MLFLOW_PYTHON.exists():
        pytest.skip(f"no MLflow environment at {MLFLOW_PYTHON} (make test installs it)")
    return subprocess.run([str(MLFLOW_PYTHON), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=ENV)


def show(store: Path, ref: str) -> dict[str, Any]:
    done = run_cli("show", ref, "--json", registry=store)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_an_mlflow_registry_moves_over(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    built = mlflow_run("-c", BUILD, uri, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    runs = json.loads(built.stdout.strip().splitlines()[-1])
    assert run_cli("init", tmp_path / "project").returncode == 0
    store = tmp_path / "project" / ".modelreg"
    moved = mlflow_run("-m", "modelreg", "-R", str(store), "import", "--from-mlflow", uri,
                       "--json", cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr[-3000:]
    report = json.loads(moved.stdout)
    assert report["models"] == ["fraud", "houses"]
    assert sorted(report["created"]) == ["fraud@1", "houses@1", "houses@2"]
    assert sorted(report["stages"]) == ["fraud@1 -> staging", "houses@1 -> production"]
    assert report["aliases"] == ["houses@champion -> 2"]
    assert {"what": "fraud: description", "why": "modelreg keeps descriptions per version"} \
        in report["skipped"]

    first = show(store, "houses@1")
    assert first["stage"] == "production"
    assert first["lineage"]["params"] == {"alpha": 0}
    assert first["lineage"]["metrics"] == {"mae": 0.5}
    assert first["lineage"]["run"] == {"id": runs[0], "name": "houses-0"}
    assert first["lineage"]["git"]["commit"] == "a" * 40
    assert first["tags"]["mlflow.version"] == "1"
    assert [c["name"] for c in first["signature"]["inputs"]["columns"]] == ["rooms", "age"]
    assert first["example"] is not None
    second = show(store, "houses@2")
    assert second["aliases"] == ["champion"]
    assert second["tags"]["team"] == "risk"
    assert second["description"] == "the second try"
    assert second["lineage"]["git"]["commit"] == "b" * 40
    assert show(store, "fraud@1")["stage"] == "staging"
    assert run_cli("fsck", registry=store).returncode == 0

    # Again: nothing registered twice, nothing moved, no new history.
    before = json.loads(run_cli("history", "houses", "--json", registry=store).stdout)
    again = mlflow_run("-m", "modelreg", "-R", str(store), "import", "--from-mlflow", uri,
                       "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    second_report = json.loads(again.stdout)
    assert second_report["created"] == []
    assert sorted(second_report["existing"]) == ["fraud@1", "houses@1", "houses@2"]
    assert second_report["stages"] == []
    after = json.loads(run_cli("history", "houses", "--json", registry=store).stdout)
    assert len(after["events"]) == len(before["events"])


def test_without_mlflow_it_says_what_to_install(tmp_path: Path) -> None:
    assert run_cli("init", tmp_path).returncode == 0
    done = run_cli("import", "--from-mlflow", f"sqlite:///{tmp_path}/none.db",
                   registry=tmp_path / ".modelreg")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        assert done.returncode == 7
        assert "pip install 'modelreg[mlflow]'" in done.stderr
    else:  # pragma: no cover - an environment with MLflow installed
        assert done.returncode == 0
    assert run_cli("import", "--from-mlflow", "x", "bundle.zip",
                   registry=tmp_path / ".modelreg").returncode == 2
