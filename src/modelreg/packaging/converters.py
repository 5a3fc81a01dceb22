"""Convert a loaded scikit-learn or PyTorch model to ONNX, checked and shape-inferred.

:func:`convert` takes a :class:`~modelreg.packaging.sources.SourceModel` and the sample
inputs (:mod:`modelreg.packaging.samples`; torch traces the model on them) and returns a
:class:`Conversion` whose bytes have passed :func:`modelreg.packaging.onnxfile.check_and_infer`.
Proving the conversion faithful is :mod:`modelreg.packaging.parity`'s job, and
:mod:`modelreg.packaging.exporting` runs the whole chain. skl2onnx, torch and numpy are
imported inside functions (they are optional extras).

* scikit-learn models convert with ``skl2onnx.convert_sklearn`` on one float64 ``X``
  input, with a float32 cast in front of each tree (:func:`_mirror_sklearn`) and
  histogram gradient boosting converted here in float64 (:func:`_convert_hist`), so the
  graph computes as scikit-learn does; a model that cannot go that way converts on a
  float32 ``X``. Classifiers use ``zipmap=False`` so the probabilities are a plain
  ``[N, classes]`` tensor next to the label tensor.
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
from modelreg.packaging.runtime import InferenceRunner
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
# thresholds (tree_.threshold): decision trees and the forests and gradient boosting built
# on them. Histogram gradient boosting compares float64 X with float64 thresholds instead.
_FLOAT32_TREES = ("BaseDecisionTree", "BaseForest", "BaseGradientBoosting")


def _is_a(model: Any, bases: tuple[str, ...]) -> bool:
    return any(cls.__name__ in bases for cls in type(model).__mro__)


def _mirror_sklearn(model: Any) -> Any:
    """The model with a float32 cast in front of every tree, for a graph with a float64 input.

    scikit-learn computes in float64 and casts X to float32 only inside the predict of
    its trees. A graph with a float64 input computes the rest (scalers, linear parts) in
    float64 too; the cast makes skl2onnx convert each tree on float32 values, and skl2onnx
    already rounds a tree's float64 thresholds down to the float32 below, which gives the
    same decision for every float32 value. Trees at the top level or as a pipeline step
    (in pipelines at any depth) are found.
    """
    from skl2onnx.sklapi import CastTransformer  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

    def cast() -> Any:
        import numpy as np

        return CastTransformer(dtype=np.float32)

    if isinstance(model, Pipeline):
        steps: list[tuple[str, Any]] = []
        for name, step in model.steps:
            if _is_a(step, _FLOAT32_TREES):
                steps.append((f"{name}_float32", cast()))
            steps.append((name, _mirror_sklearn(step) if isinstance(step, Pipeline) else step))
        return Pipeline(steps)
    if _is_a(model, _FLOAT32_TREES):
        return Pipeline([("float32", cast()), ("model", model)])
    return model


def _hist_ensemble(model: Any) -> dict[str, Any]:
    """A ``TreeEnsembleRegressor`` (``ai.onnx.ml`` 3) computing the raw scores, in float64.

    One target per tree of an iteration (K: one, or one per class for a multi-class
    classifier); the tree of iteration ``i`` and target ``k`` is tree ``i * K + k``. The
    thresholds, leaf values and baseline are the model's own float64 values
    (``*_as_tensor``), compared with float64 inputs as scikit-learn compares them.
    """
    import numpy as np
    from onnx import numpy_helper

    k_per_iteration = int(model.n_trees_per_iteration_)
    cols: dict[str, list[Any]] = {key: [] for key in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids")}
    values: list[float] = []
    weights: list[float] = []
    for i, iteration in enumerate(model._predictors):
        for k, predictor in enumerate(iteration):
            tree = i * k_per_iteration + k
            for n, node in enumerate(predictor.nodes):
                if not node["is_leaf"] and node["is_categorical"]:
                    raise ModelError("categorical splits of histogram gradient boosting "
                                     "cannot be converted")
                leaf = bool(node["is_leaf"])
                for key, value in (("nodes_treeids", tree), ("nodes_nodeids", n),
                                   ("nodes_featureids", 0 if leaf else node["feature_idx"]),
                                   ("nodes_modes", "LEAF" if leaf else "BRANCH_LEQ"),
                                   ("nodes_truenodeids", 0 if leaf else node["left"]),
                                   ("nodes_falsenodeids", 0 if leaf else node["right"]),
                                   ("nodes_missing_value_tracks_true",
                                    0 if leaf else node["missing_go_to_left"])):
                    cols[key].append(value if key == "nodes_modes" else int(value))
                values.append(0.0 if leaf else float(node["num_threshold"]))
                if leaf:
                    cols["target_treeids"].append(tree)
                    cols["target_nodeids"].append(n)
                    cols["target_ids"].append(k)
                    weights.append(float(node["value"]))

    def tensor(xs: Any) -> Any:
        return numpy_helper.from_array(np.asarray(xs, dtype=np.float64).ravel())

    return {**cols, "n_targets": k_per_iteration, "aggregate_function": "SUM",
            "post_transform": "NONE", "nodes_values_as_tensor": tensor(values),
            "target_weights_as_tensor": tensor(weights),
            "base_values_as_tensor": tensor(model._baseline_prediction)}


def _convert_hist(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter for histogram gradient boosting, in float64 as scikit-learn is.

    The raw scores come from :func:`_hist_ensemble` (ONNX writes them in float32, the
    type its tree operators give); the link (identity, exp, logistic, softmax) and the
    label are computed in float64.
    """
    import numpy as np
    from onnx import TensorProto
    from skl2onnx.common.data_types import guess_proto_type  # type: ignore[import-untyped]
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    model = operator.raw_operator

    def name(seed: str) -> str:
        return str(scope.get_unique_variable_name(seed))

    def node(op: str, inputs: list[str], seed: str, **attrs: Any) -> str:
        out = name(seed)
        container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op), **attrs)
        return out

    x = node("Cast", [operator.inputs[0].full_name], "x64", to=TensorProto.DOUBLE)
    raw = name("raw")
    container.add_node("TreeEnsembleRegressor", [x], [raw], op_domain="ai.onnx.ml",
                       op_version=3, name=scope.get_unique_operator_name("TreeEnsemble"),
                       **_hist_ensemble(model))
    raw = node("Cast", [raw], "raw64", to=TensorProto.DOUBLE)
    link = type(model._loss.link).__name__
    if not is_classifier(model):
        if link not in ("IdentityLink", "LogLink"):
            raise ModelError(f"histogram gradient boosting with the {link} link cannot be "
                             "converted")
        out = node("Exp", [raw], "y") if link == "LogLink" else raw
        container.add_node("Cast", [out], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Cast"),
                           to=guess_proto_type(operator.outputs[0].type))
        return
    if model.n_trees_per_iteration_ == 1:  # binary: the positive class's logit
        positive = node("Sigmoid", [raw], "p1")
        one = name("one")
        container.add_initializer(one, TensorProto.DOUBLE, [], [1.0])
        proba = node("Concat", [node("Sub", [one, positive], "p0"), positive], "p", axis=1)
    else:
        proba = node("Softmax", [raw], "p", axis=1)
    container.add_node("Cast", [proba], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Cast"),
                       to=guess_proto_type(operator.outputs[1].type))
    best = node("ArgMax", [proba], "best", axis=1, keepdims=0)
    classes = name("classes")
    labels = np.asarray(model.classes_)
    if guess_proto_type(operator.outputs[0].type) == TensorProto.STRING:
        container.add_initializer(classes, TensorProto.STRING, [len(labels)],
                                  [str(c).encode() for c in labels])
    else:  # integer labels, and integral float ones, are int64 in skl2onnx's graphs
        container.add_initializer(classes, TensorProto.INT64, [len(labels)],
                                  labels.astype(np.int64).tolist())
    container.add_node("Gather", [classes, best], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Gather"), axis=0)


def _convert_sklearn(source: SourceModel, x: np.ndarray, opset: int | None,
                     dynamic_batch: bool) -> tuple[bytes, str]:
    """Convert with a float64 input, else (no float64 converter, graph or kernel) float32."""
    skl2onnx = require("skl2onnx", "sklearn", "converting a scikit-learn model")
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
    )
    from sklearn.base import is_classifier
    from sklearn.ensemble import (  # type: ignore[import-untyped]
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    custom = {HistGradientBoostingClassifier: _convert_hist,
              HistGradientBoostingRegressor: _convert_hist}
    shape = [None if dynamic_batch else int(x.shape[0]), int(x.shape[1])]
    error: Exception | None = None
    for model, tensor_type in ((_mirror_sklearn(source.model), DoubleTensorType),
                               (source.model, FloatTensorType)):
        options = {id(model): {"zipmap": False}} if is_classifier(model) else None
        try:
            proto = skl2onnx.convert_sklearn(
                model, name=f"ONNX({type(source.model).__name__})",
                initial_types=[("X", tensor_type(shape))], target_opset=opset,
                options=options, custom_conversion_functions=custom)
        except Exception as exc:  # converters raise RuntimeError, NotImplementedError, ...
            error = error or exc
            continue
        for entry in proto.opset_import:  # the opset asked for, as skl2onnx.to_onnx does
            if entry.domain == "" and opset is not None:
                entry.version = opset
        raw = bytes(proto.SerializeToString())
        if tensor_type is DoubleTensorType:
            # Some float64 graphs are invalid (trees inside a VotingRegressor) or have no
            # ONNX Runtime kernel (the SVM operators): those models take the float32 way.
            try:
                InferenceRunner(onnxfile.check_and_infer(raw))
            except ModelError as exc:
                error = error or exc
                continue
        return raw, str(skl2onnx.__version__)
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
