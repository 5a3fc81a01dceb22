"""``modelreg serve``: an inference server that follows a stage or alias without dropping a request.

The server answers two protocols over one served version:

- the Open Inference Protocol (KServe V2, which Triton also speaks): health, server and model
  metadata, model readiness and ``infer``;
- MLflow's scoring protocol, ``POST /invocations`` (``dataframe_split``,
  ``dataframe_records``, ``instances`` or ``inputs`` as JSON, or CSV), so clients written for
  ``mlflow models serve`` need no change.

Every request is checked against the served version's signature before the model runs; a
bad request gets 400 with the same per-field messages as ``modelreg validate``.

A :class:`Follower` thread re-resolves the reference (``NAME@STAGE``, ``NAME@ALIAS``) every
``poll`` seconds. When it names another version, the follower pulls that version's files
(every digest verified), builds its ONNX Runtime session, warms it up with the version's
input example, and only then swaps it in: one assignment of :attr:`Holder.current`. A
request reads that attribute once, at its start, and finishes on the version it read, so
requests in flight are never cut over. A version that fails to load leaves the old one
serving; the failure is logged, counted in ``/metrics`` and shown by the model's ready
endpoint.

starlette, uvicorn and prometheus-client (the ``serve`` extra) are imported only here, and
only by ``modelreg serve``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelreg.errors import ConflictError, ModelError, ModelregError, UsageError, VerdictNo
from modelreg.packaging.runtime import (
    InferenceRunner,
    build_runner,
    jsonable,
    numpy_dtype,
    payload_inputs,
    version_signature,
)
from modelreg.version import __version__

if TYPE_CHECKING:
    from modelreg.registry.core import Registry
    from modelreg.signatures.model import Signature
    from modelreg.types import VersionInfo

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_POLL", "Holder", "Served", "ServeOptions", "build_app",
           "serve"]

log = logging.getLogger("modelreg.serve")

DEFAULT_POLL = 0.5
"""Seconds between two looks at the reference: a move is noticed within a second."""

DEFAULT_MAX_BODY = 16 * 2**20
"""The largest request body accepted (bytes); a larger one gets 413."""

DEFAULT_DRAIN = 30.0
"""Seconds a SIGTERM waits for requests in flight before the server stops anyway."""

LOOPBACK = ("127.0.0.1", "::1", "localhost")

# Open Inference Protocol datatypes for numpy dtype names, and back.
_V2_TYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
             "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32",
             "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64",
             "string": "BYTES", "bytes": "BYTES", "object": "BYTES", "str": "BYTES"}
_COLUMN_V2 = {"boolean": "BOOL", "int32": "INT32", "int64": "INT64", "float32": "FP32",
              "float64": "FP64", "string": "BYTES", "bytes": "BYTES", "datetime": "BYTES"}


@dataclass(frozen=True)
class Served:
    """One loaded version: what it is, its signature, its session and its request plan."""

    info: VersionInfo
    signature: Signature
    runner: InferenceRunner
    plan: Plan

    @property
    def version(self) -> int:
        """The version number."""
        return self.info.version


@dataclass
class Holder:
    """The version being served, swapped in whole; and what the follower last saw."""

    ref: str
    current: Served | None = None
    draining: bool = False
    last_error: str | None = None
    failed_version: int | None = None
    swaps: int = 0


INLINE_BELOW = 0.00025
"""Seconds: a version whose small requests take less runs them on the event loop itself.

A hand-over to a worker thread and back costs about 0.1 ms, as much as such a request; a
longer request is better off in a thread, where its model run (which releases the GIL) can
overlap other requests'."""

SMALL_BODY = 64 * 1024
"""Bytes: only requests this small may run on the event loop."""

_NUMBERS = frozenset({int, float})
_TENSOR_CELLS = {**{t: _NUMBERS for t in ("float16", "float32", "float64")},
                 **{t: frozenset({int}) for t in ("int8", "uint8", "int16", "uint16", "int32",
                                                  "uint32", "int64", "uint64")},
                 "bool": frozenset({bool})}


class Plan:
    """What every request to one version needs, worked out once when the version loads.

    Its readers are the fast paths of a request: each takes only a payload that the
    signature check passes, and builds the very arrays the checked path
    (:func:`run_payload`) builds from it; on anything else a reader answers None, and the
    request takes the checked path, which words each refusal as ``modelreg validate`` does.
    So a good request is parsed once and checked a column or a tensor at a time, with no
    per-cell message machinery.

    A version's columns are read on the fast path when every bound column is a float (the
    cells: JSON numbers, never booleans or null); its tensors when each is a number or
    boolean tensor.
    """

    def __init__(self, signature: Signature) -> None:
        import numpy as np

        from modelreg.signatures.model import family
        from modelreg.signatures.validate import INT_RANGES

        self.seconds: float | None = None
        """How long a small request takes (a moving average): see :meth:`inline`."""
        bound = signature.binding()
        self.tensor: str | None = None
        self.dtype: Any = None
        self.columns: list[str] = []
        if bound is not None and all(family(c.type) == "float" for c in bound[2].columns) \
                and bound[1] in ("float16", "float32", "float64"):
            self.tensor, self.dtype = bound[0], np.dtype(bound[1])
            self.columns = [c.name for c in bound[2].columns]
        self.column_set = frozenset(self.columns)
        self.tensors: dict[str, tuple[Any, frozenset[type], Any, Any]] | None = None
        if bound is None and signature.inputs.tensors and all(
                t.kind == "tensor" and t.dtype in _TENSOR_CELLS for t in signature.inputs.tensors):
            self.tensors = {t.name: (np.dtype(t.dtype), _TENSOR_CELLS[t.dtype],
                                     INT_RANGES.get(t.dtype), t.shape)
                            for t in signature.inputs.tensors}

    def inline(self, size: int) -> bool:
        """Whether a request of ``size`` bytes runs on the event loop rather than a thread."""
        seconds = self.seconds
        return size <= SMALL_BODY and seconds is not None and seconds < INLINE_BELOW

    def took(self, seconds: float) -> None:
        """Count the time a small request took."""
        last = self.seconds
        self.seconds = seconds if last is None else last + (seconds - last) / 8

    def matrix(self, rows: Any, width: int) -> Any:
        """Lists of ``width`` float cells each, as an array of the bound dtype; or None."""
        import numpy as np

        if type(rows) is not list or not rows or not width:
            return None
        for row in rows:
            if type(row) is not list or len(row) != width:
                return None
        if not set(map(type, itertools.chain.from_iterable(rows))) <= _NUMBERS:
            return None
        try:
            return np.asarray(rows, dtype=self.dtype)
        except (OverflowError, ValueError, TypeError):
            return None

    def mlflow_inputs(self, body: bytes, content_type: str) -> dict[str, Any] | None:
        """An ``/invocations`` JSON body of rows as the model's inputs; or None.

        Rows come as dataframe_split, dataframe_records, or instances holding records.
        """
        import numpy as np

        if self.tensor is None or content_type.split(";", 1)[0].strip().lower() not in (
                "application/json", ""):
            return None
        try:
            doc = json.loads(body.decode())
        except (ValueError, RecursionError):
            return None
        if type(doc) is not dict:
            return None
        split = doc.get("dataframe_split")
        if type(split) is dict and doc.keys() <= {"dataframe_split", "params"}:
            columns, rows = split.get("columns"), split.get("data")
            if columns == self.columns:
                matrix = self.matrix(rows, len(columns))
            elif type(columns) is list and len(columns) == len(self.columns) and all(
                    type(c) is str for c in columns) and set(columns) == self.column_set:
                matrix = self.matrix(rows, len(columns))
                if matrix is not None:
                    matrix = np.ascontiguousarray(
                        matrix[:, [columns.index(n) for n in self.columns]])
            else:
                return None
        else:
            records = doc.get("instances" if "instances" in doc else "dataframe_records")
            if type(records) is not list or ("instances" not in doc and not (
                    doc.keys() <= {"dataframe_records", "params"})):
                return None
            names, keys = self.columns, self.column_set
            rows = []
            for record in records:
                if type(record) is not dict or record.keys() != keys:
                    return None
                rows.append([record[n] for n in names])
            matrix = self.matrix(rows, len(names))
        return None if matrix is None else {self.tensor: matrix}

    def v2_inputs(self, request: V2Request) -> dict[str, Any] | None:
        """An infer request's inputs as the model's; or None."""
        import numpy as np

        if request.columns:
            if self.tensor is None or request.values.keys() != self.column_set:
                return None
            columns = [request.values[n] for n in self.columns]
            matrix = self.matrix(columns, len(columns[0]) if columns else 0)
            return None if matrix is None else {self.tensor: np.ascontiguousarray(matrix.T)}
        if self.tensors is None or request.inputs.keys() != self.tensors.keys():
            return None
        arrays = {}
        for name, (flat, shape) in request.inputs.items():
            dtype, cells, limits, want = self.tensors[name]
            if not flat or not shape or not set(map(type, flat)) <= cells or (
                    limits is not None and not limits[0] <= min(flat) <= max(flat) <= limits[1]):
                return None
            if want is not None and (len(want) != len(shape) or any(
                    isinstance(w, int) and w >= 0 and w != g
                    for w, g in zip(want, shape, strict=True))):
                return None
            try:
                arrays[name] = np.asarray(flat, dtype=dtype).reshape(shape)
            except (OverflowError, ValueError, TypeError):
                return None
        return arrays


def load_version(reg: Registry, info: VersionInfo) -> Served:
    """Load and warm up one version (nothing is swapped here).

    Raises:
        ModelError: Not an ONNX model, or it does not load or run on its input example.
        IntegrityError: A file does not match its digest.
        NotFound: It has no signature to check requests against.
    """
    signature = version_signature(info)
    runner = build_runner(reg, info)
    if info.example is not None:
        # The version's own input example goes through the same path a request takes, so
        # the first real request does not pay for ONNX Runtime's first-run set-up.
        data = reg.objects.get_bytes(info.example.digest.split(":")[1])
        try:
            inputs, _ = payload_inputs(signature, data, filename=info.example.path)
        except VerdictNo as exc:
            raise ModelError(f"{info.ref}: its input example does not pass its own "
                             f"signature: {exc}") from exc
        runner.run(inputs)
    return Served(info, signature, runner, Plan(signature))


class Follower(threading.Thread):
    """Re-resolves the reference every ``poll`` seconds and swaps in the version it names.

    It keeps the store it opened from one look to the next (opening a store on S3 builds a
    client and reads two refs: some 15 ms of this process's time, GIL held, on every look);
    a look that fails drops it, and the next one opens the store afresh.
    """

    def __init__(self, open_registry: Callable[[], Registry], holder: Holder, poll: float,
                 on_swap: Callable[[Served, Served | None], None] | None = None,
                 on_failure: Callable[[int, str], None] | None = None) -> None:
        super().__init__(name="modelreg-follower", daemon=True)
        self._open = open_registry
        self.holder = holder
        self.poll = poll
        self.stop = threading.Event()
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._registry: Registry | None = None

    def run(self) -> None:
        """Look, load, swap; until :attr:`stop` is set."""
        while not self.stop.wait(self.poll):
            try:
                self.step()
            except Exception:  # the follower must outlive any one bad look
                self._registry = None
                log.exception("following %s failed; still serving the loaded version",
                              self.holder.ref)

    def step(self) -> None:
        """One look at the reference; load and swap in what it names if that changed."""
        holder = self.holder
        try:
            reg = self._registry = self._registry or self._open()
            info = reg.show(holder.ref)
        except ModelregError as exc:
            # The stage is empty now, or the store cannot be read: keep serving what we have.
            self._registry = None
            if holder.last_error != str(exc):
                log.warning("%s: %s; still serving the loaded version", holder.ref, exc)
            holder.last_error = str(exc)
            return
        current = holder.current
        if current is not None and current.info.manifest == info.manifest:
            # Back to (or still at) the served version: what went wrong before is over.
            holder.failed_version = None
            holder.last_error = None
            return
        if holder.failed_version == info.version:
            return  # already failed to load; a new move will try again
        try:
            served = load_version(reg, info)
        except ModelregError as exc:
            holder.failed_version = info.version
            holder.last_error = f"{info.ref} failed to load: {exc}"
            log.error("%s; still serving %s", holder.last_error,
                      current.info.ref if current else "nothing")
            if self._on_failure is not None:
                self._on_failure(info.version, str(exc))
            return
        holder.current = served  # the swap: one assignment; requests read it once
        holder.swaps += 1
        holder.failed_version = None
        holder.last_error = None
        log.info("now serving %s (was %s)", info.ref, current.info.ref if current else "none")
        if self._on_swap is not None:
            self._on_swap(served, current)


# --- request handling, independent of the web framework -----------------------------------


class BadRequest(Exception):
    """A request the server refuses: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _v2_type(dtype: str) -> str:
    return _V2_TYPES.get(dtype, "BYTES")


def model_metadata(served: Served) -> dict[str, Any]:
    """The V2 model metadata: the inputs callers send and the outputs they get."""
    sig = served.signature
    facing = sig.facing_inputs()
    inputs: list[dict[str, Any]]
    if facing.columns:
        inputs = [{"name": c.name, "datatype": _COLUMN_V2.get(c.type, "BYTES"), "shape": [-1]}
                  for c in facing.columns]
    else:
        inputs = [{"name": t.name, "datatype": _v2_type(t.dtype),
                   "shape": [d if isinstance(d, int) else -1 for d in (t.shape or ())]}
                  for t in facing.tensors]
    runner = served.runner
    outputs = []
    for out in runner.session.get_outputs():
        dtype = numpy_dtype(str(out.type)) or "object"
        outputs.append({"name": out.name, "datatype": _v2_type(dtype),
                        "shape": [d if isinstance(d, int) else -1 for d in (out.shape or [])]})
    return {"name": served.info.name, "versions": [str(served.version)],
            "platform": "onnxruntime_onnx", "inputs": inputs, "outputs": outputs}


_NUMPY_OF_V2 = {v2: dtype for dtype, v2 in _V2_TYPES.items() if v2 != "BYTES"}
"""Numpy dtype names by V2 datatype, for the binary tensor extension."""


@dataclass(frozen=True)
class V2Request:
    """An infer request: its inputs, and how the answer is wanted.

    ``inputs`` holds each input as sent: its values (flat) and its shape. ``values`` holds
    them shaped; for a signature with columns, one list of values per column.
    """

    inputs: dict[str, tuple[list[Any], list[int]]]
    values: dict[str, Any]
    columns: bool
    id: str | None
    outputs: list[str] | None
    binary: set[str]
    binary_all: bool

    def payload(self) -> bytes:
        """The inputs as a payload for the signature check (dataframe_split or inputs)."""
        if not self.columns:
            return json.dumps({"inputs": self.values}).encode()
        names = list(self.values)
        rows = [list(r) for r in zip(*(self.values[n] for n in names), strict=True)]
        return json.dumps({"dataframe_split": {"columns": names, "data": rows}}).encode()


def _binary_values(name: str, datatype: str, raw: bytes) -> list[Any]:
    """Values of one input sent with the binary tensor extension (little-endian)."""
    if datatype == "BYTES":
        texts, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise BadRequest(400, f"input {name!r}: truncated BYTES element")
            size = int.from_bytes(raw[at:at + 4], "little")
            texts.append(raw[at + 4:at + 4 + size].decode("utf-8", "replace"))
            at += 4 + size
        return texts
    dtype = _NUMPY_OF_V2.get(datatype)
    if dtype is None:
        raise BadRequest(400, f"input {name!r}: datatype {datatype!r} is not one of "
                              f"{', '.join([*_NUMPY_OF_V2, 'BYTES'])}")
    import numpy as np

    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise BadRequest(400, f"input {name!r}: {len(raw)} bytes is not a whole number of "
                              f"{datatype} values")
    values: list[Any] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).tolist()
    return values


def v2_request(signature: Signature, body: bytes, header_length: str | None) -> V2Request:
    """Read an infer request (JSON, or JSON plus binary tensors) for a signature's inputs."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(400, "Inference-Header-Content-Length is not a size within the "
                                  "body")
        body, binary = body[:int(header_length)], body[int(header_length):]
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"the request body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest(400, 'an infer request is a JSON object with an "inputs" list')
    request_id = doc.get("id")
    inputs: dict[str, tuple[list[Any], list[int]]] = {}
    values: dict[str, Any] = {}
    offset = 0
    for i, item in enumerate(doc["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(400, f"inputs[{i}] is not an object with a name")
        name = item["name"]
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadRequest(400, f"input {name!r}: shape must be a list of sizes")
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(400, f"input {name!r}: binary_data_size is past the body")
            data = _binary_values(name, str(item.get("datatype", "")),
                                  binary[offset:offset + size])
            offset += size
        elif "data" in item:
            data = item["data"]
        else:
            raise BadRequest(400, f"input {name!r} has no data")
        flat = _flat(name, data, shape)
        inputs[name] = flat, shape
        values[name] = _reshaped(flat, shape)
    columns = bool(signature.facing_inputs().columns)
    if columns:
        for name, value in values.items():
            # A column arrives as shape [N] or [N, 1].
            if value and isinstance(value, list) and all(isinstance(v, list) for v in value):
                if any(len(v) != 1 for v in value):
                    raise BadRequest(400, f"input {name!r}: a column is shaped [N] or [N, 1]")
                values[name] = [v[0] for v in value]
        lengths = {len(v) if isinstance(v, list) else -1 for v in values.values()}
        if len(lengths) > 1 or -1 in lengths:
            raise BadRequest(400, "every column input must hold the same number of rows")
    wanted, binary_out = None, set()
    if isinstance(doc.get("outputs"), list):
        wanted = []
        for out in doc["outputs"]:
            if isinstance(out, dict) and isinstance(out.get("name"), str):
                wanted.append(out["name"])
                params = out.get("parameters")
                if isinstance(params, dict) and params.get("binary_data"):
                    binary_out.add(out["name"])
    params = doc.get("parameters")
    binary_all = isinstance(params, dict) and bool(params.get("binary_data_output"))
    return V2Request(inputs, values, columns,
                     request_id if isinstance(request_id, str) else None,
                     wanted or None, binary_out, binary_all)


def _flat(name: str, data: Any, shape: list[int]) -> list[Any]:
    """An input's values, flat, once they are as many as its shape holds."""
    if not isinstance(data, list):
        raise BadRequest(400, f"input {name!r}: data must be a list")
    flat = data
    if any(isinstance(v, list) for v in data):
        flat = _flatten(data)
    count = 1
    for d in shape:
        count *= d
    if len(flat) != count:
        raise BadRequest(400, f"input {name!r}: shape {shape} holds {count} values, "
                              f"data has {len(flat)}")
    return flat


def _reshaped(flat: list[Any], shape: list[int]) -> Any:
    """V2 sends tensors flat (or nested); give them the nesting their shape says."""
    if not shape:
        return flat[0] if flat else None
    nested: Any = flat
    for d in reversed(shape[1:]):
        nested = [nested[i:i + d] for i in range(0, len(nested), d)] if d else []
    return nested


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _bytes_of(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def v2_outputs(outputs: dict[str, Any], request: V2Request) -> tuple[list[dict[str, Any]], bytes]:
    """ONNX outputs as V2 output tensors, and the binary tail for those asked for in binary."""
    result, tail = [], []
    for name, value in outputs.items():
        if request.outputs is not None and name not in request.outputs:
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and value.dtype.kind in "biuf":
            entry: dict[str, Any] = {"name": name, "datatype": _v2_type(str(value.dtype)),
                                     "shape": list(shape)}
            if request.binary_all or name in request.binary:
                raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
                entry["parameters"] = {"binary_data_size": len(raw)}
                tail.append(raw)
            else:
                entry["data"] = value.reshape(-1).tolist()
            result.append(entry)
        elif shape is not None:  # strings
            result.append({"name": name, "datatype": "BYTES", "shape": list(shape),
                           "data": [_bytes_of(v) for v in value.reshape(-1).tolist()]})
        else:  # a sequence of maps (ZipMap): one JSON text per row
            rows = value if isinstance(value, list) else [value]
            result.append({"name": name, "datatype": "BYTES", "shape": [len(rows)],
                           "data": [json.dumps(jsonable(r)) for r in rows]})
    return result, b"".join(tail)


def mlflow_payload(body: bytes, content_type: str) -> tuple[bytes, str]:
    """An ``/invocations`` body as a payload ``predict`` reads, and its format."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/csv":
        return body, "csv"
    if kind not in ("application/json", ""):
        raise BadRequest(415, f"content type {kind!r} is not accepted: send application/json "
                              "or text/csv")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"the request body is not JSON: {exc}") from exc
    if isinstance(doc, dict) and "instances" in doc:
        # TF-serving's shape, which MLflow also takes: rows as records or as tensors.
        instances = doc["instances"]
        if isinstance(instances, list) and all(isinstance(r, dict) for r in instances):
            return json.dumps({"dataframe_records": instances}).encode(), "json"
        return json.dumps({"inputs": instances}).encode(), "json"
    if not isinstance(doc, dict) or not ({"dataframe_split", "dataframe_records", "inputs"}
                                         & set(doc)):
        raise BadRequest(400, "the body must hold one of dataframe_split, dataframe_records, "
                              "instances or inputs (MLflow's scoring format)")
    return body, "json"


def predictions(outputs: dict[str, Any]) -> Any:
    """MLflow's answer: one output's values, or every output's by name."""
    plain = {name: jsonable(value) for name, value in outputs.items()}
    if len(plain) == 1:
        return next(iter(plain.values()))
    return plain


def run_payload(served: Served, data: bytes, fmt: str) -> dict[str, Any]:
    """Check a payload against the served signature and run the model on it."""
    try:
        inputs, _ = payload_inputs(served.signature, data, fmt=fmt)
    except (VerdictNo, UsageError) as exc:
        raise BadRequest(400, str(exc)) from exc
    return served.runner.run(inputs)


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def to_json(doc: Any) -> bytes:
    """A JSON answer's body, written as starlette's JSONResponse writes it.

    Raises:
        ModelError: The document holds NaN or infinity, which JSON cannot carry.
    """
    try:
        return _ENCODE(doc).encode()
    except ValueError as exc:
        raise ModelError(f"the model's outputs cannot be sent as JSON: {exc}") from exc


@dataclass(frozen=True)
class Answer:
    """The body of a model route's answer, its content type, and where its JSON ends."""

    body: bytes
    content_type: bytes = b"application/json"
    header_length: int | None = None


def answer_invocations(served: Served, body: bytes, content_type: str | None) -> Answer:
    """Answer ``POST /invocations``: read, check, run, write."""
    content_type = content_type or ""
    inputs = served.plan.mlflow_inputs(body, content_type)
    if inputs is None:
        payload, fmt = mlflow_payload(body, content_type)
        outputs = run_payload(served, payload, fmt)
    else:
        outputs = served.runner.run(inputs)
    return Answer(to_json({"predictions": predictions(outputs)}))


def answer_infer(served: Served, body: bytes, header_length: str | None) -> Answer:
    """Answer a V2 ``infer``: read, check, run, write (JSON, or JSON and binary tensors)."""
    wanted = v2_request(served.signature, body, header_length)
    inputs = served.plan.v2_inputs(wanted)
    if inputs is None:
        outputs = run_payload(served, wanted.payload(), "json")
    else:
        outputs = served.runner.run(inputs)
    tensors, tail = v2_outputs(outputs, wanted)
    answer: dict[str, Any] = {"model_name": served.info.name,
                              "model_version": str(served.version), "outputs": tensors}
    if wanted.id is not None:
        answer["id"] = wanted.id
    if not tail:
        return Answer(to_json(answer))
    header = to_json(answer)
    return Answer(header + tail, b"application/octet-stream", len(header))


def _timed(clock: Callable[[], float], served: Served, work: Callable[..., Answer],
           *args: Any) -> Answer:
    """Run ``work`` and count how long it took, by ``clock``, in the version's plan.

    On the event loop the clock is the wall's: what other requests wait. In a worker thread
    it is the thread's processor time, which leaves out the waits for the GIL that
    concurrent requests cause there (else a version busy in threads would look slow, and stay
    in threads).
    """
    start = clock()
    answer = work(served, *args)
    # Only answered requests count: quick refusals would make a slow model look quick.
    served.plan.took(clock() - start)
    return answer


# --- the web application -----------------------------------------------------------------


@dataclass(frozen=True)
class ServeOptions:
    """How ``serve`` runs (the command's options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0
    poll: float = DEFAULT_POLL
    max_body: int = DEFAULT_MAX_BODY
    drain: float = DEFAULT_DRAIN
    access_log: str | None = None
    allow_remote: bool = False


class Metrics:
    """The Prometheus metrics of one server (a registry of its own, not the global one)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("modelreg_requests", "Requests by route and status code.",
                                ["route", "code"], registry=self.registry)
        self.latency = Histogram("modelreg_request_seconds", "Request latency by route.",
                                 ["route"], registry=self.registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                          .5, 1, 2.5, 5, 10))
        self.version = Gauge("modelreg_loaded_version", "The version being served.",
                             registry=self.registry)
        self.swaps = Counter("modelreg_swaps", "Versions swapped in after the start.",
                             registry=self.registry)
        self.failed = Counter("modelreg_failed_loads", "Versions that failed to load.",
                              registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_app(holder: Holder, options: ServeOptions, metrics: Metrics,
              threads: int) -> Any:
    """The ASGI application over ``holder``.

    The two model routes that run the model (``POST /invocations`` and V2 ``infer``) are
    answered by a plain ASGI function: no router, request or response objects on the way.
    Every other route goes through starlette.
    """
    import anyio
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    limiter = anyio.CapacityLimiter(threads)
    access = _access_log(options.access_log)
    too_large = f"the request body is larger than {options.max_body} bytes"
    counters: dict[tuple[str, int], Any] = {}
    timers: dict[str, Any] = {}

    def counted(route: str, status: int, elapsed: float) -> None:
        # The metrics' children, bound once per label value (a labels() call per request
        # hashes and locks).
        counter = counters.get((route, status))
        if counter is None:
            counter = counters[route, status] = metrics.requests.labels(route, str(status))
        counter.inc()
        timer = timers.get(route)
        if timer is None:
            timer = timers[route] = metrics.latency.labels(route)
        timer.observe(elapsed)

    def served_for(name: str | None, version: str | None) -> Served:
        served = holder.current
        if served is None:
            raise BadRequest(503, f"no version of {holder.ref} is loaded")
        if name is not None and name != served.info.name:
            raise BadRequest(404, f"this server serves {served.info.name!r}, not {name!r}")
        if version is not None and version != str(served.version):
            raise BadRequest(404, f"version {version} of {served.info.name} is not served "
                                  f"(version {served.version} is)")
        return served

    async def body_of(receive: Any, declared: bytes | None) -> bytes | None:
        """The request body (None if the client went away), refused when too large."""
        if declared is not None and declared.isdigit() and int(declared) > options.max_body:
            raise BadRequest(413, too_large)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > options.max_body:
                raise BadRequest(413, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def model_route(scope: dict[str, Any], receive: Any, send: Any, route: str,
                          name: str | None, version: str | None) -> None:
        start = time.perf_counter()
        served: Served | None = None
        status = 200
        try:
            served = served_for(name, version)
            content_type = declared = header_length = None
            for key, value in scope["headers"]:
                if key == b"content-length" and declared is None:
                    declared = value
                elif key == b"content-type" and content_type is None:
                    content_type = value.decode("latin-1")
                elif key == b"inference-header-content-length" and header_length is None:
                    header_length = value.decode("latin-1")
            body = await body_of(receive, declared)
            if body is None:
                return
            work, arg = ((answer_infer, header_length) if route == "infer" else
                         (answer_invocations, content_type))
            plan = served.plan
            if plan.inline(len(body)):
                answer = _timed(time.perf_counter, served, work, body, arg)
            elif len(body) <= SMALL_BODY:
                answer = await anyio.to_thread.run_sync(_timed, time.thread_time, served, work,
                                                        body, arg, limiter=limiter)
            else:
                answer = await anyio.to_thread.run_sync(work, served, body, arg,
                                                        limiter=limiter)
        except BadRequest as exc:
            status, answer = exc.status, Answer(to_json({"error": exc.message}))
        except ModelError as exc:
            status, answer = 500, Answer(to_json({"error": str(exc)}))
        headers = [(b"content-length", str(len(answer.body)).encode()),
                   (b"content-type", answer.content_type)]
        if answer.header_length is not None:
            headers.append((b"inference-header-content-length",
                            str(answer.header_length).encode()))
        if served is not None:
            headers.append((b"modelreg-version", str(served.version).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        elapsed = time.perf_counter() - start
        counted(route, status, elapsed)
        if access is not None:
            client = scope.get("client")
            access(client[0] if client else None, scope["method"], scope["path"], status,
                   elapsed, None if served is None else str(served.version))

    def handler(route: str, fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            response: Response
            try:
                response = await fn(request)
            except BadRequest as exc:
                response = JSONResponse({"error": exc.message}, status_code=exc.status)
            elapsed = time.perf_counter() - start
            counted(route, response.status_code, elapsed)
            if access is not None:
                access(request.client.host if request.client else None, request.method,
                       request.url.path, response.status_code, elapsed,
                       response.headers.get("modelreg-version"))
            return response

        return endpoint

    def answered_by(response: Response, served: Served) -> Response:
        response.headers["modelreg-version"] = str(served.version)
        return response

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = holder.current is not None and not holder.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "modelreg", "version": __version__,
                             "extensions": ["binary_tensor_data"]})

    def served_at(request: Request) -> Served:
        return served_for(request.path_params.get("name"), request.path_params.get("version"))

    async def metadata(request: Request) -> Response:
        served = served_at(request)
        return answered_by(JSONResponse(model_metadata(served)), served)

    async def model_ready(request: Request) -> Response:
        served = served_at(request)
        ok = not holder.draining
        doc: dict[str, Any] = {"name": served.info.name, "ready": ok,
                               "version": str(served.version), "ref": holder.ref}
        if holder.last_error is not None:
            doc["error"] = holder.last_error
        return answered_by(JSONResponse(doc, status_code=200 if ok else 503), served)

    async def prometheus(request: Request) -> Response:
        text, content_type = metrics.render()
        return Response(text, media_type=content_type)

    def route(path: str, name: str, fn: Callable[[Request], Any], methods: list[str]) -> Route:
        return Route(path, handler(name, fn), methods=methods)

    routes = [
        route("/v2/health/live", "live", live, ["GET"]),
        route("/v2/health/ready", "ready", ready, ["GET"]),
        route("/v2", "server_metadata", server_metadata, ["GET"]),
        route("/v2/models/{name}", "metadata", metadata, ["GET"]),
        route("/v2/models/{name}/versions/{version}", "metadata", metadata, ["GET"]),
        route("/v2/models/{name}/ready", "model_ready", model_ready, ["GET"]),
        route("/v2/models/{name}/versions/{version}/ready", "model_ready", model_ready,
              ["GET"]),
        route("/ping", "ping", ready, ["GET"]),
        route("/health", "ping", ready, ["GET"]),
        route("/metrics", "metrics", prometheus, ["GET"]),
    ]
    web = Starlette(routes=routes)

    def model_path(path: str) -> tuple[str, str | None, str | None] | None:
        """The model route a path names (route, model, version), or None."""
        if path == "/invocations":
            return "invocations", None, None
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            parts = path[len("/v2/models/"):-len("/infer")].split("/")
            if len(parts) == 1 and parts[0]:
                return "infer", parts[0], None
            if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
                return "infer", parts[0], parts[2]
        return None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The model routes are answered here, in front of starlette, for speed (the p50
        # budget); every other route is starlette's.
        found = model_path(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await web(scope, receive, send)
        elif scope["method"] != "POST":
            await PlainTextResponse("Method Not Allowed", status_code=405,
                                    headers={"Allow": "POST"})(scope, receive, send)
        else:
            await model_route(scope, receive, send, *found)

    return app


def _access_log(target: str | None) -> Callable[..., None] | None:
    """A JSON-lines access log to a file (appended) or ``-`` (standard error)."""
    if target is None:
        return None
    stream = sys.stderr if target == "-" else open(target, "a", encoding="utf-8")  # noqa: SIM115
    lock = threading.Lock()

    def write(client: str | None, method: str, path: str, status: int, elapsed: float,
              version: str | None) -> None:
        line = json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "client": client, "method": method, "path": path, "status": status,
            "ms": round(elapsed * 1000, 3), "version": version,
        })
        with lock:
            stream.write(line + "\n")
            stream.flush()

    return write


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything loads (a taken port fails fast, exit 4)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio switches Nagle's algorithm off (TCP_NODELAY) only on sockets that
    # say they are TCP, and a response's head and body go out in two writes (a 40-ms stall
    # against the client's delayed ACK otherwise).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(f"port {port} on {host} is in use; choose another with "
                                "--port") from exc
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(open_registry: Callable[[], Registry], ref: str, options: ServeOptions,
          *, started: Callable[[str], None] | None = None) -> None:
    """Serve ``ref`` until SIGTERM or SIGINT, following its stage or alias.

    Args:
        open_registry: Opens the store (the follower opens it again after a failed look).
        ref: ``NAME@STAGE``, ``NAME@ALIAS`` or ``NAME@N``.
        options: Host, port, threads, poll interval, limits, access log.
        started: Called with the server's URL once it accepts connections.

    Raises:
        UsageError: A non-loopback host without ``allow_remote``, or bad options.
        ConflictError: The port is in use.
        ModelError: The version is not an ONNX model (export it first) or does not load.
    """
    from modelreg.packaging.sources import require

    for module in ("starlette", "prometheus_client", "uvicorn"):
        require(module, "serve", "modelreg serve")
    import uvicorn
    if options.host not in LOOPBACK and not options.allow_remote:
        raise UsageError(f"--host {options.host} would let other machines send requests; "
                         "add --allow-remote to serve beyond this machine")
    if options.poll <= 0 or options.max_body <= 0 or options.drain < 0:
        raise UsageError("--poll and --max-body must be positive, --drain not negative")
    reg = open_registry()
    info = reg.show(ref)
    holder = Holder(ref)
    sock = bind(options.host, options.port)
    try:
        holder.current = load_version(reg, info)
    except BaseException:
        sock.close()
        raise
    metrics = Metrics()
    metrics.version.set(info.version)
    threads = options.workers or (os.cpu_count() or 1)
    app = build_app(holder, options, metrics, threads)

    def swapped(new: Served, old: Served | None) -> None:
        metrics.swaps.inc()
        metrics.version.set(new.version)

    follower = Follower(open_registry, holder, options.poll, on_swap=swapped,
                        on_failure=lambda version, why: metrics.failed.inc())
    pinned = "@" in ref and ref.split("@", 1)[1].lstrip("v").isdigit()
    if not pinned:
        follower.start()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            holder.draining = True  # readiness turns false before anything stops
            super().handle_exit(sig, frame)
            # uvicorn raises a captured signal again once it has drained, so that the process
            # dies of it; a drained SIGTERM is a clean stop here, and exits 0.
            self._captured_signals = [s for s in self._captured_signals
                                      if s != signal.SIGTERM]

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if started is not None:
                host = f"[{options.host}]" if ":" in options.host else options.host
                started(f"http://{host}:{sock.getsockname()[1]}")

    drain = max(1, round(options.drain)) if options.drain else None
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=drain)
    server = Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        follower.stop.set()
        with contextlib.suppress(OSError):
            sock.close()
