"""Property tests: the fast validator and the jsonschema reference report the same problems.

Signatures and record payloads are generated together: valid values, values of the wrong
type, out-of-range integers, integral floats, nulls, missing and extra keys, and records
that are not objects. Both paths must produce the same (row, column, message) list.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.signatures.model import COLUMN_TYPES, ColumnSpec, Schema
from modelreg.signatures.payload import records_to_columns
from modelreg.signatures.schema_json import reference_validate
from modelreg.signatures.validate import PayloadProblem, validate_payload, validate_records

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)

EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63,
             -2**63 - 1]
EDGE_FLOATS = [1.0, 1.5, -0.0, 3e9, 1e300, 2.0**63, 2.0**31, -2.0**31, float("nan"),
               float("inf"), float("-inf")]
EDGE_STRINGS = ["12.5", "2024-01-01", "2024-01-01T10:00:00Z", "2024-01-01 10:00:00+02:00",
                "yesterday", "AAE=", "QQ", "QQ==", "", "true", "x" * 60, "é\n\"q\""]

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**65, 2**65), st.sampled_from(EDGE_INTS),
    st.floats(), st.sampled_from(EDGE_FLOATS), st.text(max_size=12),
    st.sampled_from(EDGE_STRINGS), st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["k"]), st.integers(0, 3), max_size=1),
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "int32": st.integers(-2**31, 2**31 - 1) | st.integers(-1000, 1000).map(float),
    "int64": st.integers(-2**63, 2**63 - 1) | st.sampled_from([2.0**62, -2.0**63]),
    "float32": st.integers(-10**6, 10**6) | st.floats(),
    "float64": st.integers(-2**70, 2**70) | st.floats(),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=9).map(lambda b: base64.b64encode(b).decode()),
    "datetime": st.datetimes().map(lambda d: d.isoformat(sep=" " if d.second % 2 else "T"))
    | st.dates().map(lambda d: d.isoformat()),
}
NOT_RECORDS = [[1], 5, "x", None, True, []]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schema, list[Any], bool]:
    specs = draw(st.lists(st.tuples(st.sampled_from(COLUMN_TYPES), st.booleans(),
                                    st.booleans()), min_size=1, max_size=5))
    schema = Schema(columns=tuple(ColumnSpec(f"c{i}", t, required, nullable)
                                  for i, (t, required, nullable) in enumerate(specs)))
    records: list[Any] = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 15)) == 0:
            records.append(draw(st.sampled_from(NOT_RECORDS)))
            continue
        record: dict[str, Any] = {}
        for spec in schema.columns:
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue
            record[spec.name] = draw(VALID[spec.type] if choice < 6 else ANY_VALUE)
        if draw(st.integers(0, 3)) == 0:
            record[draw(st.sampled_from(["extra", "c9", "zz"]))] = draw(ANY_VALUE)
        records.append(record)
    return schema, records, draw(st.booleans())


def as_tuples(problems: list[PayloadProblem]) -> list[tuple[int | None, str | None, str]]:
    return [(p.row, p.column, p.message) for p in problems]


@SETTINGS
@given(cases())
def test_fast_path_agrees_with_jsonschema(case: tuple[Schema, list[Any], bool]) -> None:
    schema, records, allow_extra = case
    data = json.dumps(records).encode()
    parsed = json.loads(data)
    expected = as_tuples(reference_validate(schema, parsed, allow_extra=allow_extra))
    report = validate_payload(schema, data, fmt="records", allow_extra=allow_extra,
                              max_errors=10_000)
    assert as_tuples(report.problems) == expected
    assert report.total_problems == len(expected)
    assert report.ok == (not expected)


@SETTINGS
@given(cases(), st.integers(0, 4))
def test_the_cap_keeps_the_first_problems(case: tuple[Schema, list[Any], bool],
                                          cap: int) -> None:
    schema, records, allow_extra = case
    data = "\n".join(json.dumps(r) for r in records).encode()
    expected = as_tuples(reference_validate(schema, json.loads(json.dumps(records)),
                                            allow_extra=allow_extra))
    report = validate_payload(schema, data, fmt="jsonl", allow_extra=allow_extra,
                              max_errors=cap)
    assert as_tuples(report.problems) == expected[:cap]
    assert report.total_problems == len(expected)


@SETTINGS
@given(cases())
def test_validate_records_on_columns_agrees(case: tuple[Schema, list[Any], bool]) -> None:
    schema, records, allow_extra = case
    records = [r for r in json.loads(json.dumps(records)) if isinstance(r, dict)]
    payload = records_to_columns(records)
    fast = validate_records(schema, payload.columns, payload.n_rows, allow_extra=allow_extra,
                            max_errors=10_000)
    assert as_tuples(fast) == as_tuples(reference_validate(schema, records,
                                                           allow_extra=allow_extra))
