"""Sample inputs for a source model: the arrays parity is proven on, and the column order.

A sample file (``.npy``, ``.npz``, JSON, CSV) is read when one is given; otherwise inputs
are generated with a seeded generator from the version's signature, from scikit-learn's
``n_features_in_``, or from the shapes an exported program recorded. The arrays are keyed
by the source model's input names (:func:`modelreg.packaging.sources.input_names`). numpy
and the training frameworks are imported inside functions.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, cast

from modelreg.errors import UsageError
from modelreg.packaging.sources import SourceModel, input_names, recorded_inputs
from modelreg.signatures.model import Signature, TensorSpec
from modelreg.signatures.payload import detect_format, load_arrays, read_columns

if TYPE_CHECKING:
    import numpy as np

__all__ = ["column_order", "sample_inputs"]

# Signature dtypes a sample is cast to (others are left as the sample has them).
_CASTABLE = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def column_order(source: SourceModel, signature: Signature | None) -> list[str] | None:
    """The order columns bind to a single ``[N, F]`` input, when it is known.

    A scikit-learn model fitted on a DataFrame knows its ``feature_names_in_``; otherwise
    a columnar signature's order is used.
    """
    names = getattr(source.model, "feature_names_in_", None)
    if source.framework == "sklearn" and names is not None:
        return [str(n) for n in names]
    if signature is not None and signature.inputs.kind == "columns":
        return signature.inputs.names()
    return None


def _number(value: Any, column: str, row: int) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise UsageError(f"sample column {column!r}, row {row + 1}: {value!r} is not a "
                         "number") from None


def _matrix(columns: dict[str, list[Any]], order: list[str] | None) -> np.ndarray:
    import numpy as np

    names = order if order is not None else list(columns)
    missing = [n for n in names if n not in columns]
    if missing:
        raise UsageError(f"the sample lacks column(s) {', '.join(missing)} (the model "
                         f"takes {', '.join(names)}, in that order)")
    return np.array([[_number(v, n, i) for i, v in enumerate(columns[n])] for n in names],
                    dtype=np.float64).T.reshape(-1, len(names))


def _read_sample(data: bytes, name: str | None, names: list[str],
                 order: list[str] | None) -> tuple[dict[str, np.ndarray], bool]:
    """Parse a sample file; the flag tells whether it came as text (JSON/CSV)."""
    import numpy as np

    fmt = detect_format(data, filename=name)
    if fmt in ("npy", "npz"):
        arrays = load_arrays(data, fmt)
        if set(arrays) == set(names):
            return {n: arrays[n] for n in names}, False
        if len(arrays) == 1 and len(names) <= 1:
            return {(names or ["input_0"])[0]: next(iter(arrays.values()))}, False
        if not names:
            return arrays, False
        raise UsageError(f"the sample holds arrays {', '.join(arrays) or 'none'}; the model "
                         f"takes {', '.join(names)} (name the .npz arrays after them)")
    if fmt == "json":
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"the sample is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise UsageError("the sample is not valid JSON: it nests arrays or objects too "
                             "deeply") from exc
        if isinstance(doc, list) and doc and not isinstance(doc[0], dict):
            doc = {(names or ["input_0"])[0]: doc}
        if isinstance(doc, dict) and names and set(doc) == set(names):
            return {n: np.asarray(doc[n]) for n in names}, True
    payload = read_columns(data, filename=name)
    if len(names) > 1:
        raise UsageError(f"a column sample feeds one input; the model takes "
                         f"{', '.join(names)}: use .npz or JSON {{name: values}}")
    return {(names or ["input_0"])[0]: _matrix(payload.columns, order)}, True


def _generate(spec: TensorSpec, n: int, rng: Any) -> np.ndarray:
    import numpy as np

    if spec.kind != "tensor" or spec.shape is None:
        raise UsageError(f"input {spec.name!r} has no known shape to generate samples from; "
                         "pass --sample FILE")
    shape = tuple(d if isinstance(d, int) and d >= 0 else n for d in spec.shape)
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = np.dtype(object)
    if dtype.kind not in "biuf":
        raise UsageError(f"cannot generate {spec.dtype} values for input {spec.name!r}; "
                         "pass --sample FILE")
    if dtype.kind == "f":
        return cast("np.ndarray", rng.standard_normal(shape).astype(dtype))
    if dtype.kind == "b":
        return cast("np.ndarray", rng.random(shape) < 0.5)
    return cast("np.ndarray", rng.integers(0, 10, size=shape).astype(dtype))


def _bind(tensors: tuple[TensorSpec, ...], names: list[str],
          strict: bool) -> dict[str, TensorSpec]:
    """Match signature tensors to the model's inputs: by name, else by position."""
    keys = names or [f"input_{i}" for i in range(len(tensors))]
    by_name = {t.name: t for t in tensors}
    if set(by_name) == set(keys):
        return {k: by_name[k] for k in keys}
    if len(tensors) == len(keys):
        return dict(zip(keys, tensors, strict=True))
    if strict:
        raise UsageError(f"the signature's inputs ({', '.join(by_name)}) do not match the "
                         f"model's ({', '.join(keys)}); pass --sample FILE")
    return {}


def sample_inputs(source: SourceModel, *, sample: bytes | None, sample_name: str | None,
                  signature: Signature | None, n: int = 32,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Build the inputs parity is proven on, keyed by the source model's input names.

    A sample file is read as ``.npy``/``.npz``, JSON (an array of rows, records, a column
    dict, or ``{input: values}``) or CSV with a header; columns are stacked into one
    matrix in :func:`column_order` (else the file's order). Without a file, values are
    generated with a seeded generator: from the signature (dynamic dimensions become
    ``n``; columns become an ``[n, columns]`` matrix), else for scikit-learn ``n`` rows of
    ``n_features_in_`` standard normals, else (exported programs) from the shapes recorded
    at export.

    dtypes: scikit-learn gets float64, the values as given (what scikit-learn computes
    with, and what its float64 graphs take). A torch input takes the dtype its signature
    tensor names; otherwise float64 is narrowed to float32, and JSON/CSV numbers are read
    as float32.

    Args:
        source: The loaded model.
        sample: The sample file's bytes, if one was given.
        sample_name: Its file name (for format detection).
        signature: The version's signature, if it has one.
        n: Rows to generate.
        seed: The generator's seed.

    Returns:
        One array per input; scikit-learn gets a single float64 ``X`` of rank 2.

    Raises:
        UsageError: The sample does not parse or fit the model, or there is nothing to
            generate inputs from (the message asks for ``--sample``).
        ModelError: torch is needed to read an exported program's shapes and is missing.
    """
    import numpy as np

    names = input_names(source)
    tensors = signature.inputs.tensors if signature is not None else ()
    rng = np.random.default_rng(seed)
    text = False
    if sample is not None:
        arrays, text = _read_sample(sample, sample_name, names, column_order(source, signature))
    elif signature is not None and signature.inputs.kind == "columns":
        width = len(signature.inputs.columns)
        arrays = {(names or ["input_0"])[0]: rng.standard_normal((n, width))}
    elif tensors:
        arrays = {k: _generate(t, n, rng) for k, t in _bind(tensors, names, True).items()}
    elif source.framework == "sklearn" and source.n_features is not None:
        arrays = {"X": rng.standard_normal((n, source.n_features))}
    elif source.kind == "exported_program":
        arrays = {t.name: _generate(t, n, rng) for t in recorded_inputs(source)}
    else:
        raise UsageError(f"{source.path.name}: nothing tells the input shapes (no signature"
                         + ("" if source.framework == "torch" else ", no n_features_in_")
                         + "); pass --sample FILE with example inputs")
    if source.framework == "sklearn":
        return {"X": _sklearn_matrix(source, next(iter(arrays.values())))}
    specs = _bind(tensors, list(arrays), False) if tensors else {}
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array, spec = np.asarray(value), specs.get(key)
        if spec is not None and spec.kind == "tensor" and spec.dtype in _CASTABLE:
            array = array.astype(spec.dtype)
        elif array.dtype == np.float64 or (text and array.dtype.kind in "iub"):
            array = array.astype(np.float32)
        out[key] = array
    return out


def _sklearn_matrix(source: SourceModel, value: Any) -> np.ndarray:
    import numpy as np

    array = np.asarray(value)
    array = array.reshape(-1, 1) if array.ndim == 1 else array
    if array.ndim != 2:
        raise UsageError(f"a scikit-learn model takes a [rows, features] matrix; the sample "
                         f"has shape {list(array.shape)}")
    if source.n_features is not None and array.shape[1] != source.n_features:
        raise UsageError(f"the inputs have {array.shape[1]} features; the model was fitted on "
                         f"{source.n_features}")
    return array.astype(np.float64)
