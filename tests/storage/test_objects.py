"""The object store: storage/objects.py (house rule 2)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from modelreg.errors import EXIT_INTEGRITY, IntegrityError, ObjectMissing
from modelreg.storage import copying as copying_module
from modelreg.storage.hashing import CHUNK_SIZE, is_object_id
from modelreg.storage.layout import Layout, init
from modelreg.storage.objects import OBJECT_MODE, ObjectStore

HEX = "0123456789abcdef" * 4


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return init(tmp_path / "project")[0]


@pytest.fixture
def store(layout: Layout) -> ObjectStore:
    return ObjectStore(layout.objects, layout.tmp)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _flip(path: Path, offset: int = 0) -> None:
    os.chmod(path, 0o644)  # objects are read-only
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, OBJECT_MODE)


# -- put -----------------------------------------------------------------------------------


def test_put_bytes_stores_in_the_flat_objects_directory(store: ObjectStore,
                                                        layout: Layout) -> None:
    data = b"weights of a tiny model"
    oid = store.put_bytes(data)
    assert oid == _sha(data)
    path = layout.root / "objects" / oid
    assert store.path(oid) == path
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == OBJECT_MODE == 0o444
    assert _sha(path.read_bytes()) == path.name
    assert store.contains(oid)
    assert list(layout.tmp.iterdir()) == []


def test_put_file_stores_and_reports_size(
    store: ObjectStore, layout: Layout, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    oid, size = store.put_file(src)
    assert (oid, size) == (_sha(data), len(data))
    path = layout.objects / oid
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert src.read_bytes() == data  # the source is copied, not moved
    assert list(layout.tmp.iterdir()) == []


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_objects_verify_by_hand_with_sha256sum(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(os.urandom(5000))
    oid, _ = store.put_file(src)
    store.put_bytes(b"another")
    for name, path in store.iter_objects():
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                             check=True)
        assert out.stdout.split()[0] == name


def test_put_empty_object(store: ObjectStore, tmp_path: Path) -> None:
    oid = store.put_bytes(b"")
    assert oid == _sha(b"")
    assert store.get_bytes(oid) == b""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert store.put_file(empty) == (oid, 0)


def test_same_content_is_stored_once(store: ObjectStore, layout: Layout, tmp_path: Path) -> None:
    data = b"same bytes"
    src = tmp_path / "src"
    src.write_bytes(data)
    ids = {store.put_bytes(data), store.put_bytes(data), store.put_file(src)[0],
           store.put_file(src)[0]}
    assert ids == {_sha(data)}
    assert _all_files(layout.objects) == [store.path(_sha(data))]
    assert [name for name, _ in store.iter_objects()] == [_sha(data)]
    assert list(layout.tmp.iterdir()) == []


@pytest.mark.parametrize("how", ["bytes", "file"])
def test_storing_again_refreshes_mtime_but_not_content(
    store: ObjectStore, tmp_path: Path, how: str
) -> None:
    data = b"keep me from gc"
    oid = store.put_bytes(data)
    path = store.path(oid)
    inode = path.stat().st_ino
    past = time.time() - 10 * 86400
    os.utime(path, (past, past))
    if how == "bytes":
        store.put_bytes(data)
    else:
        src = tmp_path / "src"
        src.write_bytes(data)
        store.put_file(src)
    assert path.stat().st_mtime > past + 86400
    assert path.stat().st_ino == inode  # not rewritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_put_file_larger_than_chunk_size(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE * 2 + CHUNK_SIZE // 2 + 3)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    seen: list[int] = []
    oid, size = store.put_file(src, seen.append)
    assert (oid, size) == (_sha(data), len(data))
    assert len(seen) == 3
    assert sum(seen) == len(data)
    assert store.path(oid).read_bytes() == data
    assert store.verify(oid)


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_put_file_streams_with_small_chunks(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(copying_module, "CHUNK_SIZE", chunk)
    data = os.urandom(4096 * 3 + 5)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    seen: list[int] = []
    oid, size = store.put_file(src, seen.append)
    assert (oid, size) == (_sha(data), len(data))
    assert all(0 < n <= chunk for n in seen)
    assert sum(seen) == len(data)
    assert store.get_bytes(oid) == data
    out = io.BytesIO()
    assert store.copy_to(oid, out) == len(data)
    assert out.getvalue() == data
    assert store.verify(oid)


def test_put_file_interrupted_leaves_nothing(
    store: ObjectStore, layout: Layout, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(CHUNK_SIZE + 10))

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put_file(src, interrupt)
    assert _all_files(layout.objects) == []
    assert list(layout.tmp.iterdir()) == []


def test_put_file_missing_source(store: ObjectStore, layout: Layout, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "nope")
    assert list(layout.tmp.iterdir()) == []
    assert _all_files(layout.objects) == []


# -- read and verify -----------------------------------------------------------------------


def test_get_bytes_round_trip(store: ObjectStore) -> None:
    oid = store.put_bytes(b"payload")
    assert store.get_bytes(oid) == b"payload"


def test_get_bytes_on_a_flipped_byte_raises_integrity_error(store: ObjectStore) -> None:
    oid = store.put_bytes(b"some important bytes")
    path = store.path(oid)
    _flip(path, 5)
    with pytest.raises(IntegrityError) as excinfo:
        store.get_bytes(oid)
    err = excinfo.value
    assert err.exit_code == EXIT_INTEGRITY == 6
    assert err.path == str(path)
    assert str(path) in str(err)
    assert oid in str(err)
    assert "corrupt" in str(err)


def test_get_bytes_missing_is_an_integrity_error(store: ObjectStore) -> None:
    # A referenced object that is gone means a damaged store: exit 6, like fsck.
    with pytest.raises(ObjectMissing) as excinfo:
        store.get_bytes(HEX)
    assert excinfo.value.exit_code == 6
    assert str(store.path(HEX)) in str(excinfo.value)


def test_copy_to_streams_intact_object(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 123)
    src = tmp_path / "f"
    src.write_bytes(data)
    oid, _ = store.put_file(src)
    out = io.BytesIO()
    seen: list[int] = []
    assert store.copy_to(oid, out, seen.append) == len(data)
    assert out.getvalue() == data
    assert sum(seen) == len(data)


def test_copy_to_raises_on_corruption(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 123)
    src = tmp_path / "f"
    src.write_bytes(data)
    oid, _ = store.put_file(src)
    path = store.path(oid)
    _flip(path, CHUNK_SIZE + 100)  # in the last chunk, after most bytes were copied
    with pytest.raises(IntegrityError) as excinfo:
        store.copy_to(oid, io.BytesIO())
    assert excinfo.value.exit_code == 6
    assert excinfo.value.path == str(path)
    assert str(path) in str(excinfo.value)


def test_copy_to_missing_is_an_integrity_error(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.copy_to(HEX, io.BytesIO())


def test_verify(store: ObjectStore) -> None:
    oid = store.put_bytes(b"check me")
    assert store.verify(oid) is True
    _flip(store.path(oid))
    assert store.verify(oid) is False
    assert store.verify(HEX) is False  # missing


def test_verify_truncated_object(store: ObjectStore) -> None:
    oid = store.put_bytes(b"0123456789")
    path = store.path(oid)
    os.chmod(path, 0o644)
    path.write_bytes(b"01234")
    assert store.verify(oid) is False
    with pytest.raises(IntegrityError):
        store.get_bytes(oid)


def test_corrupt_object_is_not_repaired_by_put(store: ObjectStore) -> None:
    # Storing the same content again must not hide the corruption from verify.
    oid = store.put_bytes(b"content")
    _flip(store.path(oid))
    assert store.put_bytes(b"content") == oid
    assert store.verify(oid) is False


# -- ids, listing, removal -----------------------------------------------------------------


@pytest.mark.parametrize(
    "oid", ["", "abc", HEX.upper(), HEX + "0", "../" + HEX[3:], "sha256:" + HEX, HEX[:-1] + "/"]
)
def test_malformed_ids_are_integrity_errors(store: ObjectStore, oid: str) -> None:
    with pytest.raises(IntegrityError) as excinfo:
        store.path(oid)
    assert excinfo.value.exit_code == 6
    for method in (store.contains, store.get_bytes, store.verify, store.remove):
        with pytest.raises(IntegrityError):
            method(oid)


def test_id_with_trailing_newline_is_malformed(store: ObjectStore) -> None:
    # Regression: '<64 hex>\n' once mapped to a file name ending in a newline.
    with pytest.raises(IntegrityError):
        store.path(HEX + "\n")


def test_iter_objects_lists_stored_ids(store: ObjectStore, tmp_path: Path) -> None:
    assert list(store.iter_objects()) == []
    ids = {store.put_bytes(f"object {i}".encode()) for i in range(20)}
    listed = list(store.iter_objects())
    assert {name for name, _ in listed} == ids
    assert [name for name, _ in listed] == sorted(ids)
    for name, path in listed:
        assert is_object_id(name)
        assert path == store.path(name)


def test_iter_objects_reports_strays(store: ObjectStore, layout: Layout) -> None:
    oid = store.put_bytes(b"x")
    (layout.objects / "stray.txt").write_bytes(b"?")
    names = [name for name, _ in store.iter_objects()]
    assert oid in names
    assert "stray.txt" in names


def test_iter_objects_without_directory(tmp_path: Path) -> None:
    assert list(ObjectStore(tmp_path / "none", tmp_path).iter_objects()) == []


def test_remove(store: ObjectStore) -> None:
    oid = store.put_bytes(b"garbage")
    store.remove(oid)
    assert not store.contains(oid)
    store.remove(oid)  # removing a missing object is fine
    assert store.put_bytes(b"garbage") == oid
    assert store.verify(oid)
