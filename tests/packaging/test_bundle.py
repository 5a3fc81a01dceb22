"""Bundles: export from one registry, import into another, run predict.py in a clean venv.

The clean virtual environment is made once per session with ``python -m venv`` (no system
site-packages) and gets only the bundle's requirements.txt, so predict.py is proven to run
with onnxruntime and numpy alone. Crafted zips prove that unsafe or tampered bundles are
refused before anything is registered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from modelreg.api import fsck, register
from modelreg.errors import (
    EXIT_CONFLICT,
    EXIT_INTEGRITY,
    ConflictError,
    IntegrityError,
    NotFound,
    UnsupportedFormat,
    UsageError,
)
from modelreg.packaging.bundle import (
    BUNDLE_FORMAT,
    SOURCE_TAG,
    BundleResult,
    export_bundle,
    import_bundle,
    predict_script,
)
from modelreg.registry import Registry, pulling, registering
from modelreg.signatures.model import parse_signature
from modelreg.storage.hashing import parse_digest
from modelreg.types import DataRef, GitInfo, Lineage, RunInfo
from tests.helpers import flip_byte, snapshot

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
MODEL_ENTRY = "model/diabetes.onnx"
LINEAGE = Lineage(
    params={"fit_intercept": True, "solver": {"name": "lstsq"}},
    metrics={"r2": 0.52, "rmse": 53.8},
    run=RunInfo(id="run-7", name="nightly"),
    git=GitInfo(commit="0123456789abcdef", branch="main", dirty=False,
                remote="https://example.com/team/models.git"),
    data=[DataRef("data/diabetes.csv", "sha256:" + "ab" * 32, 12345)],
    data_version="2024-06",
    export={"converter": "skl2onnx", "opset": 13, "parity": {"max_abs_error": 0.0}},
)
# As `modelreg export --to onnx` records it: tensors, plus the columns bound to input X.
BINDING_SIGNATURE = parse_signature({
    "inputs": {"tensors": [{"name": "X", "dtype": "float64", "shape": [-1, 10]}]},
    "outputs": {"tensors": [{"name": "variable", "dtype": "float64", "shape": [-1, 1]}]},
    "extra": {"binding": {"input": "X", "dtype": "float64", "columns": [
        {"name": f, "type": "float64", "required": True, "nullable": False} for f in FEATURES]}},
}).to_dict()
# The short form a person may declare: a column signature and the binding by names.
NAMED_BINDING_SIGNATURE = parse_signature({
    "inputs": {"columns": [{"name": f, "type": "float64"} for f in FEATURES]},
    "extra": {"binding": {"input": "X", "columns": FEATURES}},
}).to_dict()


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diabetes() -> tuple[Any, Any]:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_diabetes(return_X_y=True)
    return x, y


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, diabetes: tuple[Any, Any]) -> Path:
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression

    x, y = diabetes
    model = LinearRegression().fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = skl2onnx.to_onnx(model, x[:1])
    path = tmp_path_factory.mktemp("onnx") / "diabetes.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def runtime_outputs(model: Path, rows: Any) -> Any:
    """What onnxruntime gives in this process: the reference for predict.py."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.asarray(rows, dtype=np.float64)})[0]


@pytest.fixture
def source(make_registry: Callable[[], Registry], onnx_model: Path) -> Registry:
    reg = make_registry()
    registering.register(reg, "diabetes", [onnx_model], actor="alice@example.com",
                         lineage=LINEAGE, description="diabetes progression, linear",
                         tags={"team": "risk"}, signature=BINDING_SIGNATURE)
    return reg


@pytest.fixture
def bundle(source: Registry, tmp_path: Path) -> Path:
    return Path(export_bundle(source, "diabetes@1", tmp_path / "diabetes.zip").path)


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only what a bundle's requirements.txt pins.

    Made once per session (tests/conftest.py keeps this module's tests on one xdist worker).
    The venv gets no pip of its own: this interpreter's pip installs into it (``--python``)
    without byte-compiling, a few seconds instead of the half minute that ensurepip and
    compiling every installed module take. A pip older than 22.3 falls back to ensurepip.
    """
    root = tmp_path_factory.mktemp("venv")
    requirements = root / "requirements.txt"
    requirements.write_bytes(_requirements_of_a_bundle(root))
    env = clean_env()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")],
                   check=True, env=env, capture_output=True, timeout=300)
    python = root / "env" / "bin" / "python"
    pip_cmd = [sys.executable, "-m", "pip", "--python", str(python)]
    if subprocess.run([*pip_cmd, "--version"], env=env, capture_output=True,
                      timeout=120).returncode != 0:
        subprocess.run([str(python), "-m", "ensurepip"], check=True, env=env,
                       capture_output=True, timeout=300)
        pip_cmd = [str(python), "-m", "pip"]
    pip = subprocess.run([*pip_cmd, "install", "-q", "--no-compile", "-r", str(requirements)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return python


def _requirements_of_a_bundle(root: Path) -> bytes:
    reg, _ = Registry.init(root / "project")
    (root / "m.bin").write_bytes(b"not a model")
    registering.register(reg, "m", [root / "m.bin"], actor="x@example.com")
    path = Path(export_bundle(reg, "m", root / "m.zip").path)
    with zipfile.ZipFile(path) as zf:
        return zf.read("requirements.txt")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def unpack(bundle: Path, into: Path) -> Path:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(into)
    return into


def predict(python: Path, bundle_dir: Path, payload: Any,
            tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"payload-{hashlib.sha256(repr(payload).encode()).hexdigest()[:8]}.json"
    path.write_text(json.dumps(payload))
    return subprocess.run([str(python), str(bundle_dir / "predict.py"), str(path)],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=120)


def outputs_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"outputs"}
    return dict(doc["outputs"])


# -- round trip ----------------------------------------------------------------------------


def test_bundle_layout(source: Registry, bundle: Path) -> None:
    info = source.show("diabetes@1")
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        index = json.loads(zf.read("modelreg-bundle.json"))
        manifest = zf.read("manifest.toml")
        requirements = zf.read("requirements.txt").decode().splitlines()
        assert info.signature is not None
        assert json.loads(zf.read("signature.json")) == info.signature.to_dict()
        assert zf.read("predict.py").decode() == predict_script()
        assert zf.read(MODEL_ENTRY) == source.objects.get_bytes(
            parse_digest(info.artifact.files[0].digest) or "")
    assert names[0] == "modelreg-bundle.json"
    assert sorted(names) == sorted(["modelreg-bundle.json", "manifest.toml", "signature.json",
                                    "requirements.txt", "predict.py", MODEL_ENTRY])
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == info.manifest == index["manifest"]
    assert manifest == source.manifest_text(source.resolve(info.ref)[2])
    assert index["format"] == BUNDLE_FORMAT
    assert (index["name"], index["version"], index["ref"]) == ("diabetes", 1, "diabetes@1")
    assert index["files"] == [{"path": f.path, "digest": f.digest, "size": f.size}
                              for f in info.artifact.files]
    assert (index["created_by"], index["created_at"]) == (info.created_by, info.created_at)
    assert index["entry_point"] == "predict.py"
    assert index["exported_at"] >= info.created_at
    assert [r for r in requirements if not r.startswith("#")] == [
        f"onnxruntime=={importlib.metadata.version('onnxruntime')}",
        f"numpy=={importlib.metadata.version('numpy')}",
    ]


def test_round_trip_keeps_bytes_lineage_and_signature(
        source: Registry, bundle: Path, make_registry: Callable[[], Registry],
        onnx_model: Path, tmp_path: Path) -> None:
    original = source.show("diabetes@1")
    target = make_registry()
    result = import_bundle(target, bundle, actor="bob@example.com")
    got = result.version
    assert result.created
    assert (got.name, got.version, got.created_by) == ("diabetes", 1, "bob@example.com")
    assert got.artifact == original.artifact
    assert got.signature == original.signature == parse_signature(BINDING_SIGNATURE)
    # The source manifest's digest: "diabetes@1" would name the imported version itself.
    assert got.lineage == replace(LINEAGE, derived_from=original.manifest)
    assert got.description == original.description
    assert got.tags == {"team": "risk", SOURCE_TAG: f"diabetes@1 {original.manifest}"}
    pulling.pull(target, "diabetes@1", tmp_path / "pulled")
    assert (tmp_path / "pulled" / "diabetes.onnx").read_bytes() == onnx_model.read_bytes()
    for reg in (source, target):
        report = fsck(registry=reg)
        assert report.ok and not report.problems and not report.notes, report
    again = import_bundle(target, bundle, actor="bob@example.com")
    assert not again.created and again.version.version == 1
    renamed = import_bundle(target, bundle, name="diabetes-copy", actor="bob@example.com")
    assert (renamed.version.name, renamed.version.artifact) == ("diabetes-copy",
                                                                original.artifact)


def test_directory_artifact_with_example_and_derived_from(
        make_registry: Callable[[], Registry], onnx_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "nested").mkdir(parents=True)
    (model_dir / "diabetes.onnx").write_bytes(onnx_model.read_bytes())
    (model_dir / "nested" / "notes.txt").write_text("preprocessing: none\n")
    example = tmp_path / "example.json"
    example.write_text(json.dumps([{f: 0.01 for f in FEATURES}]))
    source = make_registry()
    registering.register(source, "diab", [model_dir], actor="a@example.com", example=example,
                         lineage=replace(LINEAGE, derived_from="base@3"))
    path = export_bundle(source, "diab", tmp_path / "diab.zip").path
    target = make_registry()
    got = import_bundle(target, Path(path), actor="b@example.com").version
    original = source.show("diab@1")
    assert got.artifact == original.artifact and got.artifact.kind == "directory"
    assert got.example == original.example
    assert got.lineage.derived_from == original.manifest
    assert got.tags["bundle.derived_from"] == "base@3"
    pulling.pull(target, "diab@1", tmp_path / "out")
    assert (tmp_path / "out" / "nested" / "notes.txt").read_text() == "preprocessing: none\n"
    assert fsck(registry=target).ok


def test_derived_from_stays_true_in_the_importing_registry(
        source: Registry, bundle: Path, make_registry: Callable[[], Registry],
        onnx_model: Path) -> None:
    """In a registry that already has diabetes@1, the import is not derived from "diabetes@1"."""
    target = make_registry()
    registering.register(target, "diabetes", [onnx_model], actor="c@example.com",
                         description="another model altogether")
    original = source.show("diabetes@1")
    for name in (None, "diabetes-copy"):
        got = import_bundle(target, bundle, name=name, actor="b@example.com").version
        assert got.lineage.derived_from == original.manifest
        assert got.lineage.derived_from.startswith("sha256:")
        assert "bundle.derived_from" not in got.tags


def test_import_refuses_a_bad_name(bundle: Path, make_registry: Callable[[], Registry]) -> None:
    with pytest.raises(UsageError):
        import_bundle(make_registry(), bundle, name="../x", actor="b@example.com")
    with pytest.raises(NotFound):
        import_bundle(make_registry(), bundle.with_name("absent.zip"), actor="b@example.com")


# -- predict.py in a clean environment -------------------------------------------------------


def test_clean_venv_has_no_modelreg(clean_python: Path) -> None:
    probe = subprocess.run([str(clean_python), "-c", "import onnxruntime, numpy, modelreg"],
                           env=clean_env(), capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0
    assert "No module named 'modelreg'" in probe.stderr


def test_predict_runs_in_a_clean_venv(clean_python: Path, bundle: Path, onnx_model: Path,
                                      diabetes: tuple[Any, Any], tmp_path: Path) -> None:
    rows = diabetes[0][:25]
    want = runtime_outputs(onnx_model, rows)
    here = unpack(bundle, tmp_path / "bundle")
    # Tensors by input name.
    got = outputs_of(predict(clean_python, here, {"X": rows.tolist()}, tmp_path))
    np.testing.assert_allclose(np.asarray(got["variable"]), want, rtol=1e-9, atol=1e-9)
    # Records with their keys in another order: bound by the signature's binding.
    records = [dict(reversed(list(zip(FEATURES, r, strict=True)))) for r in rows.tolist()]
    got = outputs_of(predict(clean_python, here, records, tmp_path))
    np.testing.assert_allclose(np.asarray(got["variable"]), want, rtol=1e-9, atol=1e-9)
    # A column table.
    table = {f: rows[:, i].tolist() for i, f in enumerate(FEATURES)}
    got = outputs_of(predict(clean_python, here, table, tmp_path))
    np.testing.assert_allclose(np.asarray(got["variable"]), want, rtol=1e-9, atol=1e-9)
    bad = predict(clean_python, here, [{"age": 1.0}], tmp_path)
    assert bad.returncode != 0 and "lacks column 'sex'" in bad.stderr


def test_predict_binds_columns_named_in_a_declared_signature(
        clean_python: Path, make_registry: Callable[[], Registry], onnx_model: Path,
        diabetes: tuple[Any, Any], tmp_path: Path) -> None:
    reg = make_registry()
    register("declared", [onnx_model], registry=reg, git=False,
             signature=NAMED_BINDING_SIGNATURE)
    assert reg.show("declared").signature == parse_signature(NAMED_BINDING_SIGNATURE)
    here = unpack(Path(export_bundle(reg, "declared", tmp_path / "d.zip").path), tmp_path / "b")
    rows = diabetes[0][25:40]
    records = [dict(sorted(zip(FEATURES, r, strict=True))) for r in rows.tolist()]
    got = outputs_of(predict(clean_python, here, records, tmp_path))
    np.testing.assert_allclose(np.asarray(got["variable"]), runtime_outputs(onnx_model, rows),
                               rtol=1e-9, atol=1e-9)


def test_predict_binds_records_to_a_single_2d_input_without_binding(
        clean_python: Path, make_registry: Callable[[], Registry], onnx_model: Path,
        diabetes: tuple[Any, Any], tmp_path: Path) -> None:
    reg = make_registry()
    register("plain", [onnx_model], registry=reg, git=False)  # signature inferred: tensors
    path = Path(export_bundle(reg, "plain", tmp_path / "plain.zip").path)
    here = unpack(path, tmp_path / "bundle")
    rows = diabetes[0][:10]
    records = [dict(zip(FEATURES, r, strict=True)) for r in rows.tolist()]
    got = outputs_of(predict(clean_python, here, records, tmp_path))
    np.testing.assert_allclose(np.asarray(got["variable"]), runtime_outputs(onnx_model, rows),
                               rtol=1e-9, atol=1e-9)


def test_predict_explains_a_model_that_is_not_onnx(
        clean_python: Path, make_registry: Callable[[], Registry], tmp_path: Path) -> None:
    reg = make_registry()
    (tmp_path / "model.pkl").write_bytes(os.urandom(64))
    registering.register(reg, "pickled", [tmp_path / "model.pkl"], actor="a@example.com")
    result = export_bundle(reg, "pickled", tmp_path / "pickled.zip")
    assert isinstance(result, BundleResult) and not result.runnable
    imported = import_bundle(make_registry(), Path(result.path), actor="b@example.com")
    assert imported.version.artifact == reg.show("pickled").artifact
    ran = predict(clean_python, unpack(Path(result.path), tmp_path / "b"), {"x": [1]}, tmp_path)
    assert ran.returncode != 0
    assert ran.stdout == ""
    assert "model/model.pkl" in ran.stderr and "ONNX" in ran.stderr


# -- export refusals -------------------------------------------------------------------------


def test_existing_dest_is_refused_without_force(source: Registry, bundle: Path) -> None:
    before = bundle.read_bytes()
    with pytest.raises(ConflictError) as exc:
        export_bundle(source, "diabetes", bundle)
    assert exc.value.exit_code == EXIT_CONFLICT and "already exists" in str(exc.value)
    assert bundle.read_bytes() == before
    again = export_bundle(source, "diabetes", bundle, force=True)
    assert again.size == bundle.stat().st_size
    with pytest.raises(ConflictError):
        export_bundle(source, "diabetes", bundle.parent)
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["diabetes.zip"]


def test_corrupt_object_writes_no_bundle(source: Registry, tmp_path: Path) -> None:
    oid = parse_digest(source.show("diabetes").artifact.files[0].digest) or ""
    flip_byte(source.objects.path(oid), 100)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError):
        export_bundle(source, "diabetes", out / "b.zip")
    assert list(out.iterdir()) == []


# -- import refusals -------------------------------------------------------------------------


Entries = list[tuple[zipfile.ZipInfo, bytes]]
Change = Callable[[Entries], None]


def rewrite(src: Path, dest: Path, change: Change) -> Path:
    """Copy a bundle's entries through ``change`` into a new zip."""
    with zipfile.ZipFile(src) as zf:
        entries = [(i, zf.read(i)) for i in zf.infolist()]
    change(entries)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of one case
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
            for info, data in entries:
                fresh = zipfile.ZipInfo(info.filename)
                fresh.external_attr, fresh.compress_type = info.external_attr, info.compress_type
                out.writestr(fresh, data)
    return dest


def add(name: str, data: bytes = b"pwned\n", mode: int = stat.S_IFREG | 0o644) -> Change:
    def change(entries: Entries) -> None:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        entries.append((info, data))
    return change


def edit(name: str, how: Callable[[bytes], bytes]) -> Change:
    def change(entries: Entries) -> None:
        for i, (info, data) in enumerate(entries):
            if info.filename == name:
                entries[i] = (info, how(data))
    return change


def drop(name: str) -> Change:
    def change(entries: Entries) -> None:
        entries[:] = [(i, d) for i, d in entries if i.filename != name]
    return change


def edit_index(how: Callable[[dict[str, Any]], None]) -> Change:
    def change_bytes(data: bytes) -> bytes:
        doc = json.loads(data)
        how(doc)
        return json.dumps(doc).encode()
    return edit("modelreg-bundle.json", change_bytes)


def flip(data: bytes) -> bytes:
    return data[:50] + bytes([data[50] ^ 1]) + data[51:]


UNSAFE = {
    "dotdot": (add("../evil"), "'../evil'"),
    "dotdot-inside": (add("model/../../evil"), "'model/../../evil'"),
    "absolute": (add("/tmp/evil"), "'/tmp/evil'"),
    "drive-letter": (add("C:/evil"), "'C:/evil'"),
    "backslash": (add("model\\..\\..\\evil"), "backslash"),
    "dot": (add("./model/evil"), "'./model/evil'"),
    "symlink": (add("model/evil", b"/etc/passwd", stat.S_IFLNK | 0o777), "symbolic link"),
    "duplicate": (add(MODEL_ENTRY, b"other bytes"), "appears twice"),
}
TAMPERED = {
    "model-file": (edit(MODEL_ENTRY, flip), "does not match its recorded digest"),
    "manifest": (edit("manifest.toml", lambda d: d.replace(b"0.52", b"0.99")),
                 "does not match the manifest digest"),
    "index-file-digest": (edit_index(lambda d: d["files"][0].update(digest="sha256:" + "0" * 64)),
                          "disagree"),
    "index-name": (edit_index(lambda d: d.update(name="other")), "the manifest says"),
    "signature": (edit("signature.json", lambda d: d.replace(b'"age"', b'"AGE"')),
                  "signature.json differs"),
    "unlisted-entry": (add("model/extra.bin"), "'model/extra.bin' is not listed"),
    "unknown-top-level": (add("notes.txt"), "'notes.txt' is not listed"),
    "missing-model": (drop(MODEL_ENTRY), f"'{MODEL_ENTRY}' listed in"),
    "missing-index": (drop("modelreg-bundle.json"), "no modelreg-bundle.json"),
    "bomb": (edit(MODEL_ENTRY, lambda d: bytes(8 << 20)), "zip bomb"),
    "longer-than-recorded": (edit(MODEL_ENTRY, lambda d: d + bytes(1000)), "larger than"),
    "bad-index": (edit("modelreg-bundle.json", lambda d: b"[1, 2]"), "not a bundle index"),
    "deep-index": (edit("modelreg-bundle.json", lambda d: b"[" * 100_000 + b"]" * 100_000),
                   "nests too deeply"),
    # The index's values, checked as `register` checks them from a user.
    "tag-key-dotdot": (edit_index(lambda d: d["tags"].update({"../x": "1"})), "'../x'"),
    "tag-key-space": (edit_index(lambda d: d["tags"].update({"a b": "1"})), "bad tag key"),
    "tag-value-type": (edit_index(lambda d: d["tags"].update(team=3)), "wrong type"),
    "name": (edit_index(lambda d: d.update(name="../x")), "bad model name"),
    "version": (edit_index(lambda d: d.update(version=0)), "not a version number"),
    "description-surrogate": (edit_index(lambda d: d.update(description="a\udcffb")),
                              "not valid UTF-8"),
    "file-backslash": (edit_index(lambda d: d["files"][0].update(path="a\\b.onnx")),
                       "backslash"),
}


def _assert_refused(target: Registry, crafted: Path, words: str,
                    error: type[Exception] = IntegrityError) -> None:
    store = target.layout.root
    before = snapshot(store)
    with pytest.raises(error) as exc:
        import_bundle(target, crafted, actor="mallory@example.com")
    assert getattr(exc.value, "exit_code", None) == EXIT_INTEGRITY
    assert words in str(exc.value)
    assert snapshot(store) == before
    assert target.list_models() == []
    assert not target.layout.tmp.is_dir() or list(target.layout.tmp.iterdir()) == []


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_entries_are_refused_before_extraction(
        case: str, bundle: Path, make_registry: Callable[[], Registry], tmp_path: Path) -> None:
    change, words = UNSAFE[case]
    crafted = rewrite(bundle, tmp_path / "evil.zip", change)
    _assert_refused(make_registry(), crafted, words)
    assert not [p for p in tmp_path.parent.rglob("evil") if p.is_file()]
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_bundles_are_refused(
        case: str, bundle: Path, make_registry: Callable[[], Registry], tmp_path: Path) -> None:
    change, words = TAMPERED[case]
    crafted = rewrite(bundle, tmp_path / "tampered.zip", change)
    _assert_refused(make_registry(), crafted, words)


def test_a_lying_central_directory_reads_no_more_than_declared(
        bundle: Path, make_registry: Callable[[], Registry], tmp_path: Path) -> None:
    crafted = tmp_path / "lying.zip"
    data = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as zf:
        true_size = zf.getinfo(MODEL_ENTRY).file_size
    # The central directory comes last: its record for the model precedes the name's last use.
    start = data.rindex(b"PK\x01\x02", 0, data.rindex(MODEL_ENTRY.encode()))
    assert int.from_bytes(data[start + 24:start + 28], "little") == true_size
    data[start + 24:start + 28] = (10).to_bytes(4, "little")  # "10 bytes uncompressed"
    crafted.write_bytes(bytes(data))
    _assert_refused(make_registry(), crafted, "damaged")


def test_newer_format_and_garbage_are_refused(
        bundle: Path, make_registry: Callable[[], Registry], tmp_path: Path) -> None:
    newer = rewrite(bundle, tmp_path / "newer.zip", edit_index(lambda d: d.update(format=2)))
    _assert_refused(make_registry(), newer, "bundle format 2", UnsupportedFormat)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file")
    _assert_refused(make_registry(), garbage, "not a readable zip")
