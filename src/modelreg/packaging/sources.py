"""The source model: a model in its training framework, loaded from a version's files.

:func:`load_source` finds the one model file among a version's pulled files and loads it
(scikit-learn from ``.pkl``/``.pickle``/``.joblib``, torch from ``.pt``/``.pth``/``.pt2``);
:func:`input_names` and :func:`order_inputs` tell what it takes, :func:`run_torch` runs a
torch model, and :func:`require` imports an optional framework or names the modelreg extra
that installs it. scikit-learn, joblib, torch and numpy are imported inside functions.

* torch models load from ``.pt``/``.pth`` (TorchScript, else a whole module saved with
  ``torch.save``) or ``.pt2`` (``torch.export``).
* Every file format that unpickles (pickle, joblib, ``torch.load(weights_only=False)`` and
  ``torch.export.load``, which unpickles weights) loads only with ``allow_pickle``.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelError, PolicyDenied, UsageError
from modelreg.signatures.model import TensorSpec

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SourceModel", "input_names", "load_source", "order_inputs", "recorded_inputs",
           "require", "run_torch"]

_KINDS = {".pkl": ("sklearn", "pickle"), ".pickle": ("sklearn", "pickle"),
          ".joblib": ("sklearn", "joblib"), ".pt": ("torch", "torchscript"),
          ".pth": ("torch", "torchscript"), ".pt2": ("torch", "exported_program")}
_EXTRAS = {"sklearn": "pip install 'modelreg[sklearn]'", "torch": "pip install 'modelreg[torch]'",
           "serve": "pip install 'modelreg[serve]'", "mlflow": "pip install 'modelreg[mlflow]'",
           "ui": "pip install 'modelreg[ui]'"}


def require(module: str, extra: str, why: str) -> Any:
    """Import an optional framework, or say which modelreg extra installs it.

    Args:
        module: The module to import (``torch``, ``skl2onnx``, ...).
        extra: The extra that provides it: ``sklearn``, ``torch`` or ``serve``.
        why: What needs it, for the message ("converting a PyTorch model").

    Returns:
        The module.

    Raises:
        ModelError: It is not installed; the message gives the pip command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"{why} needs {module}, which is not installed: "
                         f"{_EXTRAS[extra]}") from exc


@dataclass(frozen=True)
class SourceModel:
    """A model loaded in its training framework."""

    framework: str
    kind: str
    path: Path
    model: Any
    n_features: int | None


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


def _user_placeholders(source: SourceModel) -> list[Any]:
    users = {s.arg.name for s in source.model.graph_signature.input_specs
             if s.kind.name == "USER_INPUT"}
    return [n for n in source.model.graph.nodes if n.op == "placeholder" and n.name in users]


def input_names(source: SourceModel) -> list[str]:
    """The source model's input names: ``X`` for scikit-learn, forward's arguments for torch.

    A torch module whose forward takes ``*args`` gets ``input_0``, ``input_1``, ... (as many
    as the sample has); the list is then empty.
    """
    if source.framework == "sklearn":
        return ["X"]
    if source.kind == "exported_program":
        return [n.name for n in _user_placeholders(source)]
    if source.kind == "torchscript":
        return [a.name for a in source.model.forward.schema.arguments[1:]
                if not a.has_default_value()]
    params = inspect.signature(source.model.forward).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return []
    return [p.name for p in params if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def order_inputs(source: SourceModel, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Put a sample's arrays in the order the model takes them (torch binds by position).

    Returns:
        The same arrays, in :func:`input_names` order when the names match, else as given.
    """
    names = input_names(source)
    return {n: sample[n] for n in names} if set(names) == set(sample) else dict(sample)


def recorded_inputs(source: SourceModel) -> list[TensorSpec]:
    """The input specs an exported program recorded at export (torch.export keeps shapes).

    Raises:
        UsageError: An input has no recorded shape (the message asks for ``--sample``).
        ModelError: torch is not installed.
    """
    torch = require("torch", "torch", "reading an exported program")
    specs = []
    for node in _user_placeholders(source):
        val = node.meta.get("val")
        if val is None:
            raise UsageError(f"input {node.name!r} has no recorded shape; pass --sample FILE")
        dims = tuple(d if isinstance(d, int) else -1 for d in val.shape)
        dtype = str(torch.empty(0, dtype=val.dtype).numpy().dtype)
        specs.append(TensorSpec(node.name, dtype, dims))
    return specs


def _flatten(value: Any) -> list[tuple[str | None, Any]]:
    """A forward's result as (name, tensor) pairs: a tensor, a tuple/list, or a dict."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, tuple | list):
        return [(None, v) for v in value]
    return [(None, value)]


def run_torch(source: SourceModel,
              sample: dict[str, np.ndarray]) -> list[tuple[str | None, np.ndarray]]:
    """Run a torch source model (no grad) on the sample, inputs in :func:`order_inputs` order.

    Returns:
        The flattened outputs as (name, array) pairs; names come from a returned dict.

    Raises:
        ModelError: torch is missing, forward fails, or it returns something other than
            tensors (a tensor, a tuple/list or a dict of them).
    """
    torch = require("torch", "torch", "running a PyTorch model")
    import numpy as np

    args = [torch.from_numpy(np.ascontiguousarray(v))
            for v in order_inputs(source, sample).values()]
    module = source.model.module() if source.kind == "exported_program" else source.model
    try:
        with torch.no_grad():
            pairs = _flatten(module(*args))
    except Exception as exc:  # whatever forward raises
        raise ModelError(f"running {source.path.name} on the sample failed: {exc}") from exc
    if not all(isinstance(v, torch.Tensor) for _, v in pairs):
        raise ModelError(f"{source.path.name}: forward must return tensors (a tensor, a "
                         "tuple/list or a dict of them) to be converted")
    return [(k, v.detach().cpu().numpy()) for k, v in pairs]
