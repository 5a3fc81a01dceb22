"""Convert a scikit-learn or PyTorch model to ONNX and prove the two give the same answers.

The pieces :func:`load_source` -> :func:`sample_inputs` -> :func:`convert` ->
:func:`check_parity` run in that order; this module is their one front door (sample
building lives in :mod:`modelreg.samples`, the comparison in :mod:`modelreg.parity`).
scikit-learn, skl2onnx, torch and numpy are imported inside functions (they are optional
extras); ``onnx`` and ``onnxruntime`` are reached only through :mod:`modelreg.onnxio`.

* scikit-learn models load from ``.pkl``/``.pickle``/``.joblib`` files and convert with
  ``skl2onnx.to_onnx`` on one float32 ``X`` input; classifiers use ``zipmap=False`` so the
  probabilities are a plain ``[N, classes]`` tensor next to the label tensor.
* torch models load from ``.pt``/``.pth`` (TorchScript, else a whole module saved with
  ``torch.save``) or ``.pt2`` (``torch.export``); all convert with the TorchScript-based
  ``torch.onnx.export(dynamo=False)``, which needs no onnxscript.
* Every file format that unpickles (pickle, joblib, ``torch.load(weights_only=False)`` and
  ``torch.export.load``, which unpickles weights) loads only with ``allow_pickle``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelreg import onnxio
from modelreg.errors import ModelError, PolicyDenied, UsageError
from modelreg.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, check_parity, run_torch
from modelreg.samples import column_order, input_names, order_inputs, require, sample_inputs

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "Conversion",
    "ParityReport",
    "SourceModel",
    "check_parity",
    "column_order",
    "convert",
    "export_record",
    "input_names",
    "load_source",
    "sample_inputs",
]

_KINDS = {".pkl": ("sklearn", "pickle"), ".pickle": ("sklearn", "pickle"),
          ".joblib": ("sklearn", "joblib"), ".pt": ("torch", "torchscript"),
          ".pth": ("torch", "torchscript"), ".pt2": ("torch", "exported_program")}
_QUIET = (".*legacy TorchScript-based ONNX export", "The feature will be removed",
          r"`torch\.jit\.")


@dataclass(frozen=True)
class SourceModel:
    """A model loaded in its training framework."""

    framework: str
    kind: str
    path: Path
    model: Any
    n_features: int | None


@dataclass(frozen=True)
class Conversion:
    """A converted model: checked, shape-inferred ONNX bytes and how they were made."""

    onnx_bytes: bytes
    converter: str
    converter_version: str
    opset: int
    input_names: list[str]
    output_names: list[str]


def _refuse_pickle(path: Path, what: str, allow_pickle: bool) -> None:
    if not allow_pickle:
        raise PolicyDenied(
            f"{path.name} is {what}. Loading a pickle runs arbitrary code from the file, so "
            "modelreg loads pickle-based models only when allowed (for models you trust): "
            "pass --allow-pickle, or set allow_pickle = true in config.toml")


def _pick_file(directory: Path) -> Path:
    if directory.is_file():
        return directory
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory")
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    found = [p for p in files if p.suffix.lower() in _KINDS]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"several model files in {directory}: "
                         f"{', '.join(str(p.relative_to(directory)) for p in found)}; "
                         "keep one model file per version")
    shown = ", ".join(str(p.relative_to(directory)) for p in files[:10]) or "none"
    onnx = "; it already holds ONNX" if any(p.suffix.lower() == ".onnx" for p in files) else ""
    raise UsageError(f"no model file in {directory} (looked for {', '.join(_KINDS)}; files: "
                     f"{shown}){onnx}")


def _load_sklearn(path: Path, kind: str, allow_pickle: bool) -> SourceModel:
    _refuse_pickle(path, f"a {kind} file{' (pickle-based)' * (kind == 'joblib')}",
                   allow_pickle)
    require("sklearn", "sklearn", "loading a scikit-learn model")
    joblib = require("joblib", "sklearn", "loading a scikit-learn model")
    try:
        model = joblib.load(path)  # reads plain pickles as well as joblib files
    except ModuleNotFoundError as exc:
        raise ModelError(f"{path.name} needs the module {exc.name!r} to load; install the "
                         "packages the model was trained with") from exc
    except Exception as exc:  # unpickling raises anything
        raise ModelError(f"{path.name}: cannot load the {kind} file ({exc})") from exc
    if not hasattr(model, "fit") or not (hasattr(model, "predict")
                                         or hasattr(model, "transform")):
        raise ModelError(f"{path.name} holds a {type(model).__name__}, not a scikit-learn "
                         "estimator")
    n = getattr(model, "n_features_in_", None)
    return SourceModel("sklearn", kind, path, model, int(n) if n is not None else None)


def _load_torch(path: Path, allow_pickle: bool) -> SourceModel:
    torch = require("torch", "torch", "loading a PyTorch model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if path.suffix.lower() == ".pt2":
            _refuse_pickle(path, "an exported program (torch.export.load unpickles its "
                           "weights)", allow_pickle)
            try:
                return SourceModel("torch", "exported_program", path,
                                   torch.export.load(str(path)), None)
            except Exception as exc:
                raise ModelError(f"{path.name}: not a loadable exported program ({exc})") \
                    from exc
        try:
            module = torch.jit.load(str(path), map_location="cpu")
            return SourceModel("torch", "torchscript", path, module.eval(), None)
        except Exception as exc:  # RuntimeError from the archive reader, mostly
            jit_error = exc  # not a TorchScript archive: maybe a torch.save file
        _refuse_pickle(path, "a torch.save file (pickle-based), not TorchScript", allow_pickle)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelError(f"{path.name} is neither TorchScript ({jit_error}) nor a "
                             f"torch.save file ({exc})") from exc
    if isinstance(obj, dict):
        raise ModelError(f"{path.name} holds a state dict (weights without the code); save "
                         "the whole module (torch.save(model)), TorchScript (torch.jit.save) "
                         "or an exported program (torch.export.save)")
    if not isinstance(obj, torch.nn.Module):
        raise ModelError(f"{path.name} holds a {type(obj).__name__}, not a torch.nn.Module")
    return SourceModel("torch", "torch_save", path, obj.eval(), None)


def load_source(directory: Path, *, allow_pickle: bool) -> SourceModel:
    """Load the one model file among a version's pulled files.

    Args:
        directory: The directory holding the files (or the model file itself).
        allow_pickle: Whether formats that unpickle may be loaded.

    Returns:
        The loaded model.

    Raises:
        UsageError: No model file, or several of them.
        PolicyDenied: The file unpickles and ``allow_pickle`` is false.
        ModelError: The framework is not installed (the message names the extra), or the
            file does not hold a usable model.
    """
    path = _pick_file(directory)
    framework, kind = _KINDS.get(path.suffix.lower(), ("", ""))
    if framework == "sklearn":
        return _load_sklearn(path, kind, allow_pickle)
    if framework == "torch":
        return _load_torch(path, allow_pickle)
    raise UsageError(f"{path.name}: not a model file modelreg converts "
                     f"({', '.join(_KINDS)})")


def _torch_module(source: SourceModel) -> Any:
    """Return what torch.onnx.export traces.

    The exporter puts the model in eval mode, which an exported program's module refuses,
    so that module is held by a wrapper whose ``train()`` only sets its own flag.
    """
    if source.kind != "exported_program":
        return source.model
    torch = require("torch", "torch", "converting a PyTorch model")

    class _Unlifted(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

        def train(self, mode: bool = True) -> Any:
            self.training = mode
            return self

    return _Unlifted(source.model.module())


def _convert_sklearn(source: SourceModel, x: np.ndarray, opset: int | None,
                     dynamic_batch: bool) -> tuple[bytes, str]:
    skl2onnx = require("skl2onnx", "sklearn", "converting a scikit-learn model")
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    options = {id(source.model): {"zipmap": False}} if is_classifier(source.model) else None
    kwargs: dict[str, Any] = {"X": x[:1]}
    if not dynamic_batch:
        from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]
        kwargs = {"initial_types": [("X", FloatTensorType(list(x.shape)))]}
    try:
        proto = skl2onnx.to_onnx(source.model, target_opset=opset, options=options, **kwargs)
    except Exception as exc:  # converters raise RuntimeError, NotImplementedError, ...
        raise ModelError(f"skl2onnx cannot convert {type(source.model).__name__}: {exc}") \
            from exc
    return proto.SerializeToString(), str(skl2onnx.__version__)


def _convert_torch(source: SourceModel, sample: dict[str, np.ndarray], opset: int | None,
                   dynamic_batch: bool) -> tuple[bytes, str]:
    torch = require("torch", "torch", "converting a PyTorch model")
    import numpy as np

    sample = order_inputs(source, sample)
    names = list(sample)
    outs = run_torch(source, sample)
    out_names = [k or (f"output_{i}" if len(outs) > 1 else "output")
                 for i, (k, _) in enumerate(outs)]
    ranks = [v.ndim for v in sample.values()] + [v.ndim for _, v in outs]
    dynamic = {n: {0: "batch"} for n, r in zip(names + out_names, ranks, strict=True) if r}
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in sample.values())
    # The exporter switches its C++ log on (a torch bug) and, on failure, writes the graph
    # to it; the default stream is stdout, which carries modelreg's data. Send it to stderr.
    set_log_stream = getattr(torch._C, "_jit_set_onnx_log_output_stream", None)
    if set_log_stream is not None:
        set_log_stream("stderr")
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            # A ScriptModule has no Python signature to read; harmless, as inputs are named.
            warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
            if source.kind == "exported_program":  # its shape guards trace as constants
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(_torch_module(source), args, cast(Any, buf), dynamo=False,
                              input_names=names, output_names=out_names,
                              dynamic_axes=dynamic if dynamic_batch else None,
                              opset_version=opset)
    except Exception as exc:  # the exporter raises many types
        raise ModelError(f"torch.onnx cannot export {source.path.name}: {exc}") from exc
    return buf.getvalue(), str(torch.__version__)


def convert(source: SourceModel, sample: dict[str, np.ndarray], *, opset: int | None = None,
            dynamic_batch: bool = True) -> Conversion:
    """Convert a source model to ONNX, then check it and infer its shapes.

    Args:
        source: The loaded model.
        sample: Inputs from :func:`sample_inputs` (torch traces the model on them).
        opset: The ONNX opset to target; the converter's default when None.
        dynamic_batch: Make dimension 0 of every input and output symbolic (``batch``);
            otherwise the sample's sizes are fixed in the graph.

    Returns:
        The conversion, its bytes already through :func:`onnxio.check_and_infer`.

    Raises:
        ModelError: The converter is missing (the message names the extra), the
            converter fails (its message is quoted), or the graph fails the checker.
    """
    if source.framework == "sklearn":
        raw, version = _convert_sklearn(source, sample["X"], opset, dynamic_batch)
        converter = "skl2onnx"
    else:
        raw, version = _convert_torch(source, sample, opset, dynamic_batch)
        converter = "torch.onnx"
    checked = onnxio.check_and_infer(raw)
    summary = onnxio.summarize(checked)
    return Conversion(checked, converter, version, summary.opset or 0, summary.inputs,
                      summary.outputs)


def export_record(source: SourceModel, conversion: Conversion, report: ParityReport, *,
                  columns: list[str] | None = None) -> dict[str, Any]:
    """The ``Lineage.export`` table for a converted version.

    Args:
        source: The source model.
        conversion: The conversion.
        report: Its (passing) parity report.
        columns: The column order bound to the single input, if any (see
            :func:`column_order`).

    Returns:
        ``converter``, ``converter_version``, ``opset``, ``source_framework``,
        ``source_kind``, ``inputs``, ``outputs``, ``parity`` (the report's figures without
        ``details``) and, when given, ``columns``.
    """
    parity = {k: v for k, v in report.to_dict().items() if k != "details" and v is not None}
    record: dict[str, Any] = {
        "converter": conversion.converter, "converter_version": conversion.converter_version,
        "opset": conversion.opset, "source_framework": source.framework,
        "source_kind": source.kind, "inputs": list(conversion.input_names),
        "outputs": list(conversion.output_names), "parity": parity}
    if columns is not None:
        record["columns"] = list(columns)
    return record
