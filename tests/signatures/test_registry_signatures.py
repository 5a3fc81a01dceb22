"""Signatures stored with versions, and breaking changes blocking production."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import PolicyDenied, UsageError
from modelreg.registry import Registry

SEED = {"inputs": {"distance": "float", "is_hazardous": "bool"},
        "outputs": {"estimated_time_minutes": "float"}}


def reg_version(reg: Registry, tmp_path: Path, i: int, signature, **kw) -> int:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(f"weights {i}".encode())
    return modelreg.register("eta", [f], registry=reg, git=False, actor="sci",
                             signature=signature, params={"i": i}, **kw).version.version


def to_production(reg: Registry, v: int, **kw) -> modelreg.types.ChangeResult:
    modelreg.promote(f"eta@{v}", "staging", registry=reg, actor="sci")
    return modelreg.promote(f"eta@{v}", "production", registry=reg, actor="sci", **kw)


def test_signature_is_stored_and_shown(registry: Registry, tmp_path: Path) -> None:
    sig_file = tmp_path / "sig.json"
    sig_file.write_text(json.dumps(SEED))
    reg_version(registry, tmp_path, 1, str(sig_file))
    info = modelreg.show("eta@1", registry=registry)
    assert info.signature == modelreg.signature("eta@1", registry=registry)
    assert info.to_dict()["signature"]["inputs"]["columns"][0]["name"] == "distance"
    manifest = registry.manifest_text(registry.resolve(info.ref)[2]).decode()
    assert "[signature" in manifest


def test_breaking_signature_blocks_production(registry: Registry, tmp_path: Path) -> None:
    reg_version(registry, tmp_path, 1, SEED)
    to_production(registry, 1)
    breaking = {"inputs": {"distance": "string", "is_hazardous": "bool"},
                "outputs": {"estimated_time_minutes": "float"}}
    reg_version(registry, tmp_path, 2, breaking)
    with pytest.raises(PolicyDenied, match="breaks the signature of eta@1") as exc:
        to_production(registry, 2)
    assert "--allow-breaking" in exc.value.message
    assert modelreg.show("eta@production", registry=registry).version == 1
    done = modelreg.promote("eta@2", "production", registry=registry, actor="sci",
                            allow_breaking=True, reason="planned migration")
    promote = done.events[-1]
    assert promote.details["allow_breaking"] is True
    assert any("distance" in m for m in promote.details["breaking_changes"])
    assert modelreg.show("eta@production", registry=registry).version == 2


def test_compatible_signature_promotes(registry: Registry, tmp_path: Path) -> None:
    reg_version(registry, tmp_path, 1, SEED)
    to_production(registry, 1)
    wider = {"inputs": {**SEED["inputs"], "weather": {"type": "string", "required": False}},
             "outputs": {**SEED["outputs"], "p90": "float"}}
    reg_version(registry, tmp_path, 2, wider)
    assert to_production(registry, 2).version.stage == "production"


def test_signature_diff_api(registry: Registry, tmp_path: Path) -> None:
    reg_version(registry, tmp_path, 1, SEED)
    reg_version(registry, tmp_path, 2, {"inputs": {"distance": "float"}})
    changes = modelreg.api.signature_diff("eta@1", "eta@2", registry=registry)
    assert [c.breaking for c in changes] == [True, True]


def test_infer_signature_needs_a_source(registry: Registry, tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"x")
    with pytest.raises(UsageError, match="--sample"):
        modelreg.register("eta", [f], registry=registry, git=False, infer_signature=True)


def _onnx_regressor(path: Path) -> Path:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    x, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(x[:100], y[:100])
    path.write_bytes(to_onnx(model, x[:1].astype("float32"), target_opset=17)
                     .SerializeToString())
    return path


def test_registering_onnx_infers_its_signature(registry: Registry, tmp_path: Path) -> None:
    onnx_file = _onnx_regressor(tmp_path / "reg.onnx")
    v = modelreg.register("reg", [onnx_file], registry=registry, git=False).version
    assert v.signature is not None
    (x,) = v.signature.to_dict()["inputs"]["tensors"]
    assert (x["dtype"], x["shape"][1]) == ("float32", 10)
    assert x["shape"][0] in (-1, "N") or isinstance(x["shape"][0], str)


def test_declared_signature_contradicting_onnx_is_refused(registry: Registry,
                                                          tmp_path: Path) -> None:
    onnx_file = _onnx_regressor(tmp_path / "reg.onnx")
    (inp,) = modelreg.infer_signature(onnx_file).inputs.tensors
    wrong = {"inputs": {inp.name: {"dtype": "float32", "shape": [-1, 3]}}}
    before = sorted(p.name for p in registry.layout.model_refs.iterdir())
    with pytest.raises(UsageError, match="contradicts the ONNX graph") as exc:
        modelreg.register("reg", [onnx_file], registry=registry, git=False, signature=wrong)
    assert "3" in exc.value.message
    assert sorted(p.name for p in registry.layout.model_refs.iterdir()) == before


def test_real_inputs_validate_against_an_inferred_onnx_signature(registry: Registry,
                                                                 tmp_path: Path) -> None:
    import io

    import numpy as np
    from sklearn.datasets import load_diabetes

    onnx_file = _onnx_regressor(tmp_path / "reg.onnx")
    modelreg.register("reg", [onnx_file], registry=registry, git=False)
    x = load_diabetes(return_X_y=True)[0][100:140].astype("float32")
    buf = io.BytesIO()
    np.save(buf, x)
    report = modelreg.validate("reg", buf.getvalue(), registry=registry, filename="x.npy")
    assert report.ok, report.problems
    wrong = io.BytesIO()
    np.save(wrong, x[:, :3])
    bad = modelreg.validate("reg", wrong.getvalue(), registry=registry, filename="x.npy")
    assert not bad.ok
    assert "dimension 1 must be 10, got 3" in bad.problems[0].message


def test_register_stage_runs_the_signature_check(registry: Registry, tmp_path: Path) -> None:
    registry.layout.config_file.write_text("[stages.staging]\ncheck_signature = true\n")
    reg = Registry.open(registry.layout.root)
    reg_version(reg, tmp_path, 1, SEED, stage="staging")
    assert reg_version(reg, tmp_path, 2, SEED, stage="staging") == 2
    with pytest.raises(PolicyDenied, match="breaks the signature"):
        reg_version(reg, tmp_path, 3, {"inputs": {"distance": "string"}}, stage="staging")
    assert [r.version for r in modelreg.versions("eta", registry=reg)] == [1, 2]


def test_binding_is_what_callers_see(tmp_path: Path) -> None:
    from modelreg.signatures.compat import diff_signatures
    from modelreg.signatures.model import parse_signature

    def exported(columns: list[str]) -> dict:
        return {"inputs": {"X": {"dtype": "float32", "shape": [-1, len(columns)]}},
                "extra": {"binding": {"input": "X", "dtype": "float32", "columns": [
                    {"name": c, "type": "float64", "required": True, "nullable": False}
                    for c in columns]}}}

    a = parse_signature(exported(["age", "bmi"]))
    b = parse_signature(exported(["age", "body_mass"]))
    assert any(c.breaking for c in diff_signatures(a, b))
    source = parse_signature({"inputs": {"age": "float", "bmi": "float"}})
    assert diff_signatures(source, a) == []
