"""Benchmark: validating JSONL against a signature, as a ratio to merely parsing it.

100,000 JSONL rows of a 10-column signature (floats, ints, bools, strings, one int32 and
one nullable column). The floor is parsing the same bytes line by line with `json.loads`;
the measured call is `validate_payload` on those bytes (parse, transpose, check). Method:
`time.perf_counter`, one warm-up each, then 5 rounds of both in turn; medians. The budget is
2x the floor.

`measure_stream` compares `validate_stream` (what `modelreg validate FILE` runs: blocks and
chunks, constant memory) with `validate_payload` on the same bytes.

Run: .venv/bin/python bench/validate.py [ROWS]  (`make bench` runs it as W6, through
`measure`).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

from modelreg.signatures.model import parse_signature
from modelreg.signatures.validate import validate_payload

RUNS = 5
BUDGET = 2.0
SIGNATURE = {"inputs": {
    "distance": "float", "duration": "float64", "speed": "float32",
    "count": "int", "stops": "int32", "driver_id": {"type": "int64", "nullable": True},
    "is_hazardous": "bool", "is_night": "bool",
    "city": "string", "vehicle": "string",
}}


def make_payload(rows: int) -> bytes:
    rng = random.Random(42)
    lines = []
    for i in range(rows):
        lines.append(json.dumps({
            "distance": rng.uniform(0, 500), "duration": rng.uniform(1, 300),
            "speed": rng.randint(0, 130),  # an int is a valid float
            "count": rng.randint(0, 10**6), "stops": rng.randint(0, 40),
            "driver_id": None if i % 17 == 0 else rng.randint(1, 10**12),
            "is_hazardous": rng.random() < 0.1, "is_night": rng.random() < 0.3,
            "city": rng.choice(["Lyon", "Oslo", "Kyoto", "Lima"]), "vehicle": f"v-{i % 977}",
        }))
    return ("\n".join(lines) + "\n").encode()


def measure(rows: int) -> tuple[float, float]:
    """Return the median seconds of (`json.loads` of each line, `validate_payload`)."""
    schema = parse_signature(SIGNATURE).inputs
    data = make_payload(rows)

    def parse_only() -> list[Any]:
        return [json.loads(line) for line in data.decode().split("\n") if line]

    def validate() -> None:
        report = validate_payload(schema, data, filename="payload.jsonl")
        assert report.ok, report.to_dict()
        assert report.rows == rows

    # Interleaved (one warm-up each, then RUNS rounds of both), so drift hits both alike.
    parse_only()
    validate()
    floors, measured = [], []
    for _ in range(RUNS):
        for fn, into in ((parse_only, floors), (validate, measured)):
            start = time.perf_counter()
            fn()
            into.append(time.perf_counter() - start)
    return statistics.median(floors), statistics.median(measured)


def measure_stream(rows: int) -> tuple[float, float]:
    """Return the median seconds of (`validate_payload`, `validate_stream`) on the same bytes.

    `validate_stream` is what `modelreg validate FILE` runs: the file is read in blocks and
    checked in chunks, in constant memory; it must keep about `validate_payload`'s rate.
    """
    import io

    from modelreg.signatures.stream import validate_stream

    schema = parse_signature(SIGNATURE).inputs
    data = make_payload(rows)

    def whole() -> None:
        assert validate_payload(schema, data, filename="payload.jsonl").ok

    def streamed() -> None:
        report = validate_stream(schema, io.BytesIO(data), filename="payload.jsonl")
        assert report.ok
        assert report.rows == rows

    whole()
    streamed()
    wholes, streams = [], []
    for _ in range(RUNS):
        for fn, into in ((whole, wholes), (streamed, streams)):
            start = time.perf_counter()
            fn()
            into.append(time.perf_counter() - start)
    return statistics.median(wholes), statistics.median(streams)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    floor, measured = measure(rows)
    ratio = measured / floor
    print(f"json.loads {rows:,} lines:       {floor * 1000:8.1f} ms")
    print(f"validate_payload {rows:,} lines: {measured * 1000:8.1f} ms")
    print(f"ratio: {ratio:.2f}x (budget {BUDGET:.1f}x) "
          f"{'OK' if ratio <= BUDGET else 'OVER BUDGET'}")
    whole, streamed = measure_stream(rows)
    print(f"validate_stream {rows:,} lines:  {streamed * 1000:8.1f} ms "
          f"({streamed / whole:.2f}x validate_payload, {streamed / floor:.2f}x json.loads)")


if __name__ == "__main__":
    main()
