"""Version manifests: TOML encoding, decoding and determinism."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import EXIT_INTEGRITY, IntegrityError
from modelreg.registry.manifest import (
    MANIFEST_FORMAT,
    Manifest,
    Outline,
    decode_manifest,
    decoded_form,
    encode_manifest,
    outline,
)
from modelreg.types import Artifact, DataRef, FileInfo, GitInfo, Lineage, RunInfo

_FAST = settings(derandomize=True, database=None, deadline=None, max_examples=100)

_D1 = "sha256:" + "1" * 64
_D2 = "sha256:" + "2" * 64
_D3 = "sha256:" + "3" * 64


def _manifest(**changes: object) -> Manifest:
    m = Manifest(
        name="ResNet",
        version=3,
        created_at="2024-05-01T12:00:00.000001+00:00",
        created_by="ana@example.com",
        description='First "real" model\nwith a second line — and ünïcödé',
        tags={"team": "vision", "owner": "ana"},
        artifact=Artifact(
            kind="directory",
            digest=_D1,
            size=30,
            files=[FileInfo("model.onnx", _D2, 10), FileInfo("sub/tokenizer.json", _D3, 20)],
        ),
        lineage=Lineage(
            params={"lr": 0.01, "epochs": 10, "opt": {"name": "adam", "beta": 0.9}, "x": True},
            metrics={"acc": 0.93, "loss": 0.2},
            run=RunInfo(id="run-7", name="nightly"),
            git=GitInfo(commit="a" * 40, branch="main", dirty=True,
                        remote="https://example.com/r.git"),
            data=[DataRef("data/train.csv", _D2, 123), DataRef("data/val", _D3, 45)],
            data_version="2024-04",
            derived_from="Base@2",
        ),
    )
    return replace(m, **changes)


def test_round_trip_full() -> None:
    m = _manifest()
    assert decode_manifest(encode_manifest(m), "obj") == m


def test_round_trip_minimal() -> None:
    m = _manifest(
        description=None,
        tags={},
        lineage=Lineage(),
        artifact=Artifact(kind="file", digest=_D2, size=0, files=[FileInfo("m.bin", _D2, 0)]),
    )
    decoded = decode_manifest(encode_manifest(m), "obj")
    assert decoded == m
    assert decoded.description is None
    assert decoded.lineage.git is None
    assert decoded.lineage.run == RunInfo()


def test_encoding_is_utf8_toml_with_trailing_newline() -> None:
    data = encode_manifest(_manifest())
    assert data.endswith(b"\n")
    doc = tomllib.loads(data.decode("utf-8"))
    assert doc["format"] == MANIFEST_FORMAT
    assert doc["name"] == "ResNet"
    assert doc["version"] == 3
    assert list(doc)[:5] == ["format", "name", "version", "created_at", "created_by"]


def test_absent_optional_fields_are_omitted() -> None:
    m = _manifest(
        description=None,
        lineage=Lineage(git=GitInfo(commit=None, branch=None, dirty=False, remote=None)),
    )
    doc = tomllib.loads(encode_manifest(m).decode("utf-8"))
    assert "description" not in doc
    assert "data_version" not in doc["lineage"]
    assert "derived_from" not in doc["lineage"]
    assert doc["lineage"]["run"] == {}
    assert doc["lineage"]["git"] == {"dirty": False}
    assert decode_manifest(encode_manifest(m), "obj") == m


def test_encoding_is_deterministic() -> None:
    assert encode_manifest(_manifest()) == encode_manifest(_manifest())


def test_tag_order_does_not_change_bytes() -> None:
    a = _manifest(tags={"a": "1", "b": "2", "c": "3"})
    b = _manifest(tags={"c": "3", "a": "1", "b": "2"})
    assert a == b
    assert encode_manifest(a) == encode_manifest(b)


@pytest.mark.parametrize("field", ["params", "metrics"])
def test_params_and_metrics_order_does_not_change_bytes(field: str) -> None:
    base = _manifest()
    a = replace(base, lineage=replace(base.lineage, **{field: {"a": 1, "b": {"x": 1, "y": 2}}}))
    b = replace(base, lineage=replace(base.lineage, **{field: {"b": {"y": 2, "x": 1}, "a": 1}}))
    assert a == b
    assert encode_manifest(a) == encode_manifest(b)


# --- hypothesis round trip --------------------------------------------------------------------

_text = st.text(max_size=30)
_opt_text = st.none() | _text
_scalar = (
    _text
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
_params = st.recursive(
    st.dictionaries(_text, _scalar | st.lists(_scalar, max_size=3), max_size=5),
    lambda children: st.dictionaries(_text, _scalar | children, max_size=5),
    max_leaves=20,
)
_digest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
_size = st.integers(min_value=0, max_value=2**62)
_file = st.builds(FileInfo, _text.filter(bool), _digest, _size)
_data = st.builds(DataRef, _text, _digest, _size)
_git = st.none() | st.builds(GitInfo, _opt_text, _opt_text, st.booleans(), _opt_text)
_lineage = st.builds(
    Lineage,
    params=_params,
    metrics=st.dictionaries(_text, st.floats(allow_nan=False, allow_infinity=False)
                            | st.integers(-1000, 1000) | st.booleans(), max_size=5),
    run=st.builds(RunInfo, _opt_text, _opt_text),
    git=_git,
    data=st.lists(_data, max_size=3),
    data_version=_opt_text,
    derived_from=_opt_text,
)
_manifests = st.builds(
    Manifest,
    name=_text,
    version=st.integers(min_value=1, max_value=10**6),
    created_at=_text,
    created_by=_text,
    description=st.none() | st.text() | st.sampled_from(
        ['say "hi"', "it's", "a\nb\r\nc", "tab\there", "\\n literal", "'''", '"""', "\x00\x7f",
         "日本語 🚀", ""]
    ),
    tags=st.dictionaries(_text, _text, max_size=5),
    artifact=st.builds(Artifact, st.sampled_from(["file", "directory"]), _digest, _size,
                       st.lists(_file, max_size=4)),
    lineage=_lineage,
)


def _typed(value: object) -> object:
    """Equality that also compares types (``1 == 1.0 == True`` in plain Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@_FAST
@given(_manifests)
def test_round_trip_property(m: Manifest) -> None:
    data = encode_manifest(m)
    decoded = decode_manifest(data, "obj")
    assert decoded == m
    # Types survive too (True must not come back as 1, 1 not as 1.0).
    assert _typed(decoded.lineage.params) == _typed(m.lineage.params)
    assert _typed(decoded.lineage.metrics) == _typed(m.lineage.metrics)
    assert encode_manifest(decoded) == data


@_FAST
@given(_manifests)
def test_encoding_is_deterministic_property(m: Manifest) -> None:
    copy = replace(m, tags=dict(reversed(list(m.tags.items()))))
    assert copy == m
    assert encode_manifest(copy) == encode_manifest(m)


_flat = st.dictionaries(_text, _scalar, max_size=6)
_plain_manifests = st.builds(  # _manifests with flat params and metrics, and maybe an example
    lambda m, params, metrics, example: replace(
        m, lineage=replace(m.lineage, params=params, metrics=metrics), example=example),
    _manifests, _flat, _flat, st.none() | _file)


@_FAST
@given(_plain_manifests | _manifests)
def test_the_decoded_form_is_what_decoding_gives(m: Manifest) -> None:
    """A register describes its new version from ``decoded_form`` instead of parsing the
    TOML it wrote: the two must agree in every way (``repr``: types and key order too)."""
    made = decoded_form(m)
    if made is None:  # nested tables: left to the parser
        assert m.lineage.params and not all(
            isinstance(v, str | int | float) for v in m.lineage.params.values())
        return
    assert repr(made) == repr(decode_manifest(encode_manifest(m), "obj"))


def test_the_decoded_form_leaves_what_is_not_plain_to_the_parser() -> None:
    assert decoded_form(_manifest()) is None  # a nested param table
    flat = _manifest(lineage=Lineage(params={"b": 1, "a": 2.5}))
    assert repr(decoded_form(flat)) == repr(decode_manifest(encode_manifest(flat), "obj"))
    for lineage in (Lineage(params={"x": float("nan")}), Lineage(params={"x": 2**64}),
                    Lineage(params={"x": (1, 2)}), Lineage(metrics={"x": None}),
                    Lineage(export={"from": "x"})):
        assert decoded_form(_manifest(lineage=lineage)) is None
    assert decoded_form(_manifest(lineage=Lineage(), signature={"inputs": []})) is None


# --- decoding errors -------------------------------------------------------------------------


def _doc() -> dict:
    return tomllib.loads(encode_manifest(_manifest()).decode("utf-8"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage \x00 not toml [[[",
        b"\xff\xfe\xfd",
        b'{"type": "commit", "format": 1}\n',
        b"format = 1\n",
        b'format = 1\nname = "m"\n',
        b"just = 'a table'\n",
    ],
)
def test_decode_garbage(data: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        decode_manifest(data, "objects/ab/cdef")
    assert info.value.exit_code == EXIT_INTEGRITY == 6
    assert info.value.path == "objects/ab/cdef"
    assert "objects/ab/cdef" in str(info.value)


@pytest.mark.parametrize("fmt", [0, 2, 99, "1"])
def test_decode_other_format(fmt: object) -> None:
    doc = _doc()
    doc["format"] = fmt
    with pytest.raises(IntegrityError, match="format") as info:
        decode_manifest(tomli_w.dumps(doc).encode(), "where")
    assert info.value.exit_code == 6


def test_decode_missing_format() -> None:
    doc = _doc()
    del doc["format"]
    with pytest.raises(IntegrityError):
        decode_manifest(tomli_w.dumps(doc).encode(), "where")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "artifact", "not a table"),
        (None, "version", "three"),
        ("artifact", "files", [{"path": "x"}]),
        ("artifact", "size", "big"),
        ("lineage", "data", [{"path": "x", "digest": "y"}]),
        ("lineage", "params", [1, 2, 3]),
        (None, "tags", [1]),
    ],
)
def test_decode_malformed_fields(section: str | None, key: str, value: object) -> None:
    doc = _doc()
    (doc if section is None else doc[section])[key] = value
    with pytest.raises(IntegrityError) as info:
        decode_manifest(tomli_w.dumps(doc).encode(), "where")
    assert info.value.exit_code == 6


# -- outline: what fsck and gc read of a manifest without parsing it whole -----------------


def _full_outline(m: Manifest) -> Outline:
    named = [f.digest for f in m.artifact.files]
    if m.artifact.kind == "directory":
        named.append(m.artifact.digest)
    if m.example is not None:
        named.append(m.example.digest)
    return Outline(m.name, m.version, sorted(named))


def _sorted(o: Outline | None) -> Outline | None:
    return None if o is None else Outline(o.name, o.version, sorted(o.objects))


@_FAST
@given(_manifests)
def test_outline_agrees_with_a_full_parse(m: Manifest) -> None:
    data = encode_manifest(m)
    found = outline(data)
    # None sends the caller to the full parse; anything else must agree with it.
    assert found is None or _sorted(found) == _full_outline(decode_manifest(data, "o"))


def test_outline_reads_names_with_tabs_and_escapes() -> None:
    m = _manifest(name="a\tb \"c\" \\ ü\x7f", example=FileInfo("x.json", _D3, 2))
    assert _sorted(outline(encode_manifest(m))) == _full_outline(m)


def test_outline_ignores_digests_that_name_no_object() -> None:
    # A tag, a param or a data file called "digest" is not an object of the store.
    m = _manifest(tags={"digest": _D3}, example=FileInfo("x.json", _D3, 2))
    m = replace(m, lineage=replace(m.lineage, params={"digest": _D1, "name": "other"}))
    assert _sorted(outline(encode_manifest(m))) == Outline("ResNet", 3, [_D1, _D2, _D3, _D3])


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"name = 1\nversion = 2\n", b'name = "x"\nversion = "2"\n',
    b'name = "x"\nversion = 2\n[artifact]\nkind = "file"\ndigest = sha256\n',
    b'name = "x"\nversion = 2\n[artifact]\nkind = "directory"\n',
])
def test_outline_of_text_in_another_shape_is_none(data: bytes) -> None:
    assert outline(data) is None
