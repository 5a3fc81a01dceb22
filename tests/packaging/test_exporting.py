"""Export to ONNX through the registry: parity, derived versions, predict, bench, refusals."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
torch = pytest.importorskip("torch")

from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import modelreg  # noqa: E402
from modelreg.errors import ModelError, PolicyDenied, VerdictNo  # noqa: E402
from modelreg.registry import Registry  # noqa: E402
from tests.helpers import run_cli  # noqa: E402


def register_pickle(reg: Registry, tmp_path: Path, name: str, model, columns: list[str]):
    f = tmp_path / f"{name}.pkl"
    f.write_bytes(pickle.dumps(model))
    sig = {"inputs": {c: "float" for c in columns}}
    return modelreg.register(name, [f], registry=reg, git=False, signature=sig,
                             actor="sci").version


def records(x: np.ndarray, columns: list[str]) -> bytes:
    return json.dumps([dict(zip(columns, map(float, row), strict=True)) for row in x]).encode()


def test_regressor_export_parity_and_predict(registry: Registry, tmp_path: Path) -> None:
    data = load_diabetes()
    cols = list(data.feature_names)
    model = Ridge(alpha=0.3).fit(data.data[:300], data.target[:300])
    src = register_pickle(registry, tmp_path, "diabetes", model, cols)
    with pytest.raises(PolicyDenied, match="arbitrary code"):
        modelreg.export_onnx(src.ref, registry=registry, actor="sci")
    out = modelreg.export_onnx(src.ref, registry=registry, actor="sci", allow_pickle=True)
    v = out.result.version
    assert (v.version, v.lineage.derived_from) == (2, "diabetes@1")
    assert v.lineage.export is not None
    assert v.lineage.export["converter"] == "skl2onnx"
    assert out.parity["ok"] is True and out.parity["samples"] > 0
    assert v.signature is not None and v.signature.extra["binding"]["columns"]
    held_out = data.data[400:420]
    pred = modelreg.predict(v.ref, records(held_out, cols), registry=registry,
                            filename="p.json")
    got = np.asarray(next(iter(pred.outputs.values()))).reshape(-1)
    np.testing.assert_allclose(got, model.predict(held_out), rtol=1e-3, atol=1e-3)


def test_classifier_and_pipeline_export(registry: Registry, tmp_path: Path) -> None:
    data = load_iris()
    cols = [c.replace(" (cm)", "").replace(" ", "_") for c in data.feature_names]
    x, y = data.data, data.target
    for name, model in [("iris", LogisticRegression(max_iter=500).fit(x[::2], y[::2])),
                        ("iris-pipe", make_pipeline(StandardScaler(),
                                                    LogisticRegression(max_iter=500))
                         .fit(x[::2], y[::2]))]:
        src = register_pickle(registry, tmp_path, name, model, cols)
        out = modelreg.export_onnx(src.ref, registry=registry, actor="sci", allow_pickle=True)
        assert out.parity["ok"] is True
        assert out.parity["label_mismatches"] == 0
        pred = modelreg.predict(out.result.version.ref, records(x[1::2], cols),
                                registry=registry, filename="p.json").outputs
        labels = np.asarray(pred["label"]).reshape(-1)
        np.testing.assert_array_equal(labels, model.predict(x[1::2]))
        np.testing.assert_allclose(np.asarray(pred["probabilities"]),
                                   model.predict_proba(x[1::2]), atol=1e-4)


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        return torch.tanh(self.lin(x))


def test_torch_export_and_predict(registry: Registry, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Tiny().eval()
    script = tmp_path / "tiny.pt"
    torch.jit.script(module).save(str(script))
    sig = {"inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}}}
    src = modelreg.register("tiny", [script], registry=registry, git=False, signature=sig,
                            actor="sci").version
    out = modelreg.export_onnx(src.ref, registry=registry, actor="sci")
    assert out.parity["ok"] is True
    x = np.random.default_rng(1).standard_normal((9, 4)).astype("float32")
    buf = io.BytesIO()
    np.save(buf, x)
    pred = modelreg.predict(out.result.version.ref, buf.getvalue(), registry=registry,
                            filename="x.npy").outputs
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(next(iter(pred.values()))), expected, atol=1e-5)


def test_unfaithful_conversion_registers_nothing(registry: Registry, tmp_path: Path) -> None:
    data = load_diabetes()
    cols = list(data.feature_names)
    src = register_pickle(registry, tmp_path, "strict", Ridge().fit(data.data, data.target),
                          cols)
    with pytest.raises(ModelError, match="parity failed") as exc:
        modelreg.export_onnx(src.ref, registry=registry, actor="sci", allow_pickle=True,
                             rtol=0.0, atol=0.0)
    assert exc.value.exit_code == 7
    assert [r.version for r in modelreg.versions("strict", registry=registry)] == [1]
    result = run_cli("export", "strict@1", "--to", "onnx", "--allow-pickle", "--rtol", "0",
                     "--atol", "0", registry=registry.layout.root)
    assert result.returncode == 7
    assert "max abs error" in result.stderr
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle at all")
    modelreg.register("broken", [broken], registry=registry, git=False)
    with pytest.raises(ModelError):
        modelreg.export_onnx("broken", registry=registry, actor="sci", allow_pickle=True)
    assert len(modelreg.versions("broken", registry=registry)) == 1


def test_bad_payload_never_reaches_the_model(registry: Registry, tmp_path: Path,
                                             monkeypatch) -> None:
    data = load_diabetes()
    cols = list(data.feature_names)
    src = register_pickle(registry, tmp_path, "guarded", Ridge().fit(data.data, data.target),
                          cols)
    v = modelreg.export_onnx(src.ref, registry=registry, actor="sci",
                             allow_pickle=True).result.version
    rows = json.loads(records(data.data[:2], cols))
    rows[0]["bmi"] = "0.05"
    from modelreg.packaging import runtime

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(runtime.InferenceRunner, "run", boom)
    with pytest.raises(VerdictNo, match='row 1, column "bmi"'):
        modelreg.predict(v.ref, json.dumps(rows).encode(), registry=registry,
                         filename="p.json")
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps(rows))
    cli = run_cli("predict", v.ref, payload, registry=registry.layout.root)
    assert cli.returncode == 1
    assert cli.stdout == ""
    assert 'column "bmi": expected float, got string "0.05"' in cli.stderr


def test_bench_records_a_latency_check(registry: Registry, tmp_path: Path) -> None:
    data = load_diabetes()
    src = register_pickle(registry, tmp_path, "fast", Ridge().fit(data.data, data.target),
                          list(data.feature_names))
    v = modelreg.export_onnx(src.ref, registry=registry, actor="sci",
                             allow_pickle=True).result.version
    result = run_cli("bench", v.ref, "-b", "1", "-b", "16", "--duration", "0.2",
                     "--record", "latency", "--max-p95-ms", "1000", "--json",
                     registry=registry.layout.root)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert [r["batch_size"] for r in rows] == [1, 16]
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)
    check = modelreg.show(v.ref, registry=registry).checks["latency"]
    assert check.passed is True
    failing = run_cli("bench", v.ref, "--duration", "0.1", "--record", "latency",
                      "--max-p95-ms", "0.000001", registry=registry.layout.root)
    assert failing.returncode == 0
    assert modelreg.show(v.ref, registry=registry).checks["latency"].passed is False


def test_ci_staging_gate_script(registry: Registry, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = load_diabetes()
    cols = list(data.feature_names)
    sample = tmp_path / "sample.json"
    sample.write_bytes(records(data.data[:5], cols))
    f = tmp_path / "m.pkl"
    f.write_bytes(pickle.dumps(Ridge().fit(data.data, data.target)))
    src = modelreg.register("gate", [f], registry=registry, git=False, actor="sci",
                            signature={"inputs": {c: "float" for c in cols}},
                            sample=sample).version
    v = modelreg.export_onnx(src.ref, registry=registry, actor="sci",
                             allow_pickle=True).result.version
    modelreg.promote(v.ref, "staging", registry=registry, actor="sci")
    script = Path(__file__).resolve().parents[2] / "examples" / "ci" / "staging-gate.sh"
    env = {**os.environ, "MODELREG_DIR": str(registry.layout.root),
           "MODELREG_ACTOR": "ci@example.com", "CURSOR_FILE": str(tmp_path / "cursor"),
           "MAX_P95_MS": "1000",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    checks = modelreg.show(v.ref, registry=registry).checks
    assert checks["integration"].passed is True
    assert checks["latency"].passed is True
    assert checks["latency"].actor == "ci@example.com"
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert again.returncode == 0
    assert "entered staging" not in again.stdout

    # A pickle in staging cannot be run or benched: the gate records failed checks for it,
    # goes on with the next version, saves its cursor and exits 1; the next run redoes
    # nothing.
    modelreg.promote(src.ref, "staging", registry=registry, actor="sci")
    w = modelreg.export_onnx(src.ref, registry=registry, actor="sci", as_name="gate2",
                             allow_pickle=True).result.version
    modelreg.promote(w.ref, "staging", registry=registry, actor="sci")
    third = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert third.returncode == 1, third.stdout + third.stderr
    assert f"== {src.ref} entered staging" in third.stdout
    assert f"== {w.ref} entered staging" in third.stdout
    pickled = modelreg.show(src.ref, registry=registry).checks
    assert pickled["integration"].passed is False
    assert pickled["latency"].passed is False
    assert "bench could not run it (exit 7)" in (pickled["latency"].details or "")
    assert modelreg.show(w.ref, registry=registry).checks["latency"].passed is True
    before = [len(modelreg.history(n, registry=registry)[1]) for n in ("gate", "gate2")]
    fourth = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    assert "entered staging" not in fourth.stdout
    after = [len(modelreg.history(n, registry=registry)[1]) for n in ("gate", "gate2")]
    assert after == before


def test_export_messages_name_the_version_and_the_rule(registry: Registry,
                                                      tmp_path: Path) -> None:
    data = load_diabetes()
    src = register_pickle(registry, tmp_path, "eta", Ridge().fit(data.data, data.target),
                          list(data.feature_names))
    v = modelreg.export_onnx(src.ref, registry=registry, actor="sci",
                             allow_pickle=True).result.version
    # An ONNX version has nothing to convert: the message names the version, not the
    # temporary directory its files were pulled into.
    again = run_cli("export", v.ref, registry=registry.layout.root)
    assert again.returncode == 2, again.stderr
    assert f"{v.ref}'s files" in again.stderr and "already holds ONNX" in again.stderr
    assert "tmp" not in again.stderr and str(registry.layout.root) not in again.stderr
    one = run_cli("export", src.ref, "--to", "bundle", "-o", tmp_path / "b.zip",
                  "--allow-pickle", registry=registry.layout.root)
    assert one.returncode == 2
    assert "--allow-pickle applies to --to onnx only" in one.stderr
    # A payload whose kind neither its name nor its bytes tell: say what is accepted.
    blob = tmp_path / "model.joblib"
    blob.write_bytes(bytes(range(256)))
    unknown = run_cli("validate", src.ref, blob, registry=registry.layout.root)
    assert unknown.returncode == 2
    assert "format was not recognised (model.joblib" in unknown.stderr
    assert ".jsonl" in unknown.stderr and "--format" in unknown.stderr
    assert "CSV payload is not UTF-8" not in unknown.stderr


def test_predict_on_a_pickle_says_it_is_not_onnx(registry: Registry, tmp_path: Path) -> None:
    data = load_diabetes()
    src = register_pickle(registry, tmp_path, "raw", Ridge().fit(data.data, data.target),
                          list(data.feature_names))
    with pytest.raises(ModelError, match="is not an ONNX model"):
        modelreg.predict(src.ref, records(data.data[:1], list(data.feature_names)),
                         registry=registry, filename="p.json")
    missing = run_cli("export", src.ref, "--allow-pickle", "--sample", tmp_path / "nope.csv",
                      registry=registry.layout.root)
    assert missing.returncode == 3
    mixed = run_cli("export", src.ref, "--to", "bundle", "-o", tmp_path / "b.zip", "--opset",
                    "17", registry=registry.layout.root)
    assert mixed.returncode == 2
