"""Version manifests: the immutable, human-readable TOML record of one version.

A manifest is stored as an object, so its digest fixes every byte of it: name, version,
author, time, the artifact's files, and the lineage (params, metrics, run, git, data).
``cat`` on the object file shows it as written; docs/layout.md lists every field.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from typing import Any

from modelreg.errors import IntegrityError, UsageError
from modelreg.types import Artifact, DataRef, FileInfo, GitInfo, Lineage, RunInfo

__all__ = ["MANIFEST_FORMAT", "Manifest", "Outline", "decode_manifest", "decoded_form",
           "encode_manifest", "outline"]

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """The immutable part of a version."""

    name: str
    version: int
    created_at: str
    created_by: str
    description: str | None
    tags: dict[str, str]
    artifact: Artifact
    lineage: Lineage
    signature: dict[str, Any] | None = None
    example: FileInfo | None = None


def _sorted_tables(value: Any) -> Any:
    """Sort table keys at every depth, so equal manifests encode to equal bytes."""
    if isinstance(value, dict):
        return {k: _sorted_tables(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_tables(v) for v in value]
    return value


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def encode_manifest(m: Manifest) -> bytes:
    """Render a manifest as TOML with a fixed key order and a trailing newline.

    Args:
        m: The manifest.

    Returns:
        UTF-8 TOML bytes (absent optional fields are omitted: TOML has no null).

    Raises:
        UsageError: A text field holds characters that cannot be written as UTF-8.
    """
    lin = m.lineage
    lineage: dict[str, Any] = _drop_none(
        {"data_version": lin.data_version, "derived_from": lin.derived_from}
    )
    lineage["params"] = _sorted_tables(lin.params)
    lineage["metrics"] = _sorted_tables(lin.metrics)
    lineage["run"] = _drop_none({"id": lin.run.id, "name": lin.run.name})
    if lin.git is not None:
        lineage["git"] = _drop_none(
            {
                "commit": lin.git.commit,
                "branch": lin.git.branch,
                "dirty": lin.git.dirty,
                "remote": lin.git.remote,
            }
        )
    lineage["data"] = [{"path": d.path, "digest": d.digest, "size": d.size} for d in lin.data]
    if lin.export is not None:
        lineage["export"] = _sorted_tables(lin.export)
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": m.name,
        "version": m.version,
        "created_at": m.created_at,
        "created_by": m.created_by,
    }
    if m.description is not None:
        doc["description"] = m.description
    doc["tags"] = dict(sorted(m.tags.items()))
    doc["artifact"] = {
        "kind": m.artifact.kind,
        "digest": m.artifact.digest,
        "size": m.artifact.size,
        "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in m.artifact.files],
    }
    if m.signature is not None:
        doc["signature"] = _sorted_tables(m.signature)
    if m.example is not None:
        doc["example"] = {"path": m.example.path, "digest": m.example.digest,
                          "size": m.example.size}
    doc["lineage"] = lineage
    import tomli_w  # writing is rarer than reading: loaded when a manifest is made

    try:
        return tomli_w.dumps(doc).encode("utf-8")
    except UnicodeEncodeError as exc:
        # Text from the command line with bytes that are not UTF-8 (surrogate escapes).
        raise UsageError("the version's description, tags, lineage or signature hold text "
                         "that is not valid UTF-8; manifests record UTF-8 text only") from exc


_SCALARS = (str, int, float, bool)


def _plain_table(table: dict[Any, Any]) -> bool:
    """True when every key is a text and every value a scalar TOML gives back as it was."""
    for k, v in table.items():
        kind = type(v)
        if type(k) is not str or kind not in _SCALARS or (
                kind is float and not math.isfinite(v)) or (
                kind is int and not -(2**63) <= v < 2**63):  # TOML's integers are 64-bit
            return False
    return True


def _optional_text(*values: Any) -> bool:
    return all(v is None or type(v) is str for v in values)


def decoded_form(m: Manifest) -> Manifest | None:
    """What ``decode_manifest(encode_manifest(m))`` returns, made without the round trip.

    A register describes the version it made from its manifest as a reader will see it,
    and parsing the TOML just written costs more than the rest of describing it. Built here
    only where the result is plain to see: tags, params and metrics flat tables of texts,
    integers, finite floats and booleans, every other field of its declared type, no
    signature and no export record (nested tables, whose key order and types TOML may
    change, go the long way). ``tests/registry/test_manifest.py`` checks the two agree,
    ``repr`` for ``repr``, on generated manifests.

    Returns:
        The manifest as decoded, or None when it is not one of those.
    """
    lin = m.lineage
    git = lin.git
    if (m.signature is not None or lin.export is not None
            or not all(map(_plain_table, (m.tags, lin.params, lin.metrics)))
            or not all(type(v) is str for v in m.tags.values())
            or not _optional_text(m.description, lin.run.id, lin.run.name, lin.data_version,
                                  lin.derived_from)
            or (git is not None and (not _optional_text(git.commit, git.branch, git.remote)
                                     or type(git.dirty) is not bool))):
        return None
    files: list[FileInfo | DataRef] = [*m.artifact.files, *lin.data,
                                       *([m.example] if m.example is not None else [])]
    if not all(type(f.path) is str and type(f.digest) is str and type(f.size) is int
               for f in files) or not (type(m.artifact.size) is int
                                       and type(m.version) is int):
        return None
    return Manifest(
        name=m.name, version=m.version, created_at=m.created_at, created_by=m.created_by,
        description=m.description, tags=dict(sorted(m.tags.items())),
        artifact=Artifact(m.artifact.kind, m.artifact.digest, m.artifact.size,
                          [FileInfo(f.path, f.digest, f.size) for f in m.artifact.files]),
        lineage=Lineage(
            params=dict(sorted(lin.params.items())), metrics=dict(sorted(lin.metrics.items())),
            run=RunInfo(id=lin.run.id, name=lin.run.name),
            git=None if git is None else GitInfo(git.commit, git.branch, git.dirty, git.remote),
            data=[DataRef(d.path, d.digest, d.size) for d in lin.data],
            data_version=lin.data_version, derived_from=lin.derived_from, export=None),
        signature=None,
        example=None if m.example is None else FileInfo(m.example.path, m.example.digest,
                                                        m.example.size))


def decode_manifest(data: bytes, where: str) -> Manifest:
    """Parse manifest bytes read from the store.

    Args:
        data: The TOML bytes (already verified against their digest).
        where: The object's path, for error messages.

    Returns:
        The manifest.

    Raises:
        IntegrityError: The bytes are not a manifest this modelreg can read.
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
        if type(doc.get("format")) is not int or doc["format"] != MANIFEST_FORMAT:
            raise IntegrityError(
                f"{where}: manifest format {doc.get('format')!r} is not {MANIFEST_FORMAT}", where
            )
        art = doc["artifact"]
        lin = doc["lineage"]
        git = lin.get("git")
        run = lin.get("run", {})
        return Manifest(
            name=str(doc["name"]),
            version=int(doc["version"]),
            created_at=str(doc["created_at"]),
            created_by=str(doc["created_by"]),
            description=None if doc.get("description") is None else str(doc["description"]),
            tags={str(k): str(v) for k, v in doc.get("tags", {}).items()},
            artifact=Artifact(
                kind=str(art["kind"]),
                digest=str(art["digest"]),
                size=int(art["size"]),
                files=[FileInfo(str(f["path"]), str(f["digest"]), int(f["size"]))
                       for f in art["files"]],
            ),
            lineage=Lineage(
                params=dict(lin.get("params", {})),
                metrics=dict(lin.get("metrics", {})),
                run=RunInfo(id=run.get("id"), name=run.get("name")),
                git=None if git is None else GitInfo(
                    commit=git.get("commit"),
                    branch=git.get("branch"),
                    dirty=bool(git.get("dirty", False)),
                    remote=git.get("remote"),
                ),
                data=[DataRef(str(d["path"]), str(d["digest"]), int(d["size"]))
                      for d in lin.get("data", [])],
                data_version=lin.get("data_version"),
                derived_from=lin.get("derived_from"),
                export=None if lin.get("export") is None else dict(lin["export"]),
            ),
            signature=None if doc.get("signature") is None else dict(doc["signature"]),
            example=None if doc.get("example") is None else FileInfo(
                str(doc["example"]["path"]), str(doc["example"]["digest"]),
                int(doc["example"]["size"])),
        )
    except IntegrityError:
        raise
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError,
            AttributeError, RecursionError) as exc:
        raise IntegrityError(f"{where}: not a readable manifest ({exc})", where) from exc


@dataclass(frozen=True)
class Outline:
    """What ``fsck`` and ``gc`` need of a manifest: who it is and the objects it names."""

    name: str
    version: int
    objects: list[str]
    """The ``sha256:`` digests of its files, its tree (a directory) and its input example."""


# The tables of a manifest whose ``digest`` names an object of the store.
_NAMING = {"[artifact]": "artifact", "[[artifact.files]]": "file", "[example]": "example"}


def _string(value: str) -> str | None:
    if len(value) < 2 or not value.startswith('"') or not value.endswith('"'):
        return None
    try:
        # The escapes encode_manifest writes are JSON's; TOML also lets a tab stand as is.
        text = json.loads(value.replace("\t", "\\t"))
    except ValueError:
        return None
    return text if isinstance(text, str) else None


def outline(data: bytes) -> Outline | None:
    """Read a manifest's name, version and object digests without parsing it whole.

    A walk over every version (``fsck``, ``gc``) would spend most of its time in the TOML
    parser; this reads the lines :func:`encode_manifest` writes for those fields, in the
    tables where they mean objects. It answers None for a text not in that shape (the
    caller then parses it with :func:`decode_manifest`).

    Args:
        data: The manifest's TOML bytes (already verified against a digest).

    Returns:
        The outline, or None.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    named: list[str] = []
    section = ""
    for line in text.split("\n"):
        if line.startswith("["):
            section = _NAMING.get(line, "other")
            continue
        key, sep, value = line.partition(" = ")
        if not sep or section == "other":
            continue
        if section == "":
            if key in ("name", "version"):
                fields[key] = value
        elif key == "digest":
            digest = _string(value)
            if digest is None:
                return None
            if section != "artifact":
                named.append(digest)
            else:
                fields["digest"] = digest
        elif key == "kind" and section == "artifact":
            fields["kind"] = _string(value) or ""
    name = _string(fields.get("name", ""))
    version = fields.get("version", "")
    if name is None or not version.isdigit() or fields.get("kind") not in ("file", "directory"):
        return None
    if fields["kind"] == "directory":
        if "digest" not in fields:
            return None
        named.append(fields["digest"])
    return Outline(name, int(version), named)
