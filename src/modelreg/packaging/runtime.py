"""Running ONNX models with ONNX Runtime: sessions, predict behind the signature, a bench.

:class:`InferenceRunner` holds one ONNX Runtime session per model (the parity proof and
``predict``/``bench`` all run through it). ``onnxruntime`` and numpy are imported inside
functions, so importing this module costs nothing until a model is run.

``predict`` validates the payload against the version's signature first: a bad payload is
refused (exit 1) and never reaches the model. When an export recorded a *binding* (a column
signature over one ``[N, F]`` tensor input), columns are stacked in that order. Sessions are
built once per process per model and reused.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelError, NotFound, VerdictNo
from modelreg.signatures.model import Signature

if TYPE_CHECKING:
    from modelreg.registry.core import Registry
    from modelreg.signatures.validate import ValidationReport
    from modelreg.types import FileInfo, VersionInfo

__all__ = ["BenchResult", "BenchRow", "InferenceRunner", "PredictResult", "bench",
           "build_runner", "jsonable", "load_session", "numpy_dtype", "payload_inputs",
           "predict",
           "version_signature"]


# --- sessions ----------------------------------------------------------------------------

# The session option naming the directory ONNX Runtime resolves external data against when
# the model is given as bytes (else it uses the process's working directory).
_EXTERNAL_FOLDER = "session.model_external_initializers_file_folder_path"


def load_session(path_or_bytes: Path | str | bytes, data_dir: Path | None = None) -> Any:
    """Build an ``onnxruntime.InferenceSession`` on the CPU provider, logging errors only.

    A model given as bytes has its external data resolved in ``data_dir`` only; with no
    ``data_dir`` it is resolved in a new empty directory, so a model that names external
    files can read nothing (never the working directory, where ONNX Runtime would look).

    Args:
        path_or_bytes: The model file, or the serialized model.
        data_dir: The directory holding the model's own external data files (bytes only).

    Raises:
        ModelError: The file is missing, or ONNX Runtime cannot load the model.
    """
    import tempfile

    import onnxruntime as ort  # type: ignore[import-untyped]

    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    if isinstance(source, str) and not Path(source).is_file():
        raise ModelError(f"{source}: no such model file")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="modelreg-nodata-") as empty:
        if isinstance(source, bytes):
            options.add_session_config_entry(_EXTERNAL_FOLDER, str(data_dir or empty))
        try:
            return ort.InferenceSession(source, sess_options=options,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's pybind errors (Fail, InvalidGraph, ...)
            raise ModelError(f"ONNX Runtime cannot load the model: {exc}") from exc


# ONNX Runtime's tensor element type names -> numpy dtype names.
_ORT_NUMPY = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool",
              "string": "object",
              **{t: t for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                "uint64")}}


def numpy_dtype(ort_type: str) -> str | None:
    """Return the numpy dtype name of an ONNX Runtime type such as ``tensor(double)``.

    None for what is not a tensor of a known element type (a sequence, a map).
    """
    if not ort_type.startswith("tensor("):
        return None
    return _ORT_NUMPY.get(ort_type[7:-1])


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

    def __init__(self, model: Path | str | bytes, data_dir: Path | None = None) -> None:
        self.session = load_session(model, data_dir)
        self.input_types = {i.name: str(i.type) for i in self.session.get_inputs()}
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}
        self.input_names = list(self.input_types)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def as_fed(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs as arrays of the element types the graph declares.

        Numbers are converted (float64 data feeds a ``tensor(float)`` input, and the
        other way round); other values and unknown names are passed as they are.
        """
        import numpy as np

        feed: dict[str, Any] = {}
        for name, value in inputs.items():
            array, kind = np.asarray(value), self.input_types.get(name, "")
            want = numpy_dtype(kind)
            if want not in (None, "object") and array.dtype.kind in "biuf" \
                    and array.dtype.name != want:
                array = array.astype(want)
            feed[name] = array
        return feed

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
        missing = [n for n in self.input_names if n not in inputs]
        unknown = [n for n in inputs if n not in self.input_types]
        if missing or unknown:
            raise ModelError(f"the model's inputs are {', '.join(self.input_names)}; got "
                             + "; ".join([f"no {', '.join(missing)}"] * bool(missing)
                                         + [f"unknown {', '.join(unknown)}"] * bool(unknown)))
        feed = self.as_fed(inputs)
        names = list(outputs) if outputs is not None else self.output_names
        try:
            results = self.session.run(names, feed)
        except Exception as exc:  # onnxruntime's pybind errors
            raise ModelError(f"ONNX Runtime failed to run the model: {exc}") from exc
        return {name: _plain(value) if isinstance(value, list) else value
                for name, value in zip(names, results, strict=True)}


# --- predict and bench against a registered version ------------------------------------

_RUNNERS: dict[str, InferenceRunner] = {}


@dataclass(frozen=True)
class PredictResult:
    """What ``predict`` returns: the outputs by name, as JSON-ready values."""

    ref: str
    rows: int | None
    outputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``{"outputs": {name: values}}`` plus the version and row count."""
        return {"ref": self.ref, "rows": self.rows, "outputs": self.outputs}


@dataclass(frozen=True)
class BenchRow:
    """One batch size's figures: latency percentiles (ms, 4 decimals) and rows per second."""

    batch_size: int
    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rows_per_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form: every field, by name (docs/packaging.md, bench)."""
        return {"batch_size": self.batch_size, "runs": self.runs, "p50_ms": self.p50_ms,
                "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "throughput_rows_per_s": self.throughput_rows_per_s}


@dataclass(frozen=True)
class BenchResult:
    """Latency and throughput of ONNX Runtime on one version, one row per batch size."""

    ref: str
    results: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``ref`` and ``results``, one object per row."""
        return {"ref": self.ref, "results": [r.to_dict() for r in self.results]}


def _onnx_file(info: VersionInfo) -> FileInfo:
    """Return the version's single ONNX file."""
    onnx_files = [f for f in info.artifact.files if f.path.lower().endswith(".onnx")]
    if len(onnx_files) != 1:
        raise ModelError(f"{info.ref} is not an ONNX model (its files: "
                         f"{', '.join(f.path for f in info.artifact.files)}); export it with "
                         f"`modelreg export {info.ref} --to onnx`")
    return onnx_files[0]


def _oid(f: FileInfo) -> str:
    return f.digest.split(":")[1]


def _runner(reg: Registry, info: VersionInfo) -> InferenceRunner:
    """The session of the version's ONNX model, built once per process (:func:`build_runner`)."""
    key, build = _session_plan(reg, info)
    if key not in _RUNNERS:
        _RUNNERS[key] = build()
    return _RUNNERS[key]


def build_runner(reg: Registry, info: VersionInfo) -> InferenceRunner:
    """Build a new session of the version's ONNX model (not kept: the caller owns it).

    ``serve`` builds one per version it swaps in and drops the old one when it is done.

    Raises:
        ModelError: The version is not an ONNX model, or ONNX Runtime cannot load it.
        IntegrityError: A file's bytes do not match its digest.
    """
    return _session_plan(reg, info)[1]()


def _session_plan(reg: Registry, info: VersionInfo) -> tuple[str, Callable[[], InferenceRunner]]:
    """A version's session key and how to build the session, with its own data files only.

    The model is loaded from its verified bytes (no copy on disk that someone else could
    swap). When it keeps tensors in external files, each location must name a file of the
    same version (:func:`~modelreg.packaging.onnxfile.resolve_external_data`); those files
    are copied, verified, into a private temporary directory, and ONNX Runtime resolves
    external data there and nowhere else.
    """
    import posixpath

    from modelreg.packaging import onnxfile

    model_file = _onnx_file(info)
    model_bytes = reg.objects.get_bytes(_oid(model_file))
    files = {f.path: f for f in info.artifact.files}
    needed = onnxfile.resolve_external_data(
        onnxfile.parse_model(model_bytes), model_file.path,
        {path: f.size for path, f in files.items()}, info.ref)
    # The same graph bytes in another version may name other data files: both are the key.
    key = " ".join([_oid(model_file), *sorted(f"{loc}={files[t].digest}"
                                               for loc, t in needed.items())])

    def build() -> InferenceRunner:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="modelreg-data-") as tmp:
            # Spellings of one location ("w.bin", "./w.bin") name one file.
            copies = {posixpath.normpath(loc): target for loc, target in needed.items()}
            for location, target in copies.items():
                dest = Path(tmp, *location.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                with dest.open("xb") as fh:
                    reg.objects.copy_to(_oid(files[target]), fh)
            # ONNX Runtime has read (or mapped) the data once the session exists.
            return InferenceRunner(model_bytes, Path(tmp))

    return key, build


def version_signature(info: VersionInfo) -> Signature:
    """The version's signature (payloads are checked against it)."""
    if info.signature is None:
        raise NotFound(f"{info.ref} has no signature to check payloads against")
    return info.signature


def _refuse(report: ValidationReport) -> None:
    if not report.ok:
        lines = "\n".join(p.message for p in report.problems)
        rest = report.total_problems - len(report.problems)
        more = f"\n... and {rest} more problem(s)" if rest > 0 else ""
        raise VerdictNo(f"payload rejected before reaching the model "
                        f"({report.total_problems} problem(s)):\n{lines}{more}")


def payload_inputs(sig: Signature, data: bytes, filename: str | None = None,
                   fmt: str | None = None) -> tuple[dict[str, Any], int | None]:
    """Validate a payload against the signature and turn it into the model's inputs.

    Returns:
        The inputs by graph input name, and the number of rows (None if unknown).

    Raises:
        VerdictNo: The payload breaks the signature (each problem on its own line).
        UsageError: The payload cannot be read.
    """
    import numpy as np

    from modelreg.signatures.payload import ColumnPayload, parse_payload
    from modelreg.signatures.validate import check_payload

    bound = sig.binding()
    schema = sig.facing_inputs()
    payload = parse_payload(schema, data, filename=filename, fmt=fmt)
    _refuse(check_payload(schema, payload))
    try:
        if isinstance(payload, ColumnPayload):
            if bound is None:
                raise ModelError("this signature has columns but no binding to the model's "
                                 "tensor inputs; export the model with modelreg to record one")
            tensor, dtype, cols = bound
            matrix = np.column_stack([np.asarray(payload.columns[c.name], dtype=dtype)
                                      for c in cols.columns])
            return {tensor: matrix}, payload.n_rows
        dtypes = {t.name: t.dtype for t in sig.inputs.tensors}
        arrays = {name: np.asarray(value, dtype=dtypes.get(name) or None)
                  for name, value in payload.tensors.items()}
    except OverflowError as exc:
        # An integer beyond any float (10**400 in a float column) passes the signature's
        # type check, which takes any JSON number there, and cannot become the model's input.
        raise VerdictNo("payload rejected before reaching the model (1 problem(s)):\n"
                        f"a number is too large for the model's input type ({exc})") from exc
    except TypeError as exc:  # a dtype numpy has no type for (bfloat16, float8, int4, ...)
        raise ModelError(f"this model's input cannot be built here: {exc}") from exc
    first = next(iter(arrays.values()), None)
    return arrays, None if first is None or first.ndim == 0 else int(first.shape[0])


def jsonable(value: Any) -> Any:
    """An output value as plain JSON data (arrays become nested lists)."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def predict(reg: Registry, ref: str, data: bytes, *, filename: str | None = None,
            fmt: str | None = None) -> PredictResult:
    """Validate a payload, run the version's ONNX model on it, and return its outputs.

    Raises:
        VerdictNo: The payload breaks the signature (the model is not run).
        ModelError: The version is not an ONNX model, or ONNX Runtime failed.
    """
    info = reg.show(ref)
    _onnx_file(info)
    sig = version_signature(info)
    inputs, rows = payload_inputs(sig, data, filename, fmt)
    outputs = _runner(reg, info).run(inputs)
    return PredictResult(info.ref, rows, {k: jsonable(v) for k, v in outputs.items()})


def _generated(sig: Signature, batch: int, seed: int) -> dict[str, Any]:
    """Inputs of ``batch`` rows made from the signature (random values of the right type)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bound = sig.binding()
    if bound is not None:
        tensor, dtype, cols = bound
        return {tensor: rng.standard_normal((batch, len(cols.columns))).astype(dtype)}
    out: dict[str, Any] = {}
    for t in sig.inputs.tensors:
        if t.kind != "tensor" or t.shape is None:
            raise ModelError(f"cannot generate inputs for {t.name!r} (unknown shape); "
                             "bench needs fixed ranks")
        shape = [batch if i == 0 and not (isinstance(d, int) and d > 0) else
                 (d if isinstance(d, int) and d > 0 else 1) for i, d in enumerate(t.shape)]
        if t.dtype.startswith("float"):
            out[t.name] = rng.standard_normal(shape).astype(t.dtype)
        elif t.dtype.startswith(("int", "uint")):
            out[t.name] = rng.integers(0, 10, size=shape).astype(t.dtype)
        elif t.dtype == "bool":
            out[t.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ModelError(f"cannot generate {t.dtype} inputs for {t.name!r}")
    return out


def bench(reg: Registry, ref: str, *, batch_sizes: list[int], duration: float = 2.0,
          warmup: int = 5) -> BenchResult:
    """Measure ONNX Runtime latency (p50/p95/p99, ms) and throughput (rows/s) per batch size.

    Each batch size runs for about ``duration`` seconds after ``warmup`` runs, on inputs
    generated from the signature.
    """
    info = reg.show(ref)
    sig = version_signature(info)
    runner = _runner(reg, info)
    results: list[BenchRow] = []
    for batch in batch_sizes:
        inputs = _generated(sig, batch, seed=batch)
        for _ in range(warmup):
            runner.run(inputs)
        latencies: list[float] = []
        end = time.perf_counter() + duration
        while time.perf_counter() < end or len(latencies) < 20:
            start = time.perf_counter()
            runner.run(inputs)
            latencies.append((time.perf_counter() - start) * 1000)
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        total = sum(latencies) / 1000
        results.append(BenchRow(batch, len(latencies), p50_ms=round(q[49], 4),
                                p95_ms=round(q[94], 4), p99_ms=round(q[98], 4),
                                throughput_rows_per_s=round(batch * len(latencies) / total,
                                                            1)))
    return BenchResult(info.ref, results)
