"""Artifact trees: storage/tree.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.errors import (
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    IntegrityError,
    NotFound,
    UsageError,
)
from modelreg.storage.tree import (
    FileEntry,
    SourceFile,
    check_relpath,
    collect,
    encode_tree,
    hash_path,
)


def _make(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _rel(files: list[SourceFile]) -> list[str]:
    return [f.relpath for f in files]


# -- collect -------------------------------------------------------------------------------


def test_collect_one_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    kind, files = collect([path])
    assert kind == "file"
    assert files == [SourceFile("model.onnx", path)]


def test_collect_one_file_given_relatively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    monkeypatch.chdir(tmp_path)
    kind, files = collect([Path("model.onnx")])
    assert kind == "file"
    assert _rel(files) == ["model.onnx"]


def test_collect_directory_sorted_posix_paths(tmp_path: Path) -> None:
    root = _make(tmp_path / "weights", {
        "z.bin": b"z", "a.bin": b"a", "sub/b.txt": b"b", "sub/deeper/c": b"c",
        "A.bin": b"A", "sub-file": b"-", ".hidden": b"h",
    })
    kind, files = collect([root])
    assert kind == "directory"
    rels = _rel(files)
    assert rels == sorted(rels)
    assert set(rels) == {"z.bin", "a.bin", "sub/b.txt", "sub/deeper/c", "A.bin", "sub-file",
                         ".hidden"}
    for f in files:
        assert f.source == root / f.relpath
        assert "\\" not in f.relpath
        assert not f.relpath.startswith("/")


def test_collect_directory_skips_empty_subdirectories(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"f": b"1"})
    (root / "empty" / "deeper").mkdir(parents=True)
    assert _rel(collect([root])[1]) == ["f"]


def test_symlink_to_a_file_inside_is_accepted(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"real/weights.bin": b"w"})
    (root / "alias.bin").symlink_to("real/weights.bin")
    kind, files = collect([root])
    assert kind == "directory"
    assert _rel(files) == ["alias.bin", "real/weights.bin"]
    assert files[0].source == root / "alias.bin"
    assert files[0].source.read_bytes() == b"w"


def test_symlink_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not register")
    root = _make(tmp_path / "d", {"ok": b"1"})
    link = root / "sub" / "leak"
    link.parent.mkdir()
    link.symlink_to(secret)
    with pytest.raises(UsageError) as excinfo:
        collect([root])
    assert excinfo.value.exit_code == EXIT_USAGE == 2
    assert str(link) in str(excinfo.value)
    assert "outside" in str(excinfo.value)


def test_relative_symlink_escaping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"x")
    root = _make(tmp_path / "d", {"ok": b"1"})
    (root / "up").symlink_to("../outside")
    with pytest.raises(UsageError):
        collect([root])


@pytest.mark.parametrize("inside", [True, False])
def test_symlinked_subdirectory_is_refused(tmp_path: Path, inside: bool) -> None:
    root = _make(tmp_path / "d", {"real/f": b"1"})
    target = root / "real" if inside else _make(tmp_path / "other", {"g": b"2"})
    link = root / "linked"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(UsageError) as excinfo:
        collect([root])
    assert excinfo.value.exit_code == 2
    assert str(link) in str(excinfo.value)


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"ok": b"1"})
    (root / "dangling").symlink_to(root / "missing")
    with pytest.raises(UsageError) as excinfo:
        collect([root])
    assert str(root / "dangling") in str(excinfo.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"ok": b"1"})
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError) as excinfo:
        collect([root])
    assert str(fifo) in str(excinfo.value)
    with pytest.raises(UsageError):
        collect([fifo])


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "only" / "dirs").mkdir(parents=True)
    with pytest.raises(UsageError) as excinfo:
        collect([root])
    assert excinfo.value.exit_code == 2
    assert str(root) in str(excinfo.value)


def test_no_paths_is_refused() -> None:
    with pytest.raises(UsageError):
        collect([])


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(NotFound) as excinfo:
        collect([missing])
    assert excinfo.value.exit_code == EXIT_NOT_FOUND == 3
    assert str(missing) in str(excinfo.value)
    present = tmp_path / "here"
    present.write_bytes(b"1")
    with pytest.raises(NotFound):
        collect([present, missing])


def test_several_paths_go_under_their_base_names(tmp_path: Path) -> None:
    model = tmp_path / "a" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"m")
    tok = _make(tmp_path / "b" / "tokenizer", {"vocab.txt": b"v", "sub/merges": b"m"})
    kind, files = collect([tok, model])
    assert kind == "directory"
    assert _rel(files) == ["model.onnx", "tokenizer/sub/merges", "tokenizer/vocab.txt"]


def test_two_files_with_the_same_basename_collide(tmp_path: Path) -> None:
    a = _make(tmp_path / "a", {"model.onnx": b"1"}) / "model.onnx"
    b = _make(tmp_path / "b", {"model.onnx": b"2"}) / "model.onnx"
    with pytest.raises(UsageError) as excinfo:
        collect([a, b])
    assert excinfo.value.exit_code == 2
    assert "model.onnx" in str(excinfo.value)


def test_two_directories_with_overlapping_files_collide(tmp_path: Path) -> None:
    a = _make(tmp_path / "a" / "w", {"x": b"1"})
    b = _make(tmp_path / "b" / "w", {"x": b"2"})
    with pytest.raises(UsageError, match="same name .w."):
        collect([a, b])


def test_same_path_twice_collides(tmp_path: Path) -> None:
    f = _make(tmp_path, {"m.bin": b"1"}) / "m.bin"
    with pytest.raises(UsageError):
        collect([f, f])


def test_file_and_directory_with_the_same_basename_collide(tmp_path: Path) -> None:
    f = _make(tmp_path / "a", {"w": b"file"}) / "w"
    d = _make(tmp_path / "b" / "w", {"x": b"in dir"})
    with pytest.raises(UsageError):
        collect([f, d])


def test_two_directories_with_the_same_basename_collide(tmp_path: Path) -> None:
    a = _make(tmp_path / "a" / "w", {"x": b"1"})
    b = _make(tmp_path / "b" / "w", {"y": b"2"})
    with pytest.raises(UsageError):
        collect([a, b])


# -- check_relpath -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relpath",
    ["../x", "/abs", "a//b", "a/./b", "", ".", "..", "a/..", "a/", "./a", "a\\b", "..\\x",
     "a\x00b", "x/../../y"],
)
def test_check_relpath_rejects(relpath: str) -> None:
    with pytest.raises(IntegrityError) as excinfo:
        check_relpath(relpath)
    assert excinfo.value.exit_code == EXIT_INTEGRITY == 6
    assert repr(relpath) in str(excinfo.value)


@pytest.mark.parametrize("relpath", ["a", "a/b/c.onnx", ".hidden", "a..b", "x/...", "é/ü"])
def test_check_relpath_accepts(relpath: str) -> None:
    assert check_relpath(relpath) == relpath


# -- encode_tree / hash_path ---------------------------------------------------------------

_entries = st.lists(
    st.builds(
        FileEntry,
        path=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1,
                     max_size=12),
        digest=st.text("0123456789abcdef", min_size=64, max_size=64),
        size=st.integers(0, 2**40),
    ),
    max_size=12,
    unique_by=lambda e: e.path,
)


@given(_entries, st.randoms(use_true_random=False))
def test_encode_tree_is_independent_of_input_order(entries: list[FileEntry], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    encoded = encode_tree(entries)
    assert encode_tree(shuffled) == encoded
    assert encode_tree(reversed(entries)) == encoded
    assert encode_tree(iter(shuffled)) == encoded
    doc = json.loads(encoded)
    assert doc["type"] == "tree"
    assert [f["path"] for f in doc["files"]] == sorted(e.path for e in entries)


def test_encode_tree_canonical_bytes() -> None:
    entries = [FileEntry("b", "2" * 64, 2), FileEntry("a", "1" * 64, 1)]
    assert encode_tree(entries) == (
        b'{"files":[{"digest":"' + b"1" * 64 + b'","path":"a","size":1},'
        b'{"digest":"' + b"2" * 64 + b'","path":"b","size":2}],"type":"tree"}\n'
    )
    assert encode_tree([]) == b'{"files":[],"type":"tree"}\n'


def test_hash_path_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"model bytes")
    digest, size, entries = hash_path(path)
    assert digest == hashlib.sha256(b"model bytes").hexdigest()
    assert size == len(b"model bytes")
    assert entries == [FileEntry("m.onnx", digest, size)]


def test_hash_path_of_a_directory(tmp_path: Path) -> None:
    files = {"b/x": b"xx", "a": b"a", "c": b""}
    root = _make(tmp_path / "d", files)
    seen: list[int] = []
    digest, size, entries = hash_path(root, seen.append)
    expected = [FileEntry(p, hashlib.sha256(files[p]).hexdigest(), len(files[p]))
                for p in sorted(files)]
    assert entries == expected
    assert size == 3 == sum(seen)
    assert digest == hashlib.sha256(encode_tree(expected)).hexdigest()
    # The digest depends on content and names, not on where the directory lives.
    other = _make(tmp_path / "elsewhere" / "copy", files)
    assert hash_path(other)[0] == digest
    (other / "a").write_bytes(b"A")
    assert hash_path(other)[0] != digest
