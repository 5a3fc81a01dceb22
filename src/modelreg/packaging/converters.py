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


# scikit-learn estimators whose predict casts X to float32 and compares it with float64
# thresholds chosen between float32 values (tree_.threshold): decision trees and the
# forests and gradient boosting built on them. Histogram gradient boosting is apart: it
# compares X in float64 with float64 thresholds.
_FLOAT32_TREES = ("BaseDecisionTree", "BaseForest", "BaseGradientBoosting")
_HIST_TREES = ("BaseHistGradientBoosting",)
_TREE_OPS = ("TreeEnsembleRegressor", "TreeEnsembleClassifier")


def _is_a(model: Any, bases: tuple[str, ...]) -> bool:
    return any(cls.__name__ in bases for cls in type(model).__mro__)


def _mirror_sklearn(model: Any, trees: list[Any]) -> Any:
    """The model with a float32 cast in front of every tree estimator, for a float64 graph.

    scikit-learn computes in float64 and casts to float32 only where its trees do. A
    graph with a float64 input computes the rest (scalers, linear parts) in float64 too;
    the cast makes skl2onnx convert the tree on float32 values, as scikit-learn compares
    them. Trees met (top level or a pipeline step, at any depth of pipelines) are appended
    to ``trees`` in the order their ONNX nodes will appear.
    """
    from skl2onnx.sklapi import CastTransformer  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

    def cast() -> Any:
        import numpy as np

        return CastTransformer(dtype=np.float32)

    if isinstance(model, Pipeline):
        steps: list[tuple[str, Any]] = []
        for name, step in model.steps:
            if _is_a(step, _FLOAT32_TREES + _HIST_TREES):
                trees.append(step)
                steps.append((f"{name}__float32", cast()))
                steps.append((name, step))
            elif isinstance(step, Pipeline):
                steps.append((name, _mirror_sklearn(step, trees)))
            else:
                steps.append((name, step))
        return Pipeline(steps)
    if _is_a(model, _FLOAT32_TREES + _HIST_TREES):
        trees.append(model)
        return Pipeline([("float32", cast()), ("model", model)])
    return model


def _hist_thresholds(model: Any, node: Any) -> list[float]:
    """The float64 thresholds of a histogram gradient boosting model, in the node's order.

    skl2onnx numbers the trees of iteration ``i`` and class ``k`` as ``i * K + k`` (K trees
    an iteration) and a tree's nodes by their index in the predictor.
    """
    predictors = [p for iteration in model._predictors for p in iteration]
    attrs = {a.name: a for a in node.attribute}
    return [float(predictors[t].nodes[n]["num_threshold"]) if mode == b"BRANCH_LEQ"
            else 0.0 for t, n, mode in zip(attrs["nodes_treeids"].ints,
                                           attrs["nodes_nodeids"].ints,
                                           attrs["nodes_modes"].strings, strict=True)]


def _exact_hist_trees(proto: Any, trees: list[Any]) -> None:
    """Give histogram gradient boosting nodes float64 inputs and thresholds (in place).

    skl2onnx writes every tree with float32 thresholds. scikit-learn's histogram gradient
    boosting compares float64 values with float64 thresholds, which only
    ``ai.onnx.ml`` 3's ``nodes_values_as_tensor`` can hold: the node is fed the float64
    value the cast in front of it received, and its thresholds become the model's own.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    nodes = [n for n in proto.graph.node if n.op_type in _TREE_OPS]
    if len(nodes) != len(trees):
        raise ModelError(f"the converted graph has {len(nodes)} tree ensembles for "
                         f"{len(trees)} tree models")
    producers = {out: n for n in proto.graph.node for out in n.output}
    changed = False
    for node, tree in zip(nodes, trees, strict=True):
        if not _is_a(tree, _HIST_TREES):
            continue
        cast = producers.get(node.input[0])
        if cast is None or cast.op_type != "Cast":
            raise ModelError("the converted graph has no cast in front of a histogram "
                             "gradient boosting model")
        thresholds = _hist_thresholds(tree, node)
        kept = [a for a in node.attribute if a.name != "nodes_values"]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute(
            "nodes_values_as_tensor",
            numpy_helper.from_array(np.asarray(thresholds, dtype=np.float64))))
        node.input[0] = cast.input[0]
        changed = True
    if not changed:
        return
    for opset in proto.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 3)


def _convert_sklearn(source: SourceModel, x: np.ndarray, opset: int | None,
                     dynamic_batch: bool) -> tuple[bytes, str]:
    """Convert with a float64 input, else (a converter without float64 support) float32."""
    skl2onnx = require("skl2onnx", "sklearn", "converting a scikit-learn model")
    import numpy as np
    from skl2onnx.common.data_types import (  # type: ignore[import-untyped]
        DoubleTensorType,
        FloatTensorType,
    )
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    trees: list[Any] = []
    mirrored = _mirror_sklearn(source.model, trees)
    attempts = [(mirrored, np.float64, DoubleTensorType),
                (source.model, np.float32, FloatTensorType)]
    error: Exception | None = None
    for model, dtype, tensor_type in attempts:
        options = {id(model): {"zipmap": False}} if is_classifier(model) else None
        # A type example leaves the batch dimension dynamic (and the opset to skl2onnx).
        kwargs: dict[str, Any] = {"X": x[:1].astype(dtype)} if dynamic_batch else {
            "initial_types": [("X", tensor_type(list(x.shape)))]}
        try:
            proto = skl2onnx.to_onnx(model, target_opset=opset, options=options, **kwargs)
            if dtype is np.float64:
                _exact_hist_trees(proto, trees)
        except Exception as exc:  # converters raise RuntimeError, NotImplementedError, ...
            error = error or exc
            continue
        return proto.SerializeToString(), str(skl2onnx.__version__)
    raise ModelError(f"skl2onnx cannot convert {type(source.model).__name__}: {error}") \
        from error


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
