"""Streaming validation: a JSON Lines or CSV payload checked in chunks, in constant memory.

A file is read in blocks; its records are parsed and checked ``CHUNK_ROWS`` at a time with
the same column checks as :mod:`modelreg.signatures.validate`, so memory does not grow with
the file. The report is the one :func:`~modelreg.signatures.validate.validate_payload`
gives for the same bytes: the same problems, in the same order and words, with the same row
numbers; problems that span rows ("missing required column ... (and N more rows)") are
tallied across chunks. Other formats (a JSON document, npy, npz) are read whole.
"""

from __future__ import annotations

import codecs
import csv
import heapq
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from modelreg.errors import UsageError
from modelreg.signatures.model import Schema
from modelreg.signatures.payload import (
    MISSING,
    ColumnPayload,
    _by_name,
    _decode_json,
    _json_problem,
    detect_format,
    parse_csv_cell,
    records_to_columns,
)
from modelreg.signatures.validate import (
    PayloadProblem,
    ValidationReport,
    cell_problem,
    column_problems,
    extra_problem,
    missing_problem,
    not_record_problem,
    validate_payload,
)

__all__ = ["BLOCK", "CHUNK_ROWS", "validate_stream"]

CHUNK_ROWS = 20_000
"""Records parsed and checked at a time (a few MB of Python objects for ten columns)."""
BLOCK = 1 << 22
"""Bytes read from the file at a time."""
_HEAD = 1 << 16

_Key = tuple[int, int, int]
_SENTINEL_TYPE = type(MISSING)


@dataclass
class _Tally:
    """What the chunks found so far: the first problems kept, and counts across chunks."""

    max_errors: int
    kept: list[tuple[_Key, PayloadProblem]] = field(default_factory=list)
    counted: int = 0
    rows: int = 0
    missing: dict[int, list[int]] = field(default_factory=dict)  # pos -> [first, count]
    extras: dict[str, list[int]] = field(default_factory=dict)  # name -> [first, count]

    def add_span(self, table: dict[Any, list[int]], key: Any, first: int, count: int) -> None:
        if key in table:
            table[key][1] += count
        else:
            table[key] = [first, count]


def _scan(schema: Schema, payload: ColumnPayload, tally: _Tally, allow_extra: bool) -> None:
    """Check one chunk; its rows are numbered from ``tally.rows``."""
    offset = tally.rows
    n = payload.n_rows
    skip = payload.not_records
    streams: list[Iterator[tuple[_Key, PayloadProblem]]] = [
        (((offset + i, -1, 0), not_record_problem(offset + i, skip[i])) for i in sorted(skip))]
    tally.counted += len(skip)
    for pos, spec in enumerate(schema.columns):
        values = payload.columns.get(spec.name)
        if values is None:
            if spec.required and n > len(skip):
                first = next(i for i in range(n) if i not in skip)
                tally.add_span(tally.missing, pos, offset + first, n - len(skip))
            continue
        types = set(map(type, values))
        if spec.required and _SENTINEL_TYPE in types:
            gone = [i for i, v in enumerate(values) if v is MISSING]
            if gone:
                tally.add_span(tally.missing, pos, offset + gone[0], len(gone))
        bad = column_problems(spec, values, types)
        if bad is None:
            continue
        tally.counted += len(bad)
        streams.append(_cells(offset, pos, spec.name, values, bad))
    if not allow_extra:
        known = {c.name for c in schema.columns}
        for name, column in payload.columns.items():
            if name in known:
                continue
            rows = [i for i, v in enumerate(column) if type(v) is not _SENTINEL_TYPE]
            if rows:
                tally.add_span(tally.extras, name, offset + rows[0], len(rows))
    room = tally.max_errors - len(tally.kept)
    if room > 0:
        tally.kept.extend(itertools.islice(heapq.merge(*streams, key=lambda item: item[0]),
                                           room))
    tally.rows += n


def _cells(offset: int, pos: int, name: str, values: list[Any],
           bad: list[tuple[int, str]]) -> Iterator[tuple[_Key, PayloadProblem]]:
    """One column's bad values as problems (a function, so each stream keeps its column)."""
    for i, expected in bad:
        yield (offset + i, pos, 2), cell_problem(offset + i, name, expected, values[i])


def _report(schema: Schema, fmt: str, tally: _Tally) -> ValidationReport:
    names = [c.name for c in schema.columns]
    structural = [((first, pos, 1), missing_problem(names[pos], first, count))
                  for pos, (first, count) in tally.missing.items()]
    for pos, name in enumerate(sorted(tally.extras), len(names)):
        first, count = tally.extras[name]
        structural.append(((first, pos, 1), extra_problem(name, first, count)))
    structural.sort(key=lambda item: item[0])
    merged = heapq.merge(tally.kept, structural, key=lambda item: item[0])
    problems = [p for _, p in itertools.islice(merged, tally.max_errors)]
    total = tally.counted + len(structural)
    return ValidationReport(total == 0, fmt, tally.rows, problems, total)


def _blocks(head: bytes, fh: BinaryIO) -> Iterator[str]:
    """The file's text in blocks that end at a line break (the BOM dropped, UTF-8 checked)."""
    rest = b""
    first = True
    block = head
    line = 1
    while block:
        data = rest + block
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield _decode(data[:cut], first, line)
            line += data.count(b"\n", 0, cut)
            first = False
        block = fh.read(BLOCK)
    if rest:
        yield _decode(rest, first, line)


def _decode(data: bytes, first: bool, line: int) -> str:
    try:
        return data.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        at = line + data.count(b"\n", 0, exc.start)
        raise UsageError(f"the JSON payload is not UTF-8 text: line {at}: {exc.reason}"
                         ) from exc


def _jsonl_chunks(head: bytes, fh: BinaryIO) -> Iterator[list[Any]]:
    """Records of a JSON Lines file, ``CHUNK_ROWS`` at a time.

    A line that is not JSON is reported after the rest of the file was found to be UTF-8,
    as when the whole file is read at once (where decoding comes first).
    """
    records: list[Any] = []
    number = 0
    error: UsageError | None = None
    for text in _blocks(head, fh):
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        for line in lines:
            number += 1
            if error is not None or not line or line.isspace():
                continue
            try:
                records.append(_decode_json(line))
            except (ValueError, RecursionError) as exc:
                error = UsageError(f"JSONL line {number} is not valid JSON: "
                                   f"{_json_problem(exc)}")
                error.__cause__ = exc
                continue
            if len(records) >= CHUNK_ROWS:
                yield records
                records = []
    if error is not None:
        raise error
    if records:
        yield records


class _Joined(io.RawIOBase):
    """The bytes already read (``head``) followed by the rest of ``fh``, as one raw stream."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        super().__init__()
        self._head, self._fh = memoryview(head), fh

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._fh.read(len(view))
        view[:len(data)] = data
        return len(data)


def _csv_chunks(schema: Schema, head: bytes, fh: BinaryIO) -> Iterator[ColumnPayload]:
    """A CSV file's records as typed columns, ``CHUNK_ROWS`` at a time.

    A record with the wrong number of fields is reported once the whole file parsed, as
    when it is read at once (where every row is parsed before the counts are checked).
    """
    text = io.TextIOWrapper(io.BufferedReader(_Joined(head, fh), BLOCK), encoding="utf-8-sig",
                            newline="")
    types = {c.name: c.type for c in schema.columns}
    error: UsageError | None = None
    try:
        reader = csv.reader(text, strict=True)
        header = next((r for r in reader if r), None)
        if header is None:
            raise UsageError("the CSV payload is empty (it needs a header row)")
        if len(set(header)) != len(header) or not all(header):
            raise UsageError("the CSV header must name every column once")
        width = len(header)
        number = 0
        rows: list[list[str]] = []
        for row in reader:
            if not row:
                continue
            number += 1
            if error is not None:
                continue
            if len(row) != width:
                error = UsageError(f"CSV record {number} has {len(row)} fields; the header "
                                   f"has {width}")
                continue
            rows.append(row)
            if len(rows) >= CHUNK_ROWS:
                yield _typed(header, rows, types)
                rows = []
        if error is not None:
            raise error
        if rows:
            yield _typed(header, rows, types)
    except csv.Error as exc:
        raise UsageError(f"the CSV payload does not parse: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"the CSV payload is not UTF-8 text: {exc}") from exc
    finally:
        text.detach()


def _typed(header: list[str], rows: list[list[str]], types: dict[str, str]) -> ColumnPayload:
    columns: dict[str, list[Any]] = {}
    for j, name in enumerate(header):
        ctype = types.get(name)
        if ctype is None:
            columns[name] = [r[j] or None for r in rows]
        else:
            columns[name] = [parse_csv_cell(r[j], ctype) for r in rows]
    return ColumnPayload("csv", columns, len(rows))


def validate_stream(schema: Schema, fh: BinaryIO, *, filename: str | None = None,
                    fmt: str | None = None, allow_extra: bool = False,
                    max_errors: int = 20) -> ValidationReport:
    """Validate a payload read from a binary file, streaming JSON Lines and CSV.

    Args:
        schema: The signature's inputs (or outputs) schema.
        fh: The payload, opened for reading in binary mode (a file, or stdin's buffer).
        filename: The payload's file name, used to detect its format.
        fmt: An explicit format (see :func:`~modelreg.signatures.payload.detect_format`).
        allow_extra: Accept columns or tensors the schema does not name.
        max_errors: Keep at most this many problems in the report (all are counted).

    Returns:
        The report :func:`~modelreg.signatures.validate.validate_payload` gives for the
        same bytes.

    Raises:
        UsageError: The payload cannot be parsed, its format does not fit the schema, or
            ``max_errors`` is negative.
    """
    if max_errors < 0:
        raise UsageError("max_errors must be 0 or more")
    head = fh.read(_HEAD)
    name = detect_format(head, filename=filename, fmt=fmt)
    streamable = schema.kind == "columns" and (
        name == "jsonl" or name == "csv" and (_by_name(filename, fmt) or _is_text(head)))
    if not streamable:
        return validate_payload(schema, head + fh.read(), filename=filename, fmt=fmt,
                                allow_extra=allow_extra, max_errors=max_errors)
    tally = _Tally(max_errors)
    if name == "jsonl":
        for records in _jsonl_chunks(head, fh):
            _scan(schema, records_to_columns(records, "jsonl"), tally, allow_extra)
    else:
        for payload in _csv_chunks(schema, head, fh):
            _scan(schema, payload, tally, allow_extra)
    return _report(schema, name, tally)


def _is_text(head: bytes) -> bool:
    """Whether a sniffed head reads as UTF-8 (else the whole-file path words the refusal)."""
    try:
        # Not final: the head may end inside a character that the next block completes.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


