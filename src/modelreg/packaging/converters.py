"""Convert a loaded scikit-learn or PyTorch model to ONNX, checked and shape-inferred.

:func:`convert` takes a :class:`~modelreg.packaging.sources.SourceModel` and the sample
inputs (:mod:`modelreg.packaging.samples`; torch traces the model on them) and returns a
:class:`Conversion` whose bytes have passed :func:`modelreg.packaging.onnxfile.check_and_infer`.
Proving the conversion faithful is :mod:`modelreg.packaging.parity`'s job, and
:mod:`modelreg.packaging.exporting` runs the whole chain. skl2onnx, torch and numpy are
imported inside functions (they are optional extras).

* scikit-learn models convert with ``skl2onnx.to_onnx`` on one float32 ``X`` input;
  classifiers use ``zipmap=False`` so the probabilities are a plain ``[N, classes]`` tensor
  next to the label tensor.
* torch models (TorchScript, whole modules saved with ``torch.save``, exported programs)
  all convert with the TorchScript-based ``torch.onnx.export(dynamo=False)``, which needs
  no onnxscript.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from modelreg.errors import ModelError
from modelreg.packaging import onnxfile
from modelreg.packaging.sources import SourceModel, order_inputs, require, run_torch

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Conversion", "convert"]

_QUIET = (".*legacy TorchScript-based ONNX export", "The feature will be removed",
          r"`torch\.jit\.")


@dataclass(frozen=True)
class Conversion:
    """A converted model: checked, shape-inferred ONNX bytes and how they were made."""

    onnx_bytes: bytes
    converter: str
    converter_version: str
    opset: int
    input_names: list[str]
    output_names: list[str]


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
        sample: Inputs from :func:`~modelreg.packaging.samples.sample_inputs` (torch
            traces the model on them).
        opset: The ONNX opset to target; the converter's default when None.
        dynamic_batch: Make dimension 0 of every input and output symbolic (``batch``);
            otherwise the sample's sizes are fixed in the graph.

    Returns:
        The conversion, its bytes already through :func:`onnxfile.check_and_infer`.

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
    checked = onnxfile.check_and_infer(raw)
    summary = onnxfile.summarize(checked)
    return Conversion(checked, converter, version, summary.opset or 0, summary.inputs,
                      summary.outputs)
