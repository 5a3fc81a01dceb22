"""Comparing two versions: params, metrics, lineage, description/tags and files."""

from __future__ import annotations

from typing import Any

from modelreg.results import DiffResult
from modelreg.types import VersionInfo

__all__ = ["diff_versions", "flatten"]


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested tables into dotted keys (``optimizer.lr``).

    Args:
        value: A possibly nested mapping.
        prefix: Key prefix for the recursion.

    Returns:
        A flat mapping.
    """
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            out.update(flatten(item, f"{full}."))
        else:
            out[full] = item
    return out


def _changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if va != vb or type(va) is not type(vb):
            out[key] = {"a": va, "b": vb}
    return out


def _lineage_fields(v: VersionInfo) -> dict[str, Any]:
    lin = v.lineage
    fields: dict[str, Any] = {
        "run.id": lin.run.id,
        "run.name": lin.run.name,
        "data_version": lin.data_version,
        "derived_from": lin.derived_from,
        "git.commit": lin.git.commit if lin.git else None,
        "git.branch": lin.git.branch if lin.git else None,
        "git.dirty": lin.git.dirty if lin.git else None,
        "git.remote": lin.git.remote if lin.git else None,
    }
    for d in lin.data:
        fields[f"data[{d.path}]"] = d.digest
    return fields


def diff_versions(a: VersionInfo, b: VersionInfo) -> DiffResult:
    """Say what differs between two versions.

    Args:
        a: The first version.
        b: The second version.

    Returns:
        Only the keys that differ, each as ``{"a": …, "b": …}``; files as added, removed and
        changed lists.
    """
    meta_a = {"description": a.description, "artifact.kind": a.artifact.kind,
              "artifact.digest": a.artifact.digest,
              **{f"tags.{k}": v for k, v in a.tags.items()}}
    meta_b = {"description": b.description, "artifact.kind": b.artifact.kind,
              "artifact.digest": b.artifact.digest,
              **{f"tags.{k}": v for k, v in b.tags.items()}}
    files_a = {f.path: f for f in a.artifact.files}
    files_b = {f.path: f for f in b.artifact.files}
    added = [{"path": p, "digest": files_b[p].digest, "size": files_b[p].size}
             for p in sorted(set(files_b) - set(files_a))]
    removed = [{"path": p, "digest": files_a[p].digest, "size": files_a[p].size}
               for p in sorted(set(files_a) - set(files_b))]
    changed = [
        {"path": p, "a": {"digest": files_a[p].digest, "size": files_a[p].size},
         "b": {"digest": files_b[p].digest, "size": files_b[p].size}}
        for p in sorted(set(files_a) & set(files_b))
        if files_a[p].digest != files_b[p].digest
    ]
    return DiffResult(
        a=a.ref,
        b=b.ref,
        params=_changes(flatten(a.lineage.params), flatten(b.lineage.params)),
        metrics=_changes(flatten(a.lineage.metrics), flatten(b.lineage.metrics)),
        lineage=_changes(_lineage_fields(a), _lineage_fields(b)),
        meta=_changes(meta_a, meta_b),
        files={"added": added, "removed": removed, "changed": changed},
    )
