"""An ONNX model may use only external data that is part of its registered version.

ONNX Runtime resolves a tensor's external-data location against the model's directory, or
against the working directory when the model is given as bytes. These tests build models
whose weights live in another file and check that register, bundle import and predict refuse
every location outside the version (exit 7, naming it), that predict never reads the
caller's working directory, and that a model whose data files are registered with it runs.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import set_external_data  # noqa: E402

from modelreg.registry import Registry, registering  # noqa: E402
from modelreg.signatures.model import parse_signature  # noqa: E402
from modelreg.types import Lineage  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

SECRET = np.arange(1, 5, dtype=np.float32)  # the bytes the attacker wants to read
WEIGHTS = np.full(4, 0.5, dtype=np.float32)


def _weight(location: str, *, length: int = 16) -> Any:
    w = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "W")
    set_external_data(w, location=location, offset=0, length=length)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    return w


def _model(w: Any, *, in_subgraph: bool = False) -> bytes:
    """y = x + W, W external; optionally W is a Constant inside an If branch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    if not in_subgraph:
        graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g", [x], [y],
                                  [w])
    else:
        wv = helper.make_tensor_value_info("W", TensorProto.FLOAT, [4])
        branch = helper.make_graph([helper.make_node("Constant", [], ["W"], value=w)],
                                   "b", [], [wv])
        cond = numpy_helper.from_array(np.array(True), "cond")
        graph = helper.make_graph(
            [helper.make_node("If", ["cond"], ["Wb"], then_branch=branch, else_branch=branch),
             helper.make_node("Add", ["x", "Wb"], ["y"])], "g", [x], [y], [cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _store(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    assert run_cli("init", project).returncode == 0
    return project / ".modelreg"


def _elsewhere(tmp_path: Path) -> Path:
    """A working directory holding the file a hostile model names."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.txt").write_bytes(SECRET.tobytes())
    return cwd


def _payload(tmp_path: Path) -> Path:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"x": [0.0, 0.0, 0.0, 0.0]}))
    return p


@pytest.mark.parametrize("location", ["secret.txt", "../../../../../../../etc/passwd",
                                      "/etc/passwd", "sub/../../secret.txt",
                                      "*/_ORT_MEM_ADDR_/*"])
def test_register_refuses_external_data_outside_the_version(tmp_path: Path,
                                                            location: str) -> None:
    store = _store(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(_model(_weight(location)))
    r = run_cli("register", "m", model, "--no-git", registry=store, cwd=_elsewhere(tmp_path))
    assert r.returncode == 7, r.stderr
    assert repr(location) in r.stderr and "initializer 'W'" in r.stderr
    assert json.loads(run_cli("list", "--json", registry=store).stdout)["models"] == []


def test_register_refuses_external_data_in_a_subgraph(tmp_path: Path) -> None:
    store = _store(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(_model(_weight("secret.txt"), in_subgraph=True))
    r = run_cli("register", "m", model, "--no-git", registry=store, cwd=_elsewhere(tmp_path))
    assert r.returncode == 7, r.stderr
    assert "'secret.txt'" in r.stderr and "subgraph" in r.stderr


def test_register_refuses_a_directory_whose_model_reads_beyond_a_data_file(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.onnx").write_bytes(_model(_weight("w.bin", length=16)))
    (d / "w.bin").write_bytes(WEIGHTS[:2].tobytes())  # 8 bytes, 16 wanted
    r = run_cli("register", "m", d, "--no-git", registry=store)
    assert r.returncode == 7 and "'w.bin'" in r.stderr and "beyond the end" in r.stderr


def test_a_model_registered_with_its_data_files_runs_from_any_directory(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    d = tmp_path / "m"
    (d / "data").mkdir(parents=True)
    (d / "model.onnx").write_bytes(_model(_weight("data/w.bin")))
    (d / "data" / "w.bin").write_bytes(WEIGHTS.tobytes())
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps({"inputs": {"tensors": [{"name": "x", "dtype": "float32",
                                                       "shape": [4]}]},
                               "outputs": {"tensors": [{"name": "y", "dtype": "float32",
                                                        "shape": [4]}]}}))
    r = run_cli("register", "m", d, "--no-git", "--signature", sig, registry=store)
    assert r.returncode == 0, r.stderr
    r = run_cli("predict", "m@1", _payload(tmp_path), "--json", registry=store,
                cwd=_elsewhere(tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"]["y"] == [0.5] * 4


def _plant(store: Path, tmp_path: Path, location: str) -> None:
    """Register a hostile model below the api's checks, as a damaged store could hold."""
    model = tmp_path / "planted.onnx"
    model.write_bytes(_model(_weight(location)))
    sig = {"inputs": {"tensors": [{"name": "x", "dtype": "float32", "shape": [4]}]},
           "outputs": {"tensors": [{"name": "y", "dtype": "float32", "shape": [4]}]}}
    registering.register(Registry.open(store), "m", [model], actor="eve", lineage=Lineage(),
                         signature=parse_signature(sig).to_dict())


@pytest.mark.parametrize("location", ["secret.txt", "../../../../../../../etc/passwd"])
def test_predict_and_bench_never_read_the_working_directory(tmp_path: Path,
                                                            location: str) -> None:
    store = _store(tmp_path)
    _plant(store, tmp_path, location)
    cwd = _elsewhere(tmp_path)
    r = run_cli("predict", "m@1", _payload(tmp_path), "--json", registry=store, cwd=cwd)
    assert r.returncode == 7, (r.stdout, r.stderr)
    assert repr(location) in r.stderr and r.stdout == ""
    r = run_cli("bench", "m@1", "--duration", "0.01", registry=store, cwd=cwd)
    assert r.returncode == 7 and repr(location) in r.stderr


def test_bundle_export_and_import_refuse_a_model_reading_outside_the_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _store(tmp_path)
    _plant(source, tmp_path, "secret.txt")
    bundle = tmp_path / "m.zip"
    r = run_cli("export", "m@1", "--to", "bundle", "-o", bundle, registry=source)
    assert r.returncode == 7 and "'secret.txt'" in r.stderr and not bundle.exists()
    # A hostile bundle made elsewhere: written here with export's own check switched off.
    from modelreg.packaging import bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_check_version_data", lambda reg, info: None)
    bundle_module.export_bundle(Registry.open(source), "m@1", bundle)
    with zipfile.ZipFile(bundle) as zf:
        assert "model/planted.onnx" in zf.namelist()
    other = tmp_path / "other"
    other.mkdir()
    assert run_cli("init", other).returncode == 0
    r = run_cli("import", bundle, registry=other / ".modelreg", cwd=_elsewhere(tmp_path))
    assert r.returncode == 7, r.stderr
    assert "'secret.txt'" in r.stderr
    listed = run_cli("list", "--json", registry=other / ".modelreg").stdout
    assert json.loads(listed)["models"] == []
