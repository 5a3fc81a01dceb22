"""Plain records returned by the library (frozen dataclasses, JSON-ready).

This module holds what describes a version (``show``'s answer and the manifest's parts);
what operations report about their work (``RegisterResult``, ``FsckReport``, …) lives in
:mod:`modelreg.results`, loaded on first use, and is importable from here too. Each frozen
dataclass costs about half a millisecond to create at import, so ``modelreg show`` makes
only the ones it returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modelreg.results import (
        ChangeResult,
        DiffResult,
        FsckReport,
        GcReport,
        ModelSummary,
        Problem,
        PullResult,
        RegisterResult,
        VersionSummary,
    )

__all__ = [
    "Artifact",
    "ChangeResult",
    "DataRef",
    "DiffResult",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "GitInfo",
    "Lineage",
    "ModelSummary",
    "Problem",
    "Progress",
    "PullResult",
    "RegisterResult",
    "RunInfo",
    "VersionInfo",
    "VersionSummary",
    "to_json_data",
]


class Progress(Protocol):
    """Receives byte counts while large files are hashed or copied (a progress bar)."""

    def start(self, total: int) -> None:
        """Announce how many bytes will pass."""

    def advance(self, n: int) -> None:
        """Report ``n`` more bytes done."""

    def finish(self) -> None:
        """Say the work is over."""


def to_json_data(obj: Any) -> Any:
    """Turn a result record (or a list of them) into JSON-ready data.

    Args:
        obj: A dataclass instance, list, dict or scalar.

    Returns:
        Dicts, lists and scalars only.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        if to_dict is not None:
            return to_dict()
        return {f.name: to_json_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_json_data(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json_data(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class FileInfo:
    """One stored file: its relative path, ``sha256:`` digest and size."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class Artifact:
    """What a version holds: one file or a directory tree."""

    kind: str
    digest: str
    size: int
    files: list[FileInfo]


@dataclass(frozen=True)
class GitInfo:
    """The code a version was made from."""

    commit: str | None
    branch: str | None
    dirty: bool
    remote: str | None


@dataclass(frozen=True)
class RunInfo:
    """The training run a version came from."""

    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class DataRef:
    """A training data file or directory, by digest."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class Lineage:
    """Everything that made a version."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    run: RunInfo = field(default_factory=RunInfo)
    git: GitInfo | None = None
    data: list[DataRef] = field(default_factory=list)
    data_version: str | None = None
    derived_from: str | None = None
    export: dict[str, Any] | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as ``show`` reports it."""

    name: str
    version: int
    created_at: str
    created_by: str
    description: str | None
    tags: dict[str, str]
    artifact: Artifact
    lineage: Lineage
    stage: str
    aliases: list[str]
    manifest: str
    approvals: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    example: FileInfo | None = None

    @property
    def ref(self) -> str:
        """The exact reference to this version, ``NAME@N``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape documented in docs/cli.md."""
        data: dict[str, Any] = {
            f.name: to_json_data(getattr(self, f.name)) for f in dataclasses.fields(self)
        }
        data["ref"] = self.ref
        return data


_RESULTS = frozenset(("ChangeResult", "DiffResult", "FsckReport", "GcReport", "ModelSummary",
                      "Problem", "PullResult", "RegisterResult", "VersionSummary"))


def __getattr__(name: str) -> Any:
    if name in _RESULTS:
        from modelreg import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
