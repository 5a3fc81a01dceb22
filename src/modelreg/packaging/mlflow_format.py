"""MLflow's model format: an ONNX version written as one, and model directories read in.

:func:`export_mlflow` writes what ``mlflow.onnx.save_model`` writes — an ``MLmodel`` file
with the ``onnx`` and ``python_function`` flavors, the ONNX file, ``requirements.txt``,
``python_env.yaml``, ``conda.yaml`` and the input example — without importing MLflow, so
``mlflow.pyfunc.load_model(DIR).predict(df)`` runs the very bytes ``modelreg predict`` runs.
The version's signature is translated (columns to ColSpec, tensors to TensorSpec), and its
lineage goes along as the model's ``metadata``. :func:`import_mlflow` registers an MLflow
model directory (any flavor) with its signature, run id, flavors and input example.
docs/packaging.md describes both mappings.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ConflictError, ModelError, UsageError
from modelreg.packaging.runtime import (
    InferenceRunner,
    build_runner,
    numpy_dtype,
    version_signature,
)

if TYPE_CHECKING:
    from modelreg.registry.core import Registry
    from modelreg.results import RegisterResult
    from modelreg.signatures.model import Schema
    from modelreg.types import Lineage, VersionInfo

__all__ = ["MLMODEL", "MlflowExport", "export_mlflow", "import_mlflow", "mlflow_signature",
           "read_mlmodel", "signature_from_mlflow"]

MLMODEL = "MLmodel"
MIN_MLFLOW = "2.9"
"""The oldest MLflow the written files are known to load in (``requirements.txt``)."""

# Our column types as MLflow's ColSpec types.
_COLSPEC = {"boolean": "boolean", "int32": "integer", "int64": "long", "float32": "float",
            "float64": "double", "string": "string", "bytes": "binary",
            "datetime": "datetime"}


@dataclass(frozen=True)
class MlflowExport:
    """What ``export --to mlflow`` wrote."""

    ref: str
    path: str
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the version, where it went, the files written."""
        return {"ref": self.ref, "path": self.path, "files": self.files}


def _columns(schema: Schema) -> list[dict[str, Any]]:
    return [{"type": _COLSPEC[c.type], "name": c.name, "required": c.required}
            for c in schema.columns]


def _tensor_dims(shape: Any) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]


def mlflow_signature(info: VersionInfo, runner: InferenceRunner) -> dict[str, Any]:
    """The version's signature in MLflow's form (inputs and outputs as JSON text).

    Inputs are what callers send: the columns when the signature has them (MLflow stacks a
    DataFrame's values, in the schema's order, into the graph's single input — the same
    binding modelreg records), else the graph's tensors. Outputs are the graph's tensors.
    """
    facing = version_signature(info).facing_inputs()
    if facing.columns:
        inputs = _columns(facing)
    else:
        inputs = [{"type": "tensor", "name": name,
                   "tensor-spec": {"dtype": numpy_dtype(kind) or "object",
                                   "shape": _tensor_dims(runner.input_shapes[name])}}
                  for name, kind in runner.input_types.items()]
    outputs = []
    for out in runner.session.get_outputs():
        kind = str(out.type)
        if not kind.startswith("tensor("):
            raise ModelError(f"{info.ref}: output {out.name!r} is a {kind}, which MLflow's "
                             "ONNX flavor cannot return; export classifiers with plain "
                             "probability tensors")
        outputs.append({"type": "tensor", "name": out.name,
                        "tensor-spec": {"dtype": numpy_dtype(kind) or "object",
                                        "shape": _tensor_dims(out.shape)}})
    return {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs), "params": None}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _requirements() -> list[str]:
    pins = [f"mlflow>={MIN_MLFLOW}"]
    for dist in ("onnx", "onnxruntime", "numpy"):
        found = _version(dist)
        pins.append(f"{dist}=={found}" if found else dist)
    return [*pins, "pandas"]


def _example(reg: Registry, info: VersionInfo) -> dict[str, Any] | None:
    """The version's input example as a DataFrame in split orient (columns only)."""
    if info.example is None:
        return None
    from modelreg.signatures.payload import MISSING, read_columns

    facing = version_signature(info).facing_inputs()
    if not facing.columns:
        return None
    data = reg.objects.get_bytes(info.example.digest.split(":")[1])
    payload = read_columns(data, filename=info.example.path, schema=facing)
    names = [c.name for c in facing.columns]
    rows = [[None if payload.columns[n][i] is MISSING else payload.columns[n][i]
             for n in names] for i in range(payload.n_rows)]
    return {"columns": names, "data": rows}


def _lineage(info: VersionInfo) -> dict[str, Any]:
    doc = info.to_dict()
    keep = ("ref", "name", "version", "manifest", "created_at", "created_by", "description",
            "tags", "lineage", "artifact")
    return {"modelreg": {k: doc[k] for k in keep if doc.get(k) not in (None, {}, [])}}


def export_mlflow(reg: Registry, ref: str, dest: Path, *, force: bool = False) -> MlflowExport:
    """Write version ``ref`` (an ONNX model) as an MLflow model directory, or a zip of one.

    The directory is built beside ``dest`` and renamed into place, so ``dest`` never holds
    half a model; every file is verified against its digest on the way out.

    Args:
        reg: The registry.
        ref: An ONNX version (``modelreg export REF --to onnx`` makes one).
        dest: The directory to create, or a ``.zip`` file.
        force: Replace an existing ``dest``.

    Raises:
        ModelError: The version is not an ONNX model, or has a non-tensor output.
        NotFound: The version has no signature.
        ConflictError: ``dest`` exists and ``force`` is off.
    """
    info = reg.show(ref)
    runner = build_runner(reg, info)  # also refuses a version that is not ONNX
    onnx_files = [f for f in info.artifact.files if f.path.lower().endswith(".onnx")]
    model = onnx_files[0]
    as_zip = dest.suffix.lower() == ".zip"
    if (dest.exists() or dest.is_symlink()) and not force:
        raise ConflictError(f"{dest} already exists; use --force to replace it")
    signature = mlflow_signature(info, runner)
    example = _example(reg, info)
    flavor_data = Path(model.path).name
    mlmodel: dict[str, Any] = {
        "flavors": {
            "onnx": {"code": None, "data": flavor_data, "onnx_session_options": None,
                     "onnx_version": _version("onnx") or "unknown",
                     "providers": ["CPUExecutionProvider"]},
            "python_function": {"data": flavor_data,
                                "env": {"conda": "conda.yaml",
                                        "virtualenv": "python_env.yaml"},
                                "loader_module": "mlflow.onnx",
                                "python_version": platform.python_version()},
        },
        "metadata": _lineage(info),
        "model_size_bytes": sum(f.size for f in info.artifact.files),
        "model_uuid": uuid.uuid4().hex,
        "signature": signature,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    if example is not None:
        mlmodel["saved_input_example_info"] = {
            "artifact_path": "input_example.json", "pandas_orient": "split",
            "serving_input_path": "serving_input_example.json", "type": "dataframe"}
    requirements = _requirements()
    texts = {
        # JSON is YAML (1.2, and what PyYAML's safe_load reads, MLflow's reader): no YAML
        # writer is needed for an export.
        MLMODEL: json.dumps(mlmodel, indent=2) + "\n",
        "requirements.txt": "\n".join(requirements) + "\n",
        "python_env.yaml": (f"python: {platform.python_version()}\nbuild_dependencies:\n"
                            "- pip\n- setuptools\n- wheel\ndependencies:\n"
                            "- -r requirements.txt\n"),
        "conda.yaml": ("channels:\n- conda-forge\ndependencies:\n"
                       f"- python={platform.python_version()}\n- pip\n- pip:\n"
                       + "".join(f"  - {r}\n" for r in requirements) + "name: mlflow-env\n"),
    }
    if example is not None:
        texts["input_example.json"] = json.dumps(example)
        texts["serving_input_example.json"] = json.dumps({"dataframe_split": example},
                                                         indent=2)
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        # The ONNX file at the top (the flavor's data) and any other file of the version
        # (external data) at its own relative path beside it.
        base = Path(model.path).parent
        for f in info.artifact.files:
            rel = Path(flavor_data) if f is model else Path(f.path)
            if f is not model and Path(f.path).is_relative_to(base):
                rel = Path(f.path).relative_to(base)
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as fh:
                reg.objects.copy_to(f.digest.split(":")[1], fh)
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                       if p.is_file())
        if as_zip:
            packed = staging.with_suffix(".zip")
            with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zf:
                for rel_name in files:
                    zf.write(staging / rel_name, rel_name)
            shutil.rmtree(staging)
            staging = packed
        if force and (dest.exists() or dest.is_symlink()):
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        staging.rename(dest)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()
    return MlflowExport(info.ref, str(dest), files)


# --- MLflow model directories in ------------------------------------------------------------

# MLflow's ColSpec types as ours.
_FROM_COLSPEC = {v: k for k, v in _COLSPEC.items()}
_FROM_COLSPEC["float"] = "float32"
_MLFLOW_DTYPES = {"object": "string", "str": "string", "bool": "bool"}


def read_mlmodel(src: Path) -> dict[str, Any]:
    """Read a model directory's ``MLmodel`` file (YAML).

    Raises:
        UsageError: No ``MLmodel`` file, or it is not a YAML mapping with flavors.
    """
    from modelreg.packaging.sources import require

    yaml = require("yaml", "mlflow", "reading an MLflow model")
    path = src / MLMODEL
    if not path.is_file():
        raise UsageError(f"{src} is not an MLflow model directory (it has no {MLMODEL} file)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not readable YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict) or not doc["flavors"]:
        raise UsageError(f"{path}: an MLmodel file names the model's flavors; this one does not")
    return doc


def _spec_list(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw in (None, ""):
        return []
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UsageError(f"{where}: expected a list of column or tensor specs")
    return items


def _schema_from_mlflow(items: list[dict[str, Any]], where: str,
                        default: str) -> dict[str, Any] | None:
    if not items:
        return None
    if all(i.get("type") == "tensor" for i in items):
        tensors = []
        for n, item in enumerate(items):
            spec = item.get("tensor-spec") or {}
            dtype = str(spec.get("dtype", "float32"))
            tensors.append({"name": str(item.get("name") or (default if len(items) == 1
                                                             else f"{default}_{n}")),
                            "dtype": _MLFLOW_DTYPES.get(dtype, dtype),
                            "shape": spec.get("shape")})
        return {"tensors": tensors}
    columns = []
    for n, item in enumerate(items):
        kind = item.get("type")
        if kind not in _FROM_COLSPEC:
            raise UsageError(f"{where}[{n}]: MLflow type {kind!r} has no counterpart here "
                             f"(known: {', '.join(sorted(_FROM_COLSPEC))})")
        columns.append({"name": str(item.get("name") or f"{default}_{n}"),
                        "type": _FROM_COLSPEC[kind], "required": bool(item.get("required", True))})
    return {"columns": columns}


def signature_from_mlflow(doc: dict[str, Any]) -> dict[str, Any] | None:
    """An MLmodel's signature as ours (None when it has none)."""
    sig = doc.get("signature")
    if not isinstance(sig, dict):
        return None
    inputs = _schema_from_mlflow(_spec_list(sig.get("inputs"), "signature.inputs"),
                                 "signature.inputs", "input")
    if inputs is None:
        return None
    outputs = _schema_from_mlflow(_spec_list(sig.get("outputs"), "signature.outputs"),
                                  "signature.outputs", "output")
    return {"inputs": inputs, **({"outputs": outputs} if outputs else {})}


def import_mlflow(reg: Registry, src: Path, *, name: str | None, actor: str,
                  lineage: Lineage | None = None, tags: dict[str, str] | None = None,
                  description: str | None = None) -> RegisterResult:
    """Register an MLflow model directory as the next version of ``name``.

    Every file of the directory becomes the version's artifact; the signature is translated
    (ColSpec to columns, TensorSpec to tensors); the run id goes into the lineage; the
    flavors and MLflow's model id into tags; the input example becomes the version's example.

    Args:
        reg: The registry.
        src: The MLflow model directory (with its ``MLmodel`` file).
        name: The model name (default: the directory's name).
        actor: Who imports.
        lineage: What made it, when known (an MLflow registry's run); the run id of the
            ``MLmodel`` file otherwise.
        tags: More tags (the registry's version tags).
        description: The version's description.

    Raises:
        UsageError: Not an MLflow model directory, or a signature type with no counterpart.
    """
    import tempfile

    from modelreg.registry.registering import register
    from modelreg.types import Lineage, RunInfo

    doc = read_mlmodel(src)
    signature = signature_from_mlflow(doc)
    found = {"mlflow.flavors": ",".join(sorted(doc["flavors"]))}
    pyfunc = doc["flavors"].get("python_function")
    if isinstance(pyfunc, dict) and pyfunc.get("loader_module"):
        found["mlflow.loader_module"] = str(pyfunc["loader_module"])
    for key in ("model_id", "model_uuid", "mlflow_version"):
        if doc.get(key):
            found[f"mlflow.{key}"] = str(doc[key])
    tags = {**found, **(tags or {})}
    run_id = doc.get("run_id")
    if lineage is None:
        lineage = Lineage(run=RunInfo(id=str(run_id) if run_id else None))
    info = doc.get("saved_input_example_info")
    with tempfile.TemporaryDirectory(prefix="modelreg-mlflow-") as tmp:
        example = None
        if isinstance(info, dict) and signature is not None:
            serving = info.get("serving_input_path")
            if isinstance(serving, str) and (src / serving).is_file():
                example = src / serving
            elif (info.get("type") == "dataframe" and info.get("pandas_orient") == "split"
                  and isinstance(info.get("artifact_path"), str)
                  and (src / info["artifact_path"]).is_file()):
                # MLflow keeps the frame alone; the payload reader wants it named.
                split = json.loads((src / info["artifact_path"]).read_text(encoding="utf-8"))
                example = Path(tmp, "input_example.json")
                example.write_text(json.dumps({"dataframe_split": split}), encoding="utf-8")
        return register(reg, name or src.resolve().name, [src], actor=actor, lineage=lineage,
                        tags=tags, signature=signature, example=example,
                        description=description)
