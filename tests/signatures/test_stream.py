"""Streaming validation gives validate_payload's report, in constant memory."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelreg.errors import UsageError
from modelreg.signatures import stream
from modelreg.signatures.model import parse_signature
from modelreg.signatures.stream import validate_stream
from modelreg.signatures.validate import validate_payload

SCHEMA = parse_signature({"inputs": {
    "distance": "float", "count": "int32", "ok": "bool", "city": "string",
    "note": {"type": "string", "required": False}}}).inputs


def _row(rng: random.Random, i: int) -> Any:
    row: dict[str, Any] = {"distance": rng.uniform(0, 9), "count": rng.randint(0, 99),
                           "ok": rng.random() < 0.5, "city": rng.choice(["Lyon", "Oslo"])}
    roll = rng.random()
    if roll < 0.01:
        row["distance"] = "12.5"
    elif roll < 0.02:
        del row["city"]
    elif roll < 0.03:
        row["extra"] = 1
    elif roll < 0.035:
        return [1, 2]
    elif roll < 0.04:
        row["count"] = 2**40
    return row


def _jsonl(rows: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = [json.dumps(_row(rng, i)) for i in range(rows)]
    lines[5:5] = ["", "   "]  # blank lines are skipped but still counted as lines
    return ("\n".join(lines) + "\n").encode()


def _csv(rows: int) -> bytes:
    rng = random.Random(3)
    out = ["distance,count,ok,city"]
    for _ in range(rows):
        out.append(f"{rng.choice(['1.5', 'x', '2'])},{rng.choice(['1', '9999999999', ''])},"
                   f"{rng.choice(['true', '0', 'maybe'])},Lyon")
    return ("\r\n".join(out) + "\r\n").encode()


@pytest.mark.parametrize("max_errors", [0, 1, 20, 10_000])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_the_report_is_validate_payloads(monkeypatch: pytest.MonkeyPatch, kind: str,
                                         max_errors: int) -> None:
    monkeypatch.setattr(stream, "CHUNK_ROWS", 97)  # many chunks, problems across them
    monkeypatch.setattr(stream, "BLOCK", 1000)
    data = _jsonl(2000) if kind == "jsonl" else _csv(2000)
    name = f"p.{kind}"
    want = validate_payload(SCHEMA, data, filename=name, max_errors=max_errors)
    got = validate_stream(SCHEMA, io.BufferedReader(io.BytesIO(data)), filename=name,
                          max_errors=max_errors)
    assert got == want
    assert want.total_problems > 40


@pytest.mark.parametrize(("data", "words"), [
    (b'{"distance": 1}\n{"distance": \n', "JSONL line 2 is not valid JSON"),
    (b'{"distance": 1}\n' + b"[" * 5000 + b"\n", "JSONL line 2"),
    (b'{"distance": 1}\n{"city": "\xff"}\n', "not UTF-8 text: line 2"),
])
def test_jsonl_errors(monkeypatch: pytest.MonkeyPatch, data: bytes, words: str) -> None:
    monkeypatch.setattr(stream, "BLOCK", 7)
    with pytest.raises(UsageError, match=words.replace("[", r"\[")):
        validate_stream(SCHEMA, io.BytesIO(data), filename="p.jsonl")


def test_csv_errors_are_validate_payloads() -> None:
    for data in (b"", b"a,a\n1,2\n", b"distance,count\n1\n", b'distance\n"x\n',
                 b"distance\n\xff\n"):
        with pytest.raises(UsageError) as want:
            validate_payload(SCHEMA, data, filename="p.csv")
        with pytest.raises(UsageError) as got:
            validate_stream(SCHEMA, io.BytesIO(data), filename="p.csv")
        assert str(got.value).split(":")[0] == str(want.value).split(":")[0]


def test_other_formats_are_read_whole() -> None:
    doc = json.dumps([{"distance": "x", "count": 1, "ok": True, "city": "a"}]).encode()
    assert validate_stream(SCHEMA, io.BytesIO(doc), filename="p.json") == validate_payload(
        SCHEMA, doc, filename="p.json")
    blob = bytes(range(256))
    with pytest.raises(UsageError, match="format was not recognised"):
        validate_stream(SCHEMA, io.BytesIO(blob), filename="model.joblib")


def test_a_large_jsonl_file_is_validated_in_constant_memory(tmp_path: Path) -> None:
    """A real `modelreg validate` process on ~110 MB of JSONL stays far below its size."""
    root = tmp_path / "proj"
    root.mkdir()
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps({"inputs": {"a": "float", "b": "string", "c": "int"}}))
    payload = tmp_path / "big.jsonl"
    line = b'{"a": 1.25, "b": "' + b"x" * 60 + b'", "c": 7}\n'
    bad = b'{"a": "1.25", "b": "' + b"x" * 59 + b'", "c": 7}\n'
    block = line * 9_999 + bad
    with open(payload, "wb") as fh:
        for _ in range(125):
            fh.write(block)
    size = payload.stat().st_size
    assert size > 100_000_000
    script = textwrap.dedent("""
        import resource, subprocess, sys, json
        root, model, sig, payload = sys.argv[1:]
        run = lambda *a, **k: subprocess.run([sys.executable, "-m", "modelreg", *a],
                                             cwd=root, capture_output=True, text=True, **k)
        assert run("init").returncode == 0
        r = run("register", "m", model, "--signature", sig, "--no-git")
        assert r.returncode == 0, r.stderr
        result = run("validate", "m", payload, "--json")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps({"code": result.returncode, "out": result.stdout, "peak": peak}))
    """)
    model = tmp_path / "model.bin"
    model.write_bytes(b"w")
    done = subprocess.run([sys.executable, "-c", script, str(root), str(model), str(sig),
                           str(payload)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    report = json.loads(outcome["out"])
    assert outcome["code"] == 1
    assert report["rows"] == 1_250_000 and report["total_problems"] == 125
    assert report["problems"][0]["message"] == \
        'row 10000, column "a": expected float, got string "1.25"'
    assert outcome["peak"] < 200 * 2**20, outcome["peak"] / 2**20
