"""What the library's operations report about their work (frozen dataclasses, JSON-ready).

Loaded on first use: ``modelreg show`` needs none of these (see :mod:`modelreg.types`, the
records that describe a version, which these build on).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modelreg.types import EventRecord, FileInfo, VersionInfo, to_json_data

__all__ = [
    "ChangeResult",
    "DiffResult",
    "FsckReport",
    "GcReport",
    "HookResult",
    "ModelSummary",
    "Problem",
    "PullResult",
    "RegisterResult",
    "VersionSummary",
]


@dataclass(frozen=True)
class HookResult:
    """How one hook delivery went."""

    target: str
    when: str
    ok: bool
    attempts: int
    status: int | None
    detail: str


@dataclass(frozen=True)
class RegisterResult:
    """The outcome of ``register``: the version, and whether it is new."""

    version: VersionInfo
    created: bool
    events: list[EventRecord] = field(default_factory=list)
    hooks: list[HookResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the version's JSON shape plus ``created``, ``events`` and ``hooks``."""
        data = self.version.to_dict()
        data["created"] = self.created
        data["events"] = to_json_data(self.events)
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
    events: list[EventRecord] = field(default_factory=list)
    hooks: list[HookResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the version's JSON shape plus ``changed``, ``events`` and ``hooks``."""
        data = self.version.to_dict()
        data["changed"] = self.changed
        data["events"] = to_json_data(self.events)
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
