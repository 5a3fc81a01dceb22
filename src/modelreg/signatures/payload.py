"""Payload parsing: detect a payload's format and read it into a normalized form.

Column signatures read into :class:`ColumnPayload` (one list of values per column, with
:data:`MISSING` where a record lacks a key); tensor signatures read into
:class:`TensorPayload` (numpy arrays from ``.npy``/``.npz``, nested lists from JSON).
Formats and detection rules are documented in docs/signatures.md. numpy is imported only
inside the functions that read ``.npy``/``.npz``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from modelreg.errors import UsageError
from modelreg.signatures.model import Schema, family

__all__ = ["ACCEPTED", "CONTAINER_FORMATS", "JSON_SHAPES", "MISSING", "NOT_A_RECORD",
           "ColumnPayload", "TensorPayload", "detect_format", "load_arrays", "parse_csv_cell",
           "parse_payload", "read_columns", "records_to_columns"]

CONTAINER_FORMATS = ("json", "jsonl", "csv", "npy", "npz")
JSON_SHAPES = ("record", "records", "columns", "dataframe_records", "dataframe_split", "inputs",
               "tensors")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
               ".npy": "npy", ".npz": "npz"}
_SERVING_KEYS: dict[str, Any] = {"dataframe_records": list, "dataframe_split": dict,
                                  "inputs": (list, dict)}
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z|"
                         r"[+-]?(nan|inf|infinity)\Z", re.IGNORECASE)
_TRUE = {"true": True, "1": True, "false": False, "0": False}
_decode_json = json.JSONDecoder().decode


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Any = _Sentinel("MISSING")
"""Stands in a column's value list where a record does not have that key."""
NOT_A_RECORD: Any = _Sentinel("NOT_A_RECORD")
"""Stands in every column's value list at a row whose record is not a JSON object."""


@dataclass(frozen=True)
class ColumnPayload:
    """Records as columns: ``columns[name][i]`` is record ``i``'s value (or a sentinel).

    ``not_records`` maps the 0-based index of each record that is not a JSON object to the
    value found there. ``text`` is true for CSV read without a schema (cells still text).
    """

    format: str
    columns: dict[str, list[Any]]
    n_rows: int
    not_records: dict[int, Any] = field(default_factory=dict)
    text: bool = False

    def records(self) -> list[Any]:
        """Rebuild the records (keys in column order; missing keys left out)."""
        items = list(self.columns.items())
        return [self.not_records[i] if i in self.not_records else
                {k: v[i] for k, v in items if v[i] is not MISSING} for i in range(self.n_rows)]


@dataclass(frozen=True)
class TensorPayload:
    """Named tensor values: numpy arrays (npy/npz) or JSON values (nested lists)."""

    format: str
    tensors: dict[str, Any]


def detect_format(data: bytes, *, filename: str | None = None, fmt: str | None = None) -> str:
    """Decide a payload's container format: ``fmt``, else the file extension, else sniffing.

    Args:
        data: The payload bytes.
        filename: The file's name, if any; only its extension is used.
        fmt: An explicit format: a container (json, jsonl, csv, npy, npz) or a JSON shape
            (record, records, columns, dataframe_records, dataframe_split, inputs, tensors).

    Returns:
        One of :data:`CONTAINER_FORMATS`, or a JSON shape name when ``fmt`` gave one.

    Raises:
        UsageError: ``fmt`` names no known format.
    """
    if fmt is not None:
        name = fmt.lower()
        if name == "ndjson":
            name = "jsonl"
        if name not in CONTAINER_FORMATS and name not in JSON_SHAPES:
            raise UsageError(f"unknown payload format {fmt!r} (use one of "
                             f"{', '.join(CONTAINER_FORMATS + JSON_SHAPES)})")
        return name
    if filename:
        lower = filename.lower()
        for ext, name in _EXTENSIONS.items():
            if lower.endswith(ext):
                return name
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    head = data[:4096].lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    return "json" if head in (b"{", b"[") else "csv"


ACCEPTED = ("JSON (.json), JSON Lines (.jsonl, .ndjson), CSV (.csv) as UTF-8 text, and numpy "
            "arrays (.npy, .npz)")


def _by_name(filename: str | None, fmt: str | None) -> bool:
    """Whether the format was told (``fmt``, or a known extension) rather than sniffed."""
    return fmt is not None or (filename is not None
                               and filename.lower().endswith(tuple(_EXTENSIONS)))


def _text(data: bytes, what: str, sniffed_from: str | None = None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if sniffed_from is not None:
            # Neither a --format nor the file's name told the format, and the bytes are
            # neither JSON nor text: say so, rather than call it a broken CSV.
            raise UsageError(f"the payload's format was not recognised ({sniffed_from}: "
                             f"not JSON, and not UTF-8 text); accepted are {ACCEPTED}; "
                             "name the file by its format or give --format") from exc
        raise UsageError(f"the {what} payload is not UTF-8 text: {exc}") from exc


def _jsonl(text: str) -> list[Any]:
    records: list[Any] = []
    append = records.append
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue
        try:
            append(_decode_json(line))
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"JSONL line {number} is not valid JSON: {_json_problem(exc)}"
                             ) from exc
    return records


def _json(data: bytes, container: str) -> Any:
    """Return ``("json", doc)``, or ``("jsonl", records)`` for JSON Lines.

    JSON Lines is read when ``container`` says so, or when a JSON document fails to parse
    because several values follow each other.
    """
    text = _text(data, "JSON")
    if container == "jsonl":
        return ("jsonl", _jsonl(text))
    if not text.strip():
        raise UsageError("the payload is empty")
    try:
        return ("json", _decode_json(text))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return ("jsonl", _jsonl(text))
        raise UsageError(f"the payload is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        # An integer of more than 4300 digits (ValueError) or arrays and objects nested
        # deeper than the parser recurses: the payload's fault, not modelreg's.
        raise UsageError(f"the payload is not valid JSON: {_json_problem(exc)}") from exc


def _json_problem(exc: BaseException) -> str:
    """Word a JSON parse failure; a RecursionError says what it means for a payload."""
    if isinstance(exc, RecursionError):
        return "it nests arrays or objects too deeply"
    return str(exc)


def records_to_columns(records: list[Any], fmt: str = "records") -> ColumnPayload:
    """Transpose records into columns.

    Args:
        records: Parsed JSON values; objects are records, anything else is kept as a
            row that is not a record.
        fmt: The format name to carry.

    Returns:
        The column payload, keys in order of first appearance.
    """
    n = len(records)
    if n and set(map(type, records)) == {dict}:
        first = records[0].keys()
        if all(map(first.__eq__, map(dict.keys, records))):
            names = list(first)
            return ColumnPayload(fmt, {k: [r[k] for r in records] for k in names}, n)
    names_seen: dict[str, None] = {}
    not_records: dict[int, Any] = {}
    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            names_seen.update(dict.fromkeys(rec))
        else:
            not_records[i] = rec
    if not_records:
        columns = {k: [r.get(k, MISSING) if isinstance(r, dict) else NOT_A_RECORD
                       for r in records] for k in names_seen}
    else:
        columns = {k: [r.get(k, MISSING) for r in records] for k in names_seen}
    return ColumnPayload(fmt, columns, n, not_records)


def _columnar(doc: dict[str, Any], fmt: str) -> ColumnPayload:
    lengths = {k: len(v) for k, v in doc.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise UsageError(f"the columns have different lengths ({shown})")
    n = next(iter(lengths.values()), 0)
    return ColumnPayload(fmt, {str(k): list(v) for k, v in doc.items()}, n)


def _split(doc: Any) -> ColumnPayload:
    if not isinstance(doc, dict) or not isinstance(doc.get("columns"), list) or not \
            isinstance(doc.get("data"), list):
        raise UsageError('dataframe_split needs {"columns": [names], "data": [[values]]}')
    names = doc["columns"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise UsageError("dataframe_split columns must be distinct strings")
    rows = doc["data"]
    for i, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) != len(names):
            raise UsageError(f"dataframe_split data row {i} must be a list of {len(names)} "
                             "values, one per column")
    return ColumnPayload("dataframe_split", {n: [r[j] for r in rows] for j, n in
                                             enumerate(names)}, len(rows))


def _serving_key(doc: dict[str, Any]) -> str | None:
    keys = set(doc) - {"params"}
    key = keys.pop() if len(keys) == 1 else ""
    return key if isinstance(doc.get(key), _SERVING_KEYS.get(key, ())) else None


def _shaped(doc: Any, fmt: str | None) -> ColumnPayload:
    """Records from an array, columns from an object of arrays, else one record."""
    if isinstance(doc, list):
        return records_to_columns(doc, fmt or "records")
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        return _columnar(doc, fmt or "columns")
    if isinstance(doc, dict):
        return records_to_columns([doc], fmt or "record")
    raise UsageError("a JSON payload for columns must be an object, an array of objects or "
                     f"an MLflow serving shape, not {type(doc).__name__}")


def _json_columns(doc: Any, shape: str | None) -> ColumnPayload:
    if shape is None and isinstance(doc, dict):
        shape = _serving_key(doc)
    if shape in _SERVING_KEYS:
        if not isinstance(doc, dict) or shape not in doc:
            raise UsageError(f"the payload has no {shape!r} key")
        inner = doc[shape]
        return _split(inner) if shape == "dataframe_split" else _shaped(inner, shape)
    payload = _shaped(doc, None)
    if shape is not None and payload.format != shape:
        raise UsageError(f"the JSON payload is in the {payload.format} shape, not {shape}")
    return payload


def parse_csv_cell(text: str | None, column_type: str) -> Any:
    """Read one CSV cell by its column's type.

    Args:
        text: The cell text (None or empty is null).
        column_type: A canonical column type.

    Returns:
        None for an empty cell; an int, float or bool when the text reads as one for a
        numeric or boolean column; otherwise the text unchanged (and then rejected by
        validation if the column wants a number or a boolean).
    """
    if not text:
        return None
    kind = family(column_type)
    if kind in ("float", "integer"):
        stripped = text.strip()
        if _INT_TEXT.match(stripped):
            return int(stripped)
        if _FLOAT_TEXT.match(stripped):
            return float(stripped)
    elif kind == "boolean":
        return _TRUE.get(text.strip().lower(), text)
    return text


def _csv(data: bytes, schema: Schema | None, sniffed_from: str | None = None) -> ColumnPayload:
    text = _text(data, "CSV", sniffed_from)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as exc:
        raise UsageError(f"the CSV payload does not parse: {exc}") from exc
    if not rows:
        raise UsageError("the CSV payload is empty (it needs a header row)")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header) or not all(header):
        raise UsageError("the CSV header must name every column once")
    for i, row in enumerate(body, 1):
        if len(row) != len(header):
            raise UsageError(f"CSV record {i} has {len(row)} fields; the header has "
                             f"{len(header)}")
    types = {c.name: c.type for c in schema.columns} if schema is not None else {}
    columns: dict[str, list[Any]] = {}
    for j, name in enumerate(header):
        cells = [r[j] for r in body]
        ctype = types.get(name)
        if ctype is None:
            columns[name] = [c if c else None for c in cells]
        else:
            columns[name] = [parse_csv_cell(c, ctype) for c in cells]
    return ColumnPayload("csv", columns, len(body), text=schema is None)


def read_columns(data: bytes, *, filename: str | None = None, fmt: str | None = None,
                 schema: Schema | None = None) -> ColumnPayload:
    """Read a record payload into columns.

    Args:
        data: The payload bytes.
        filename: Used for format detection only.
        fmt: An explicit format (see :func:`detect_format`).
        schema: When given, CSV cells are read by their column's type; without it CSV
            cells stay text (None for empty) and ``text`` is set.

    Returns:
        The column payload.

    Raises:
        UsageError: The payload does not parse, or is a tensor format.
    """
    name = detect_format(data, filename=filename, fmt=fmt)
    if name in ("npy", "npz", "tensors"):
        raise UsageError(f"a {name} payload carries tensors; this signature has columns")
    if name == "csv":
        sniffed = None if _by_name(filename, fmt) else (filename or "stdin")
        return _csv(data, schema, sniffed)
    kind, doc = _json(data, "jsonl" if name == "jsonl" else "json")
    if kind == "jsonl":
        if name not in ("json", "jsonl"):
            raise UsageError(f"the payload is JSON Lines, not the {name} shape")
        return records_to_columns(doc, "jsonl")
    return _json_columns(doc, None if name == "json" else name)


def load_arrays(data: bytes, name: str) -> dict[str, Any]:
    """Load an ``.npy`` (key ``""``) or ``.npz`` payload into numpy arrays, without pickle.

    Raises:
        UsageError: The bytes do not load as that format.
    """
    import numpy as np

    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        single = isinstance(loaded, np.ndarray)
        if single:
            arrays = {"": loaded}
        else:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    except Exception as exc:  # numpy raises ValueError, OSError, zipfile errors, ...
        raise UsageError(f"the {name} payload does not load: {exc}") from exc
    if single != (name == "npy"):
        raise UsageError(f"the payload is an {'.npy' if single else '.npz'} file, not {name}")
    stray = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if stray:
        # np.load opens any zip as an .npz, and hands back the raw bytes of members that
        # are not .npy arrays.
        raise UsageError(f"the {name} payload is a zip whose members are not .npy arrays "
                         f"({', '.join(sorted(stray)[:3])})")
    return arrays


def _read_tensors(schema: Schema, data: bytes, name: str, filename: str | None = None,
                  fmt: str | None = None) -> TensorPayload:
    names = [t.name for t in schema.tensors]
    if name in ("npy", "npz"):
        arrays = load_arrays(data, name)
        if name == "npy":
            if len(names) != 1:
                raise UsageError(f"an .npy payload holds one array; this signature has "
                                 f"{len(names)} inputs ({', '.join(names)}): use .npz")
            return TensorPayload("npy", {names[0]: arrays[""]})
        return TensorPayload("npz", arrays)
    if name == "csv" and not _by_name(filename, fmt):
        _text(data, "CSV", filename or "stdin")  # bytes that are not text: say what is accepted
    if name in ("jsonl", "csv") or (name in JSON_SHAPES and name not in ("inputs", "tensors")):
        raise UsageError(f"a {name} payload carries columns; this signature has tensors")
    kind, doc = _json(data, "json")
    if kind == "jsonl":
        raise UsageError("a JSON Lines payload carries records; this signature has tensors")
    fmt = "tensors"
    if isinstance(doc, dict) and "inputs" not in names and _serving_key(doc) == "inputs":
        doc, fmt = doc["inputs"], "inputs"
    elif name == "inputs":
        raise UsageError('the payload has no "inputs" key')
    if isinstance(doc, dict):
        return TensorPayload(fmt, {str(k): v for k, v in doc.items()
                                   if k != "params" or "params" in names})
    if len(names) != 1:
        raise UsageError(f"a bare JSON value feeds one input; this signature has "
                         f"{len(names)} ({', '.join(names)}): send {{name: value, ...}}")
    return TensorPayload(fmt, {names[0]: doc})


def parse_payload(schema: Schema, data: bytes, *, filename: str | None = None,
                  fmt: str | None = None) -> ColumnPayload | TensorPayload:
    """Parse a payload for a schema: columns for a column schema, tensors for a tensor one.

    Args:
        schema: The schema the payload is meant for.
        data: The payload bytes.
        filename: Used for format detection only.
        fmt: An explicit format (see :func:`detect_format`).

    Returns:
        The normalized payload.

    Raises:
        UsageError: The payload cannot be parsed at all, or its format does not fit the
            schema's kind.
    """
    if schema.kind == "tensors":
        return _read_tensors(schema, data, detect_format(data, filename=filename, fmt=fmt),
                             filename, fmt)
    return read_columns(data, filename=filename, fmt=fmt, schema=schema)
