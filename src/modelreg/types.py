"""Plain records that describe versions (frozen dataclasses, JSON-ready).

This module holds what describes a version (``show``'s answer, the manifest's parts, its
approvals and check results) and its history (``EventRecord``); what operations report
about their work (``RegisterResult``, ``FsckReport``, …) lives in :mod:`modelreg.results`,
which builds on this one. Each frozen dataclass costs about half a millisecond to create at
import, so ``modelreg show`` loads only the ones it returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modelreg.signatures.model import Signature

__all__ = [
    "Approval",
    "Artifact",
    "CheckRecord",
    "DataRef",
    "EventRecord",
    "FileInfo",
    "GitInfo",
    "Lineage",
    "Progress",
    "RunInfo",
    "VersionInfo",
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
class Approval:
    """One person's approval of a version for a stage."""

    actor: str
    time: str
    stage: str | None = None
    comment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the stored and JSON form (``stage`` and ``comment`` only when set)."""
        doc: dict[str, Any] = {"actor": self.actor, "time": self.time}
        if self.stage is not None:
            doc["stage"] = self.stage
        if self.comment:
            doc["comment"] = self.comment
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Approval:
        """Build an approval from its stored form."""
        stage, comment = doc.get("stage"), doc.get("comment")
        return cls(actor=str(doc["actor"]), time=str(doc["time"]),
                   stage=None if stage is None else str(stage),
                   comment=None if comment is None else str(comment))


@dataclass(frozen=True)
class CheckRecord:
    """The latest recorded result of one named check (a CI gate such as ``latency``)."""

    passed: bool
    actor: str
    time: str
    value: Any = None
    details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the stored and JSON form (``value`` and ``details`` only when set)."""
        doc: dict[str, Any] = {"passed": self.passed, "actor": self.actor, "time": self.time}
        if self.value is not None:
            doc["value"] = self.value
        if self.details:
            doc["details"] = self.details
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CheckRecord:
        """Build a check result from its stored form."""
        details = doc.get("details")
        return cls(passed=bool(doc["passed"]), actor=str(doc["actor"]), time=str(doc["time"]),
                   value=doc.get("value"), details=None if details is None else str(details))


@dataclass(frozen=True)
class EventRecord:
    """One event of a model's history, as users, scripts and hooks see it."""

    model: str
    seq: int
    id: str
    prev: str | None
    time: str
    actor: str
    action: str
    version: int | None
    from_stage: str | None
    to_stage: str | None
    reason: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of ``modelreg events --json`` (``from``/``to`` keys)."""
        return {
            "model": self.model,
            "seq": self.seq,
            "id": self.id,
            "prev": self.prev,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "version": self.version,
            "from": self.from_stage,
            "to": self.to_stage,
            "reason": self.reason,
            "details": dict(self.details),
        }


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
    approvals: list[Approval] = field(default_factory=list)
    checks: dict[str, CheckRecord] = field(default_factory=dict)
    signature: Signature | None = None
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
