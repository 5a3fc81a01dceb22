"""ONNX model files: load, check and run them, infer their signature, check a declared one.

This is the only module in modelreg that imports ``onnx`` and ``onnxruntime``, and it does
so inside functions, so importing it costs nothing until an ONNX file is actually read.
:func:`check_and_infer` is the gate every converted graph passes (full checker, then strict
shape inference); :class:`InferenceRunner` holds one ONNX Runtime session per model.

How a graph becomes a :class:`~modelreg.signatures.model.Signature`:

* Inputs are the graph's inputs minus its initializers (old exporters list weights as
  inputs); outputs are the graph's outputs. Both become ``tensors`` schemas, in graph order.
* Element types are named by ``onnx.helper.tensor_dtype_to_np_dtype`` when the numpy name is
  one of ``TENSOR_DTYPES``, else by the lower-cased ``TensorProto.DataType`` name
  (``string``, ``float8e4m3fn``). A type modelreg cannot name raises :class:`ModelError`.
* A dimension with ``dim_value`` is that int; one with a ``dim_param`` is its name when the
  name is a valid symbol, else -1 (expressions such as ``s0 + 1``); one with neither is -1.
  A tensor with no shape at all has ``shape=None`` (unknown rank).
* Non-tensor values become ``kind="sequence"`` or ``kind="map"`` specs with ``dtype=""``.
  For a sequence ``elem`` is the element's description; for a map it is
  ``{"key": <dtype>, "value": <description>}``. A description is a dict:
  ``{"kind": "tensor", "dtype": ..., "shape": [...]}`` (shape only when known),
  ``{"kind": "sequence", "elem": ...}``, ``{"kind": "map", "key": ..., "value": ...}`` or
  ``{"kind": "optional", "elem": ...}``. A top-level ``optional`` input or output is
  described by its inner type and its name is listed in ``extra["onnx"]["optional"]``.
* ``Signature.extra["onnx"]`` records producer facts: ``ir_version``, ``opset`` (the default
  domain's), ``opsets`` (every domain; the default one as ``ai.onnx``), ``producer`` and
  ``producer_version``, plus ``optional`` when any top-level value is optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelError
from modelreg.signatures.model import TENSOR_DTYPES, Schema, Signature, TensorSpec

if TYPE_CHECKING:
    import onnx

__all__ = ["GraphSummary", "InferenceRunner", "check_and_infer", "infer_signature",
           "is_onnx_file", "load_model", "load_session", "signature_contradictions",
           "summarize"]

# The same rule signatures.model applies to symbolic dimensions, so inferred shapes re-parse.
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# is_onnx_file parses files without an .onnx suffix only up to this size.
_SNIFF_PARSE_LIMIT = 64 * 1024 * 1024


def load_model(path: Path) -> onnx.ModelProto:
    """Read an ONNX model's graph (weights kept as external data are not loaded).

    Args:
        path: The model file (binary protobuf; ``.onnxtxt``/``.textproto``/``.json`` files
            are read in those formats, as ``onnx.load`` does).

    Returns:
        The parsed model.

    Raises:
        ModelError: The file is missing, unreadable, or not an ONNX model.
    """
    import onnx

    if not path.is_file():
        raise ModelError(f"{path}: no such model file" if not path.exists()
                         else f"{path}: not a file (expected an ONNX model file)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc})") from exc
    except Exception as exc:  # protobuf/json/text parsers raise unrelated exception types
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError(f"{path}: not a readable ONNX model (no IR version or no graph)")
    return model


def _dtype(elem_type: int, where: str) -> str:
    from onnx import TensorProto, helper

    try:
        enum_name = TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        enum_name = f"element type {elem_type}"
    try:
        np_name = helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        np_name = ""
    for name in (np_name, enum_name):
        if name in TENSOR_DTYPES:
            return name
    raise ModelError(f"{where}: ONNX type {enum_name!r} has no modelreg dtype "
                     f"(known: {', '.join(TENSOR_DTYPES)})")


def _shape(tensor_type: onnx.TypeProto.Tensor) -> tuple[int | str, ...] | None:
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for dim in tensor_type.shape.dim:
        which = dim.WhichOneof("value")
        if which == "dim_value" and dim.dim_value >= 0:
            dims.append(int(dim.dim_value))
        elif which == "dim_param" and _SYMBOL.match(dim.dim_param):
            dims.append(str(dim.dim_param))
        else:
            dims.append(-1)
    return tuple(dims)


def _describe(tp: onnx.TypeProto, where: str) -> dict[str, Any]:
    """The recursive description of one ONNX type (see the module docstring)."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        doc: dict[str, Any] = {"kind": "tensor",
                               "dtype": _dtype(tp.tensor_type.elem_type, where)}
        shape = _shape(tp.tensor_type)
        if shape is not None:
            doc["shape"] = list(shape)
        return doc
    if which == "sequence_type":
        return {"kind": "sequence", "elem": _describe(tp.sequence_type.elem_type, where)}
    if which == "map_type":
        return {"kind": "map", "key": _dtype(tp.map_type.key_type, where),
                "value": _describe(tp.map_type.value_type, where)}
    if which == "optional_type":
        return {"kind": "optional", "elem": _describe(tp.optional_type.elem_type, where)}
    raise ModelError(f"{where}: ONNX value type {which or 'undefined'!r} is not supported "
                     "(tensor, sequence, map and optional are)")


def _spec(value: onnx.ValueInfoProto, where: str, optional: list[str]) -> TensorSpec:
    tp = value.type
    if tp.WhichOneof("value") == "optional_type":
        optional.append(value.name)
        tp = tp.optional_type.elem_type
    doc = _describe(tp, f"{where} {value.name!r}")
    if doc["kind"] == "tensor":
        shape = doc.get("shape")
        return TensorSpec(value.name, doc["dtype"], None if shape is None else tuple(shape))
    if doc["kind"] == "sequence":
        return TensorSpec(value.name, "", kind="sequence", elem=doc["elem"])
    if doc["kind"] == "map":
        return TensorSpec(value.name, "", kind="map",
                          elem={"key": doc["key"], "value": doc["value"]})
    raise ModelError(f"{where} {value.name!r}: an optional of an optional is not supported")


def infer_signature(path: Path) -> Signature:
    """Infer a model's signature from its ONNX graph.

    Args:
        path: The ONNX model file.

    Returns:
        A signature with ``tensors`` inputs and outputs and producer facts in
        ``extra["onnx"]``, as the module docstring describes.

    Raises:
        ModelError: The file is not a readable ONNX model, the graph has no inputs or no
            outputs, or it uses a type modelreg signatures cannot describe.
    """
    model = load_model(path)
    graph = model.graph
    weights = {t.name for t in graph.initializer} | {
        s.values.name for s in graph.sparse_initializer}
    optional: list[str] = []
    inputs = tuple(_spec(v, "input", optional) for v in graph.input if v.name not in weights)
    outputs = tuple(_spec(v, "output", optional) for v in graph.output)
    if not inputs or not outputs:
        raise ModelError(f"{path}: the graph has no {'inputs' if not inputs else 'outputs'}; "
                         "there is no signature to infer")
    opsets = dict(sorted((o.domain or "ai.onnx", int(o.version)) for o in model.opset_import))
    facts: dict[str, Any] = {"ir_version": int(model.ir_version), "opsets": opsets,
                             "producer": model.producer_name,
                             "producer_version": model.producer_version}
    if "ai.onnx" in opsets:
        facts["opset"] = opsets["ai.onnx"]
    if optional:
        facts["optional"] = optional
    return Signature(Schema(tensors=inputs), Schema(tensors=outputs), {"onnx": facts})


def _fixed(dim: int | str) -> bool:
    return isinstance(dim, int) and dim >= 0


def _shape_lines(where: str, declared: list[Any] | tuple[Any, ...] | None,
                 graph: list[Any] | tuple[Any, ...] | None, is_input: bool,
                 symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    if declared is None or graph is None:
        return []  # nothing declared, or the graph leaves the rank open
    if len(declared) != len(graph):
        return [f"{where}: declared rank {len(declared)} {list(declared)}, the graph has rank "
                f"{len(graph)} {list(graph)}"]
    lines: list[str] = []
    for i, (d, g) in enumerate(zip(declared, graph, strict=True)):
        if _fixed(g) and _fixed(d) and d != g:
            lines.append(f"{where}: dimension {i} declared {d}, the graph fixes it to {g}")
        elif _fixed(g) and not _fixed(d) and is_input:
            lines.append(f"{where}: dimension {i} declared dynamic ({d}), the graph fixes it "
                         f"to {g}")
        elif isinstance(g, str) and _fixed(d):
            symbols.setdefault(g, []).append((f"{where}[{i}]", int(d)))
    return lines


def _elem_lines(where: str, declared: Any, graph: Any, is_input: bool,
                symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Compare descriptions: every key declared must match the graph's (shapes by rule)."""
    if not isinstance(declared, dict) or not isinstance(graph, dict):
        return [] if declared == graph else [f"{where}: declared {declared!r}, the graph has "
                                             f"{graph!r}"]
    lines: list[str] = []
    for key, value in declared.items():
        if key not in graph:
            lines.append(f"{where}: declares {key!r}, which the graph's type has not")
        elif key == "shape":
            lines += _shape_lines(where, value, graph[key], is_input, symbols)
        else:
            lines += _elem_lines(f"{where}.{key}", value, graph[key], is_input, symbols)
    return lines


def _schema_lines(side: str, declared: Schema | None, graph: Schema | None,
                  symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    if declared is None or graph is None or declared.kind != "tensors":
        return []  # undeclared, or columns: a record payload a server maps onto tensors
    have = {t.name: t for t in graph.tensors}
    want = {t.name: t for t in declared.tensors}
    is_input = side == "input"
    lines = [f"{side} {n!r} is declared but the graph has no such {side} (graph {side}s: "
             f"{', '.join(have)})" for n in want if n not in have]
    lines += [f"graph {side} {n!r} is not declared" for n in have if n not in want]
    for name, g in have.items():
        d = want.get(name)
        if d is None:
            continue
        where = f"{side} {name!r}"
        if d.kind != g.kind:
            lines.append(f"{where}: declared {d.kind}, the graph has a {g.kind}")
            continue
        if d.kind == "tensor" and d.dtype != g.dtype:
            lines.append(f"{where}: declared dtype {d.dtype}, the graph has {g.dtype}")
        lines += _shape_lines(where, d.shape, g.shape, is_input, symbols)
        if d.elem is not None:
            lines += _elem_lines(f"{where} element", d.elem, g.elem, is_input, symbols)
    return lines


def signature_contradictions(declared: Signature, inferred: Signature) -> list[str]:
    """Name every way a declared signature contradicts the one inferred from the graph.

    Only ``tensors`` schemas are compared: a ``columns`` schema describes a record payload
    that a serving layer maps onto the graph's tensors, so it cannot contradict them, and
    undeclared outputs are not compared at all. The rules, per side and name:

    * a declared name the graph lacks, and a graph name not declared, are contradictions;
    * a different kind (tensor, sequence, map) or tensor dtype is a contradiction;
    * a known rank differing from the graph's is a contradiction;
    * a fixed size declared where the graph fixes a different one is a contradiction;
    * the declaration MAY be more specific: a fixed size (or any shape) where the graph
      is dynamic or of unknown rank is fine, unless two sizes fixed for the same symbolic
      graph dimension (``"batch"`` in two inputs) differ;
    * an input declared dynamic where the graph is fixed is a contradiction (callers would
      send sizes the model rejects); for an output it is fine (only less specific);
    * a non-tensor ``elem`` is compared key by key as far as it is declared.

    Args:
        declared: The signature a person declared.
        inferred: The signature :func:`infer_signature` read from the graph.

    Returns:
        One human-readable line per contradiction; empty when there are none.
    """
    symbols: dict[str, list[tuple[str, int]]] = {}
    lines = _schema_lines("input", declared.inputs, inferred.inputs, symbols)
    lines += _schema_lines("output", declared.outputs, inferred.outputs, symbols)
    for symbol, uses in symbols.items():
        if len({size for _, size in uses}) > 1:
            lines.append(f"graph dimension {symbol!r} is one size but is declared as "
                         + ", ".join(f"{size} in {at}" for at, size in uses))
    return lines


def is_onnx_file(path: Path) -> bool:
    """Tell whether a path looks like an ONNX model, without loading large files.

    A regular file named ``*.onnx`` counts whatever its content (:func:`load_model` is the
    authority). Any other file counts when its first bytes are a ModelProto's ``ir_version``
    field and, for files up to 64 MiB, it also parses as a model.

    Args:
        path: The file to look at.

    Returns:
        True when the file looks like an ONNX model.
    """
    if not path.is_file():
        return False
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        size = path.stat().st_size
    except OSError:
        return False
    # Serializers write fields in number order, so a model starts with ir_version (field 1,
    # varint: tag 0x08) holding a small version number.
    if len(head) < 2 or head[0] != 0x08 or not 0 < head[1] < 0x80:
        return False
    if size > _SNIFF_PARSE_LIMIT:
        return True
    import onnx

    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except Exception:  # any parse failure means "not ONNX"
        return False
    return model.ir_version > 0 and model.HasField("graph")


# --- checking and running --------------------------------------------------------------

@dataclass(frozen=True)
class GraphSummary:
    """A graph's default-domain opset and its input (minus weights) and output names."""

    opset: int | None
    inputs: list[str]
    outputs: list[str]


def _parse_bytes(onnx_bytes: bytes) -> onnx.ModelProto:
    import onnx

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"not a readable ONNX model ({exc})") from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError("not a readable ONNX model (no IR version or no graph)")
    return model


def summarize(onnx_bytes: bytes) -> GraphSummary:
    """Summarize a serialized model (raises ModelError when it does not parse)."""
    model = _parse_bytes(onnx_bytes)
    weights = {t.name for t in model.graph.initializer}
    opsets = [int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return GraphSummary(max(opsets, default=None),
                        [v.name for v in model.graph.input if v.name not in weights],
                        [v.name for v in model.graph.output])


def check_and_infer(onnx_bytes: bytes) -> bytes:
    """Run the full ONNX checker, then strict shape inference, on a serialized model.

    Returns:
        The model re-serialized with the inferred shapes recorded in ``value_info``.

    Raises:
        ModelError: The bytes do not parse, the checker rejects the graph, or shape
            inference finds a contradiction; the message quotes what ONNX said.
    """
    import onnx

    model = _parse_bytes(onnx_bytes)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, or a C++ error
        raise ModelError(f"the ONNX checker rejects the graph: {exc}") from exc
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ModelError(f"ONNX shape inference fails on the graph: {exc}") from exc
    return bytes(inferred.SerializeToString())


def load_session(path_or_bytes: Path | str | bytes) -> Any:
    """Build an ``onnxruntime.InferenceSession`` on the CPU provider, logging errors only.

    Raises:
        ModelError: The file is missing, or ONNX Runtime cannot load the model.
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    if isinstance(source, str) and not Path(source).is_file():
        raise ModelError(f"{source}: no such model file")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(source, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's pybind errors (Fail, InvalidGraph, ...)
        raise ModelError(f"ONNX Runtime cannot load the model: {exc}") from exc


# ONNX Runtime's tensor element type names -> numpy dtype names.
_ORT_NUMPY = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool",
              **{t: t for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                "uint64")}}


def _plain(value: Any) -> Any:
    """Turn numpy scalars into Python ones, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if getattr(value, "ndim", None) == 0 else value


class InferenceRunner:
    """One ONNX Runtime session for one model, built once and reused for every run.

    ``run`` converts numeric inputs to the element type the graph declares (float64 data
    feeds a ``tensor(float)`` input), returns tensors as numpy arrays, and returns a
    sequence of maps (a ZipMap output) as a list of plain dicts.

    Attributes:
        session: The ``onnxruntime.InferenceSession``.
        input_names: The graph's inputs, in order; ``input_types`` and ``input_shapes``
            map each to ONNX Runtime's type string and shape (None or a name when dynamic).
        output_names: The graph's outputs, in order.
    """

    def __init__(self, model: Path | str | bytes) -> None:
        self.session = load_session(model)
        self.input_types = {i.name: str(i.type) for i in self.session.get_inputs()}
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}
        self.input_names = list(self.input_types)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, Any],
            outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Run the model once on one value per graph input (arrays or nested lists).

        Args:
            inputs: The values by input name.
            outputs: The outputs to compute; all of them, in graph order, when None.

        Returns:
            The outputs by name.

        Raises:
            ModelError: An input is missing or unknown, or ONNX Runtime fails.
        """
        import numpy as np

        missing = [n for n in self.input_names if n not in inputs]
        unknown = [n for n in inputs if n not in self.input_types]
        if missing or unknown:
            raise ModelError(f"the model's inputs are {', '.join(self.input_names)}; got "
                             + "; ".join([f"no {', '.join(missing)}"] * bool(missing)
                                         + [f"unknown {', '.join(unknown)}"] * bool(unknown)))
        feed: dict[str, Any] = {}
        for name, value in inputs.items():
            array, kind = np.asarray(value), self.input_types[name]
            want = _ORT_NUMPY.get(kind[7:-1]) if kind.startswith("tensor(") else None
            if want is not None and array.dtype.kind in "biuf" and array.dtype.name != want:
                array = array.astype(want)
            feed[name] = array
        names = list(outputs) if outputs is not None else self.output_names
        try:
            results = self.session.run(names, feed)
        except Exception as exc:  # onnxruntime's pybind errors
            raise ModelError(f"ONNX Runtime failed to run the model: {exc}") from exc
        return {name: _plain(value) if isinstance(value, list) else value
                for name, value in zip(names, results, strict=True)}
