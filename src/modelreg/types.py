"""Plain result records returned by the library (frozen dataclasses, JSON-ready)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True)
class RegisterResult:
    """The outcome of ``register``: the version, and whether it is new."""

    version: VersionInfo
    created: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the version's JSON shape plus ``created``, ``events`` and ``hooks``."""
        data = self.version.to_dict()
        data["created"] = self.created
        data["events"] = self.events
        data["hooks"] = to_json_data(self.hooks)
        return data


@dataclass(frozen=True)
class ChangeResult:
    """The outcome of a lifecycle command: the resulting version state and what was recorded.

    ``changed`` is False when the command found nothing to do (already in that stage,
    already approved by that actor, alias already there).
    """

    version: VersionInfo
    changed: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the version's JSON shape plus ``changed``, ``events`` and ``hooks``."""
        data = self.version.to_dict()
        data["changed"] = self.changed
        data["events"] = self.events
        data["hooks"] = to_json_data(self.hooks)
        return data


@dataclass(frozen=True)
class ModelSummary:
    """One line of ``list``."""

    name: str
    versions: int
    latest: int
    updated_at: str
    updated_by: str
    stages: dict[str, int]


@dataclass(frozen=True)
class VersionSummary:
    """One line of ``versions``."""

    name: str
    version: int
    created_at: str
    created_by: str
    stage: str
    aliases: list[str]
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape, with ``ref``."""
        data = {f.name: to_json_data(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data["ref"] = f"{self.name}@{self.version}"
        return data


@dataclass(frozen=True)
class PullResult:
    """Files written by ``pull``."""

    ref: str
    dest: str
    files: list[FileInfo]
    written: int
    unchanged: int


@dataclass(frozen=True)
class DiffResult:
    """What differs between two versions; only changed keys appear."""

    a: str
    b: str
    params: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    lineage: dict[str, dict[str, Any]]
    meta: dict[str, dict[str, Any]]
    files: dict[str, list[dict[str, Any]]]

    @property
    def same(self) -> bool:
        """True when nothing differs."""
        return not (
            self.params or self.metrics or self.lineage or self.meta or any(self.files.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape, with ``same``."""
        data = {f.name: to_json_data(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data["same"] = self.same
        return data


@dataclass(frozen=True)
class Problem:
    """One thing fsck found: the path to look at and what is wrong with it."""

    path: str
    message: str


@dataclass(frozen=True)
class FsckReport:
    """The verdict of ``fsck``."""

    ok: bool
    problems: list[Problem]
    notes: list[Problem]
    objects: int
    models: int
    versions: int
    events: int


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    objects: list[str]
    tmp_files: list[str]
    locks: list[str]
    bytes_freed: int
