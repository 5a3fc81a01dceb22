"""Bundles: one self-describing zip that carries a version out of a registry and into another.

:func:`export_bundle` writes a version's files, its manifest (verbatim), its signature, pinned
requirements and a standalone ``predict.py`` into one zip, atomically. :func:`import_bundle`
refuses entries that could escape the directory they are extracted into, verifies every
byte against the bundle's index and the manifest, and registers the version with its lineage.
docs/bundles.md describes the layout and the threat model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from modelreg.errors import (
    ConflictError,
    IntegrityError,
    ModelError,
    NotFound,
    UnsupportedFormat,
    UsageError,
)
from modelreg.packaging import onnxfile
from modelreg.registry.core import Registry
from modelreg.registry.lineage import check_tags
from modelreg.registry.manifest import Manifest, decode_manifest
from modelreg.registry.names import check_model_name
from modelreg.registry.state import now_iso
from modelreg.results import RegisterResult
from modelreg.storage.atomic import atomic_file, ensure_dir, tmp_name
from modelreg.storage.hashing import (
    CHUNK_SIZE,
    digest_bytes,
    digest_file,
    format_digest,
    parse_digest,
)
from modelreg.storage.tree import (
    FileEntry,
    check_relpath,
    check_user_path,
    collect,
    encode_tree,
)
from modelreg.types import FileInfo, VersionInfo

__all__ = ["BUNDLE_FORMAT", "BundleResult", "export_bundle", "import_bundle", "predict_script"]


def predict_script() -> str:
    """The standalone predict.py shipped in every bundle (kept as package data, not code)."""
    from importlib.resources import files

    template = files("modelreg.packaging").joinpath("templates/bundle_predict.py.txt")
    return template.read_text("utf-8")

BUNDLE_FORMAT = 1
INDEX, MANIFEST, SIGNATURE = "modelreg-bundle.json", "manifest.toml", "signature.json"
REQUIREMENTS, ENTRY_POINT = "requirements.txt", "predict.py"
MODEL_DIR, EXAMPLE_DIR = "model/", "example/"
SOURCE_TAG = "bundle.source"
SOURCE_DERIVED_TAG = "bundle.derived_from"
_SLACK = 1 << 20  # the zip-bomb cap is twice the recorded file sizes plus this
_META_LIMIT = 16 << 20  # the index, manifest and signature are read whole, up to this size
_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


@dataclass(frozen=True)
class BundleResult:
    """What :func:`export_bundle` wrote: the file, its sha256 and size, and the version.

    ``runnable`` tells whether ``predict.py`` can run the bundle (it holds an ONNX file).
    """

    path: str
    ref: str
    manifest: str
    digest: str
    size: int
    files: list[FileInfo]
    runnable: bool


def _member(name: str, mode: int = 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    return info


def _requirements() -> bytes:
    lines = ["# What predict.py needs, pinned to the versions that exported this bundle.\n"]
    for dist in ("onnxruntime", "numpy"):
        try:
            lines.append(f"{dist}=={importlib.metadata.version(dist)}\n")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{dist}\n")
    return "".join(lines).encode()


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _check_version_data(reg: Registry, info: VersionInfo) -> None:
    """Refuse to carry a version whose ONNX model names external data outside it.

    Raises:
        ModelError: An ONNX file's external data location is not a file of the version.
    """
    sizes = {f.path: f.size for f in info.artifact.files}
    for f in info.artifact.files:
        if f.path.lower().endswith(".onnx"):
            try:
                model = onnxfile.parse_model(reg.objects.get_bytes(parse_digest(f.digest)
                                                                   or f.digest))
            except ModelError:
                continue  # not a model: nothing can load data through it
            onnxfile.resolve_external_data(model, f.path, sizes, f"{info.ref} {f.path}")


def export_bundle(reg: Registry, ref: str, dest: Path, *, force: bool = False) -> BundleResult:
    """Write one version as a self-describing zip (docs/bundles.md lists its entries).

    The zip goes to a temporary file next to ``dest``, is fsynced and renamed into place, so
    ``dest`` never holds a partial bundle. Model files are streamed from the object store and
    verified against their digests on the way.

    Args:
        reg: The registry holding the version.
        ref: The version to export (``NAME``, ``NAME@3``, ``NAME@production`` ...).
        dest: The bundle file to write.
        force: Replace ``dest`` if it exists.

    Returns:
        What was written.

    Raises:
        NotFound: The version does not exist.
        ConflictError: ``dest`` exists and ``force`` is off, or is a directory.
        IntegrityError: A stored object does not match its digest (nothing is written).
        ModelError: An ONNX model of the version names external data outside it.
    """
    state, version, commit_oid = reg.resolve(ref)
    info = reg.describe(state, version, commit_oid)
    _check_version_data(reg, info)
    # The manifest's TOML text as registered (its sha256 is info.manifest).
    manifest_bytes = reg.manifest_text(commit_oid)
    if dest.is_dir():
        raise ConflictError(f"{dest} is a directory; give the bundle's file name (FILE.zip)")
    if (dest.exists() or dest.is_symlink()) and not force:
        raise ConflictError(f"{dest} already exists; use --force to overwrite it")
    index = {
        "format": BUNDLE_FORMAT, "name": info.name, "version": info.version, "ref": info.ref,
        "manifest": info.manifest,
        "files": [asdict(f) for f in info.artifact.files],
        "created_by": info.created_by, "created_at": info.created_at,
        "exported_at": now_iso(), "entry_point": ENTRY_POINT,
        "description": info.description, "tags": info.tags,
        "example": None if info.example is None else asdict(info.example),
    }
    members = [(MODEL_DIR + check_relpath(f.path), f) for f in info.artifact.files]
    if info.example is not None:
        members.append((EXAMPLE_DIR + check_relpath(info.example.path), info.example))
    with atomic_file(dest, dest.parent, replace=force) as fh:
        inode = os.fstat(fh.fileno()).st_ino
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_member(INDEX), _json_bytes(index))
            zf.writestr(_member(MANIFEST), manifest_bytes)
            if info.signature is not None:
                zf.writestr(_member(SIGNATURE), _json_bytes(info.signature.to_dict()))
            zf.writestr(_member(REQUIREMENTS), _requirements())
            zf.writestr(_member(ENTRY_POINT, 0o755), predict_script().encode())
            for name, f in members:
                entry = _member(name)
                entry.file_size = f.size  # lets zipfile choose ZIP64 up front for large files
                with zf.open(entry, "w") as out:
                    reg.objects.copy_to(parse_digest(f.digest) or f.digest, cast(BinaryIO, out))
    if dest.stat().st_ino != inode:  # someone else created dest meanwhile, and it was kept
        raise ConflictError(f"{dest} was created by someone else during the export; "
                            "use --force to overwrite it")
    digest, size = digest_file(dest)
    return BundleResult(str(dest), info.ref, info.manifest, format_digest(digest), size,
                        info.artifact.files,
                        any(f.path.lower().endswith(".onnx") for f in info.artifact.files))


# -- import --------------------------------------------------------------------------------


def _refused(src: Path, what: str) -> IntegrityError:
    return IntegrityError(f"{src}: {what}; refused, nothing was imported", str(src))


class _Budget:
    """The running count of uncompressed bytes read, against the zip-bomb cap."""

    def __init__(self, src: Path, cap: int) -> None:
        self.src, self.cap, self.used = src, cap, 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise _refused(self.src, f"it holds more than {self.cap} bytes uncompressed "
                                     "(twice the recorded file sizes + 1 MiB): a zip bomb?")


@dataclass(frozen=True)
class _Index:
    """The fields of modelreg-bundle.json that import relies on."""

    name: str
    version: int
    manifest: str
    files: list[FileInfo]
    description: str | None
    tags: dict[str, str]
    example: FileInfo | None

    def recorded(self) -> list[FileInfo]:
        """Every file the bundle carries: the model files and the input example."""
        return self.files + ([] if self.example is None else [self.example])


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    raw = info.orig_filename
    parts = raw.removesuffix("/").split("/") if info.is_dir() else raw.split("/")
    if "\x00" in raw or "\\" in raw:
        return "has a NUL byte or a backslash in its name"
    if raw.startswith("/") or _DRIVE.match(raw):
        return "is an absolute path"
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component (it would escape the target directory)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return "is encrypted" if info.flag_bits & 0x1 else None


def _check_entries(src: Path, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Refuse any unsafe entry before anything is read; return the file entries by name."""
    members: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    for info in zf.infolist():
        problem = _entry_problem(info) or ("appears twice" if info.filename in seen else None)
        if problem is not None:
            raise _refused(src, f"entry {info.orig_filename!r} {problem}")
        seen.add(info.filename)
        if not info.is_dir():
            members[info.filename] = info
    return members


def _read_small(src: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    chunks, size = [], 0
    with zf.open(info) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            size += len(chunk)
            budget.take(len(chunk))
            if size > _META_LIMIT:
                raise _refused(src, f"entry {info.filename!r} is over {_META_LIMIT} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _parse_index(src: Path, data: bytes) -> _Index:
    try:
        doc = json.loads(data.decode("utf-8"))
        fmt = doc["format"]
        if type(fmt) is int and fmt != BUNDLE_FORMAT:
            raise UnsupportedFormat(f"{src}: bundle format {fmt} is not {BUNDLE_FORMAT}; a "
                                    "newer modelreg made it", str(src))
        files = [FileInfo(f["path"], f["digest"], f["size"]) for f in doc["files"]]
        ex = doc.get("example")
        index = _Index(doc["name"], doc["version"], doc["manifest"], files,
                       doc.get("description"), dict(doc.get("tags") or {}),
                       None if ex is None else FileInfo(ex["path"], ex["digest"], ex["size"]))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise _refused(src, f"{INDEX} is not a bundle index ({exc!r})") from exc
    except RecursionError as exc:
        raise _refused(src, f"{INDEX} is not a bundle index (it nests too deeply)") from exc
    ok = (type(fmt) is int and isinstance(index.name, str) and type(index.version) is int
          and isinstance(index.manifest, str) and isinstance(index.description, str | None)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in index.tags.items())
          and all(isinstance(f.path, str) and isinstance(f.digest, str)
                  and type(f.size) is int and f.size >= 0 for f in index.recorded()))
    if not ok:
        raise _refused(src, f"{INDEX} has a field of the wrong type")
    _check_index_values(src, index)
    return index


def _check_index_values(src: Path, index: _Index) -> None:
    """Check the index's values as the command line checks the same values.

    A bundle is input from outside the store: its name, tag keys and values, description and
    example name must be what ``register`` would accept from a user, or nothing is imported.
    """
    try:
        check_model_name(index.name)
        check_tags(index.tags)
        for f in index.recorded():
            check_user_path(f.path, "file")
        if index.example is not None and "/" in index.example.path:
            raise UsageError(f"input example {index.example.path!r} is not a plain file name")
        for text in (index.description, *index.tags.values()):
            if text is not None:
                check_user_path(text, "text")
    except UsageError as exc:
        raise _refused(src, f"{INDEX}: {exc.message}") from exc
    if index.version < 1:
        raise _refused(src, f"{INDEX}: version {index.version} is not a version number")


def _artifact_consistent(m: Manifest) -> bool:
    """Tell whether the manifest's artifact digest is the one its file list gives."""
    a = m.artifact
    if a.kind == "file":
        return len(a.files) == 1 and "/" not in a.files[0].path and a.files[0].digest == a.digest
    entries = [FileEntry(f.path, parse_digest(f.digest) or "", f.size) for f in a.files]
    return a.kind == "directory" and format_digest(digest_bytes(encode_tree(entries))) == a.digest


def _plan(src: Path, index: _Index, m: Manifest,
          members: dict[str, zipfile.ZipInfo]) -> dict[str, FileInfo]:
    """Check the index against the manifest and the zip's entries; return what to extract."""
    if (index.name, index.version) != (m.name, m.version):
        raise _refused(src, f"{INDEX} says {index.name}@{index.version}, the manifest says "
                            f"{m.name}@{m.version}")
    files = sorted(index.files, key=lambda f: f.path)
    if (files != sorted(m.artifact.files, key=lambda f: f.path) or index.example != m.example
            or not _artifact_consistent(m)):
        raise _refused(src, f"the files listed in {INDEX} and in the manifest disagree")
    paths = {f.path for f in files}
    for f in files:
        parts = f.path.split("/")
        check_relpath(f.path)
        if any("/".join(parts[:i]) in paths for i in range(1, len(parts))):
            raise _refused(src, f"{f.path!r} would lie below another file")
    wanted = {MODEL_DIR + f.path: f for f in files}
    if m.example is not None:
        check_relpath(m.example.path)
        wanted[EXAMPLE_DIR + m.example.path] = m.example
    unknown = sorted(set(members) - {INDEX, MANIFEST, SIGNATURE, REQUIREMENTS, ENTRY_POINT,
                                     *wanted})
    missing = sorted(set(wanted) - set(members))
    if unknown:
        raise _refused(src, f"entry {unknown[0]!r} is not listed in {INDEX}")
    if missing:
        raise _refused(src, f"entry {missing[0]!r} listed in {INDEX} is missing")
    return wanted


def _extract(src: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, want: FileInfo,
             target: Path, staging: Path, budget: _Budget) -> None:
    """Stream one entry to ``target`` (atomically), verifying its size and digest."""
    ensure_dir(target.parent)
    h, size = hashlib.sha256(), 0
    with zf.open(info) as fh, atomic_file(target, staging) as out:
        while chunk := fh.read(CHUNK_SIZE):
            size += len(chunk)
            budget.take(len(chunk))
            if size > want.size:
                raise _refused(src, f"entry {info.filename!r} is larger than the {want.size} "
                                    "bytes recorded for it")
            h.update(chunk)
            out.write(chunk)
        if size != want.size or format_digest(h.hexdigest()) != want.digest:
            raise _refused(src, f"entry {info.filename!r} does not match its recorded digest "
                                f"{want.digest} (the bundle was altered or damaged)")


def import_bundle(reg: Registry, src: Path, *, name: str | None = None,
                  actor: str) -> RegisterResult:
    """Verify a bundle and register its version in ``reg``, lineage and signature kept.

    Every entry name is checked before anything is read. The manifest must hash to the
    digest the index records, the index must agree with the manifest, and every file must
    hash to the digest both record. Files are extracted into a temporary directory inside
    the store's ``tmp/``, registered from there, and the directory is removed. The version's
    ``derived_from`` becomes ``sha256:<source manifest digest>`` (true in any registry), the
    tag ``bundle.source`` records ``NAME@N sha256:<manifest digest>``, and a ``derived_from``
    the source version had is kept in the tag ``bundle.derived_from``.

    Args:
        reg: The registry to import into.
        src: The bundle file.
        name: Register under this model name instead of the bundle's.
        actor: Who imports.

    Returns:
        The registered version (``created`` is False when an identical one existed).

    Raises:
        NotFound: ``src`` does not exist.
        IntegrityError: An entry is unsafe (absolute, ``..``, a link, a duplicate ...), a
            digest does not match, or the bundle exceeds the zip-bomb cap. Nothing is
            registered then.
        UnsupportedFormat: The bundle's format is newer than this modelreg.
        UsageError: ``name`` is not a valid model name.
        ModelError: An ONNX model in the bundle names external data outside it.
    """
    if name is not None:
        check_model_name(name)
    if not src.is_file():
        raise NotFound(f"bundle {src} does not exist")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _refused(src, f"it is not a readable zip file ({exc})") from exc
    with zf:
        members = _check_entries(src, zf)
        try:
            return _import(reg, src, zf, members, name, actor)
        except _READ_ERRORS as exc:
            raise _refused(src, f"an entry is damaged ({exc})") from exc


def _import(reg: Registry, src: Path, zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
            name: str | None, actor: str) -> RegisterResult:
    for required in (INDEX, MANIFEST):
        if required not in members:
            raise _refused(src, f"it has no {required} (not a modelreg bundle)")
    index = _parse_index(src, _read_small(src, zf, members[INDEX], _Budget(src, _META_LIMIT)))
    budget = _Budget(src, 2 * sum(f.size for f in index.recorded()) + _SLACK)
    declared = sum(i.file_size for i in members.values())
    if declared > budget.cap:
        raise _refused(src, f"its entries declare {declared} bytes uncompressed, more than "
                            f"the {budget.cap} allowed (twice the recorded file sizes + 1 MiB): "
                            "a zip bomb?")
    budget.take(members[INDEX].file_size)
    manifest_bytes = _read_small(src, zf, members[MANIFEST], budget)
    if format_digest(digest_bytes(manifest_bytes)) != index.manifest:
        raise _refused(src, f"{MANIFEST} does not match the manifest digest {index.manifest} "
                            f"recorded in {INDEX} (the bundle was altered or damaged)")
    m = decode_manifest(manifest_bytes, f"{src}:{MANIFEST}")
    wanted = _plan(src, index, m, members)
    if SIGNATURE in members:
        try:
            same = json.loads(_read_small(src, zf, members[SIGNATURE], budget)) == m.signature
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deeply
            same = False
        if not same:
            raise _refused(src, f"{SIGNATURE} differs from the signature in the manifest")
    staging = tmp_name(reg.scratch(), "bundle")
    staging.mkdir()
    try:
        for entry, want in wanted.items():
            _extract(src, zf, members[entry], want, staging / entry, staging, budget)
        model_dir = staging / MODEL_DIR
        found = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
        if found != {f.path for f in index.files}:
            raise _refused(src, "its file names collide on this file system (names that "
                                "differ only in case?)")
        paths = ([model_dir / m.artifact.files[0].path] if m.artifact.kind == "file"
                 else [model_dir])
        # The index and manifest agree with the files, but a model inside could still
        # name external data outside them; refuse that before anything is registered.
        onnxfile.check_external_files(((f.relpath, f.source) for f in collect(paths)[1]),
                                      f"bundle {src}:")
        # NAME@N names a version of the source registry, which in this one may be another
        # version or this very one; the source manifest's digest names it anywhere. The
        # source's own derived_from (a NAME@N of the source registry, too) is kept as a tag.
        lineage = replace(m.lineage, derived_from=index.manifest)
        tags = {**index.tags, SOURCE_TAG: f"{m.name}@{m.version} {index.manifest}"}
        if m.lineage.derived_from:
            tags[SOURCE_DERIVED_TAG] = m.lineage.derived_from
        from modelreg.registry import registering

        return registering.register(
            reg, name or m.name, paths, actor=actor, lineage=lineage, description=index.description,
            tags=tags,
            signature=m.signature,
            example=None if m.example is None else staging / EXAMPLE_DIR / m.example.path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
