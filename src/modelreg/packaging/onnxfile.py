"""ONNX model files: load and check them, and infer their signature from the graph.

This module and :mod:`modelreg.packaging.runtime` are the only ones that import ``onnx``
(here) and ``onnxruntime`` (there), and they do so inside functions, so importing them
costs nothing until an ONNX file is actually read. :func:`check_and_infer` is the gate
every converted graph passes (full checker, then strict shape inference). Whether a
declared signature contradicts the inferred one is decided without onnx, by
:func:`modelreg.signatures.contradictions.signature_contradictions`.

How a graph becomes a :class:`~modelreg.signatures.model.Signature`:

* Inputs are the graph's inputs minus its initializers (old exporters list weights as
  inputs); outputs are the graph's outputs. Both become ``tensors`` schemas, in graph order.
* Element types are named by ``onnx.helper.tensor_dtype_to_np_dtype`` when the numpy name is
  one of ``TENSOR_DTYPES``, else by the lower-cased ``TensorProto.DataType`` name
  (``string``, ``float8e4m3fn``). A type modelreg cannot name raises :class:`ModelError`.
* A dimension with ``dim_value`` is that int; one with a ``dim_param`` is its name when the
  name is a valid symbol, else -1 (expressions such as ``s0 + 1``); one with neither is -1,
  and so is one named ``unk__N`` (what shape inference calls a dimension with neither).
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

import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelError
from modelreg.signatures.model import TENSOR_DTYPES, Schema, Signature, TensorSpec

if TYPE_CHECKING:
    import onnx

__all__ = ["ExternalData", "GraphSummary", "check_and_infer", "check_external_files",
           "describe_columns", "external_data", "infer_signature", "is_onnx_file",
           "load_model", "parse_model", "rename_outputs", "resolve_external_data",
           "summarize"]

# The same rule signatures.model applies to symbolic dimensions, so inferred shapes re-parse.
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# The names ONNX shape inference gives dimensions that had neither a size nor a name: they
# mean nothing more than "dynamic", so they read as -1, as before inference.
_INVENTED = re.compile(r"^unk__[0-9]+\Z")
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
        elif (which == "dim_param" and _SYMBOL.match(dim.dim_param)
              and not _INVENTED.match(dim.dim_param)):
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


# --- checking a serialized graph --------------------------------------------------------

@dataclass(frozen=True)
class GraphSummary:
    """A graph's default-domain opset and its input (minus weights) and output names."""

    opset: int | None
    inputs: list[str]
    outputs: list[str]


def parse_model(onnx_bytes: bytes) -> onnx.ModelProto:
    """Parse a serialized model (what :func:`summarize` and the runtime read).

    Raises:
        ModelError: The bytes are not an ONNX model.
    """
    return _parse_bytes(onnx_bytes)


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
    # A converted graph is one file: it has no files beside it to keep weights in.
    resolve_external_data(model, "model.onnx", {}, "the converted graph")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, or a C++ error
        raise ModelError(f"the ONNX checker rejects the graph: {exc}") from exc
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ModelError(f"ONNX shape inference fails on the graph: {exc}") from exc
    return bytes(inferred.SerializeToString())


# --- naming a converted graph's values ---------------------------------------------------

def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    names |= {t.name for t in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    return names | {out for node in graph.node for out in node.output}


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename every use of ``old`` in ``graph`` and its subgraphs (which may capture it)."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                if old not in _value_names(sub):  # not shadowed by the subgraph's own value
                    _rename_uses(sub, old, new)
    for value in [*graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new


def rename_outputs(onnx_bytes: bytes, names: Mapping[str, str]) -> bytes:
    """Give graph outputs new names (every node and subgraph that uses them follows).

    Args:
        onnx_bytes: The serialized model.
        names: New name by current output name.

    Returns:
        The model, re-serialized; run :func:`check_and_infer` on it.

    Raises:
        ModelError: A current name is not a graph output, or a new name is empty or
            already names another value of the graph (the message names it).
    """
    model = _parse_bytes(onnx_bytes)
    graph = model.graph
    outputs = [v.name for v in graph.output]
    taken = _value_names(graph)
    for old, new in names.items():
        if old not in outputs:
            raise ModelError(f"the graph has no output {old!r} (its outputs: "
                             f"{', '.join(outputs)})")
        if old == new:
            continue
        if not new or new in taken:
            raise ModelError(f"cannot name output {old!r} {new!r}: "
                             + ("an empty name" if not new else
                                "the graph already has a value of that name"))
        _rename_uses(graph, old, new)
        taken = (taken - {old}) | {new}
    return bytes(model.SerializeToString())


def describe_columns(onnx_bytes: bytes, input_name: str, columns: list[str]) -> bytes:
    """Record, in the model itself, the columns stacked into a ``[N, F]`` input.

    The input's ``doc_string`` lists them in order, and the model's metadata holds them as
    ``modelreg.columns`` (a JSON object: the input's name and the column names), so
    readers of the ONNX file alone (Netron, other languages) see what each feature is.

    Raises:
        ModelError: The graph has no such input.
    """
    import json

    model = _parse_bytes(onnx_bytes)
    found = [v for v in model.graph.input if v.name == input_name]
    if not found:
        raise ModelError(f"the graph has no input {input_name!r}")
    found[0].doc_string = f"columns, in order: {', '.join(columns)}"
    kept = [p for p in model.metadata_props if p.key != "modelreg.columns"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = "modelreg.columns"
    entry.value = json.dumps({"input": input_name, "columns": columns})
    return bytes(model.SerializeToString())


# --- external data ------------------------------------------------------------------------
#
# A tensor may keep its bytes in another file (``data_location = EXTERNAL`` with
# ``external_data`` entries ``location``, ``offset``, ``length``). ONNX Runtime resolves the
# location against the model's directory, or against the working directory when the model
# is given as bytes, and reads whatever it names. A registered model may only use files of
# its own version: each location must name, relative to the ONNX file, another file stored
# in the same version (no ``..``, no absolute path, no ONNX Runtime in-memory address).

# ONNX Runtime reads this location as "the offset is a memory address in this process".
_ORT_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"


@dataclass(frozen=True)
class ExternalData:
    """One tensor whose bytes live in another file.

    Attributes:
        where: The tensor, for messages (``initializer 'W'``, ``node 'n' attribute 'value'``).
        location: The ``location`` entry as written in the model ("" when missing).
        offset: The ``offset`` entry ("" when missing).
        length: The ``length`` entry ("" when missing).
    """

    where: str
    location: str
    offset: str
    length: str


def _tensor_external(tensor: onnx.TensorProto, where: str) -> Iterator[ExternalData]:
    from onnx import TensorProto

    # ONNX Runtime acts on data_location; an entry list without it is refused too, since
    # another reader could take it for external data.
    if tensor.data_location != TensorProto.EXTERNAL and not tensor.external_data:
        return
    entries = {e.key: e.value for e in tensor.external_data}
    yield ExternalData(f"{where} {tensor.name!r}", entries.get("location", ""),
                       entries.get("offset", ""), entries.get("length", ""))


def _sparse_external(sparse: onnx.SparseTensorProto, where: str) -> Iterator[ExternalData]:
    yield from _tensor_external(sparse.values, f"{where} values")
    yield from _tensor_external(sparse.indices, f"{where} indices")


def _nodes_external(nodes: Iterable[onnx.NodeProto], where: str) -> Iterator[ExternalData]:
    for node in nodes:
        for attr in node.attribute:
            at = f"{where}node {node.name or node.op_type!r} attribute {attr.name!r}"
            if attr.HasField("t"):
                yield from _tensor_external(attr.t, at)
            for t in attr.tensors:
                yield from _tensor_external(t, at)
            if attr.HasField("sparse_tensor"):
                yield from _sparse_external(attr.sparse_tensor, at)
            for st in attr.sparse_tensors:
                yield from _sparse_external(st, at)
            if attr.HasField("g"):
                yield from _graph_external(attr.g, f"{at} subgraph: ")
            for g in attr.graphs:
                yield from _graph_external(g, f"{at} subgraph: ")


def _graph_external(graph: onnx.GraphProto, where: str) -> Iterator[ExternalData]:
    for t in graph.initializer:
        yield from _tensor_external(t, f"{where}initializer")
    for st in graph.sparse_initializer:
        yield from _sparse_external(st, f"{where}sparse initializer")
    yield from _nodes_external(graph.node, where)


def external_data(model: onnx.ModelProto) -> list[ExternalData]:
    """Every tensor of a model that keeps its bytes in another file.

    Looks everywhere a tensor can be: initializers and sparse initializers, tensors held in
    node attributes, subgraphs (``If``/``Loop``/``Scan`` bodies, at any depth), local
    functions and training graphs.

    Args:
        model: The parsed model.

    Returns:
        One record per external tensor, in graph order.
    """
    found = list(_graph_external(model.graph, ""))
    for fn in model.functions:
        found.extend(_nodes_external(fn.node, f"function {fn.name!r} "))
    for i, info in enumerate(model.training_info):
        found.extend(_graph_external(info.initialization, f"training_info[{i}] "))
        found.extend(_graph_external(info.algorithm, f"training_info[{i}] "))
    return found


def _location_problem(location: str) -> str | None:
    if not location:
        return "has no location"
    if location == _ORT_MEMORY_TAG:
        return "points into process memory"
    if "\0" in location or "\\" in location:
        return "is not a plain relative path"
    if location.startswith("/") or re.match(r"^[A-Za-z]:", location):
        return "is an absolute path"
    if ".." in location.split("/"):
        return "climbs out with '..'"
    return None


def _offset(value: str, name: str, where: str) -> int:
    if value == "":
        return 0
    if not value.isdigit():
        raise ModelError(f"{where}: external data {name} {value!r} is not a number")
    return int(value)


def resolve_external_data(model: onnx.ModelProto, onnx_path: str, sizes: Mapping[str, int],
                          what: str) -> dict[str, str]:
    """Check that every external tensor uses a file of the model's own version.

    Args:
        model: The parsed model.
        onnx_path: The model file's path within its version (``model.onnx``, ``sub/m.onnx``).
        sizes: Every file of the version, by its path within the version, with its size.
        what: The model, for messages (``eta@3``, a file path).

    Returns:
        Each location as written in the model, mapped to the version file it names.

    Raises:
        ModelError: A location is missing, absolute, climbs out with ``..``, points into
            process memory, names no file of the version (or the model file itself), or
            its offset and length do not lie within that file. The message names it.
    """
    resolved: dict[str, str] = {}
    base = posixpath.dirname(onnx_path)
    for ref in external_data(model):
        where = f"{what}: {ref.where}"
        problem = _location_problem(ref.location)
        target = posixpath.normpath(posixpath.join(base, ref.location)) if not problem else ""
        if not problem and (target not in sizes or target == onnx_path):
            problem = "is not a file of this version"
        if problem:
            raise ModelError(
                f"{where} keeps its data in external file {ref.location!r}, which {problem}; "
                "an ONNX model may only use data files registered with it (register the "
                "directory that holds the model and its data files)")
        offset = _offset(ref.offset, "offset", where)
        length = _offset(ref.length, "length", where) if ref.length else None
        end = offset + (length or 0)
        if end > sizes[target]:
            raise ModelError(f"{where}: external data {ref.location!r} offset {offset} "
                             f"length {length} lies beyond the end of the file "
                             f"({sizes[target]} bytes)")
        resolved[ref.location] = target
    return resolved


def check_external_files(files: Iterable[tuple[str, Path]], what: str) -> None:
    """Check every ONNX file among a version's files before it is registered.

    Args:
        files: Each file's path within the version and its path on disk.
        what: What is being registered, for messages.

    Raises:
        ModelError: An ONNX file uses external data that is not among ``files`` (see
            :func:`resolve_external_data`), or does not parse.
    """
    listed = list(files)
    onnx_files = [(rel, path) for rel, path in listed if rel.lower().endswith(".onnx")]
    if not onnx_files:
        return
    sizes = {rel: path.stat().st_size for rel, path in listed}
    for rel, path in onnx_files:
        try:
            model = load_model(path)
        except ModelError:
            continue  # not a model: nothing can load data through it (and it cannot run)
        resolve_external_data(model, rel, sizes, f"{what} {rel}")
