"""Streaming sha256 and object ids: storage/hashing.py."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.storage import hashing
from modelreg.storage.hashing import (
    ALGORITHM,
    CHUNK_SIZE,
    digest_bytes,
    digest_file,
    digest_stream,
    format_digest,
    is_object_id,
    parse_digest,
)

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HEX = "0123456789abcdef" * 4


def test_constants() -> None:
    assert ALGORITHM == "sha256"
    assert CHUNK_SIZE == 1 << 20


def test_digest_bytes_known_values() -> None:
    assert digest_bytes(b"") == EMPTY_SHA256
    assert digest_bytes(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 7]
)
def test_digest_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = bytes(i * 7 % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen: list[int] = []
    assert digest_file(path, seen.append) == (hashlib.sha256(data).hexdigest(), size)
    assert sum(seen) == size
    assert all(0 < n <= CHUNK_SIZE for n in seen)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_digest_file_matches_sha256sum(tmp_path: Path) -> None:
    path = tmp_path / "model weights.bin"
    path.write_bytes(bytes(range(256)) * 9000)
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    assert digest_file(path)[0] == out.stdout.split()[0]


def test_digest_file_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        digest_file(tmp_path / "nope")


class _ShortReads(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, like a pipe or socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@st.composite
def _chunk_and_data(draw: st.DrawFn) -> tuple[int, bytes]:
    """A small chunk size and data whose length sits on or near a multiple of it."""
    chunk = draw(st.integers(1, 64))
    multiple = draw(st.integers(0, 4))
    offset = draw(st.integers(-2, 2))
    size = max(0, multiple * chunk + offset)
    data = draw(st.binary(min_size=size, max_size=size))
    return chunk, data


@given(_chunk_and_data())
def test_digest_stream_equals_hashlib_around_chunk_boundaries(case: tuple[int, bytes]) -> None:
    chunk, data = case
    seen: list[int] = []
    with mock.patch.object(hashing, "CHUNK_SIZE", chunk):
        result = digest_stream(io.BytesIO(data), seen.append)
    assert result == (hashlib.sha256(data).hexdigest(), len(data))
    assert sum(seen) == len(data)
    assert all(0 < n <= chunk for n in seen)


@given(st.binary(max_size=5000), st.integers(1, 300))
def test_digest_stream_with_short_reads(data: bytes, step: int) -> None:
    with mock.patch.object(hashing, "CHUNK_SIZE", 256):
        assert digest_stream(_ShortReads(data, step)) == (
            hashlib.sha256(data).hexdigest(),
            len(data),
        )


@given(st.binary(max_size=3 * 1024))
def test_digest_stream_default_chunk(data: bytes) -> None:
    assert digest_stream(io.BytesIO(data))[0] == hashlib.sha256(data).hexdigest()


def test_digest_stream_reads_from_current_position() -> None:
    fh = io.BytesIO(b"headerpayload")
    fh.seek(6)
    assert digest_stream(fh) == (digest_bytes(b"payload"), 7)


# -- ids and their textual form -----------------------------------------------------------


@given(st.binary(max_size=64))
def test_format_and_parse_round_trip(data: bytes) -> None:
    hex_digest = hashlib.sha256(data).hexdigest()
    assert is_object_id(hex_digest)
    shown = format_digest(hex_digest)
    assert shown == f"sha256:{hex_digest}"
    assert parse_digest(shown) == hex_digest
    assert parse_digest(hex_digest) == hex_digest


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256:",
        HEX[:-1],
        HEX + "0",
        HEX.upper(),
        "g" + HEX[1:],
        " " + HEX,
        HEX + " ",
        "md5:" + HEX,
        "SHA256:" + HEX,
        "sha256:" + HEX.upper(),
        "sha256:sha256:" + HEX,
        "sha256 " + HEX,
        "sha512:" + HEX,
        "../" + HEX[3:],
    ],
)
def test_parse_digest_rejects(value: str) -> None:
    assert parse_digest(value) is None
    assert not is_object_id(value)


@pytest.mark.parametrize("value", [HEX + "\n", "sha256:" + HEX + "\n", HEX + "\r\n"])
def test_trailing_newline_is_not_an_object_id(value: str) -> None:
    # Regression: a pattern ending in '$' also matches before a trailing newline.
    assert not is_object_id(value)
    assert parse_digest(value) is None


@given(st.text(max_size=80))
def test_is_object_id_only_accepts_64_lowercase_hex(value: str) -> None:
    expected = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    assert is_object_id(value) == expected
    assert (parse_digest(value) == value) == expected


@given(st.integers(min_value=0, max_value=3 * hashing.SMALL_DIGEST), st.binary(max_size=64))
def test_digest_bytes_is_sha256_on_both_sides_of_the_small_threshold(size: int,
                                                                     seed: bytes) -> None:
    # Small inputs use the interpreter's built-in sha256, larger ones OpenSSL: same digest.
    data = (seed or b"\0") * (size // max(1, len(seed)) + 1)
    data = data[:size]
    assert digest_bytes(data) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [hashing.SMALL_DIGEST, hashing.SMALL_DIGEST + 1])
def test_digest_bytes_without_the_built_in_sha256(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    with mock.patch.object(hashing, "_builtin_sha256", None):
        assert digest_bytes(data[:size]) == hashlib.sha256(data[:size]).hexdigest()


def test_reading_small_objects_does_not_load_openssl(tmp_path: Path) -> None:
    # hashlib loads OpenSSL (about 3 ms of start-up); verifying small objects needs none.
    probe = (
        "import sys; from modelreg.storage.objects import ObjectStore; "
        "from pathlib import Path; "
        f"s = ObjectStore(Path({str(tmp_path / 'o')!r}), Path({str(tmp_path / 't')!r})); "
        "oid = s.put_bytes(b'x' * 1000); assert s.get_bytes(oid) == b'x' * 1000; "
        "print('hashlib' in sys.modules, '_hashlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]
