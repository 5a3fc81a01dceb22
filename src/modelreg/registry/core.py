"""The registry: one opened store, composed of its object store, refs and policy, and read.

``Registry`` composes an ``ObjectStore``, a ``RefStore``, the store's configuration and a
cache of decoded objects (:class:`~modelreg.registry.decoded.DecodedObjects`), as dulwich's
``Repo`` composes its stores, and answers the reading questions: resolve a reference, show a
version, list models and versions. It changes nothing. Changes are verbs
(``modelreg.registry.registering``, ``modelreg.registry.operations``,
``modelreg.registry.pulling``) that run as transactions (``modelreg.registry.transaction``):
one compare-and-swap of the model's ref under its lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import IntegrityError, NotFound

if TYPE_CHECKING:
    from modelreg.registry.policy import StoreConfig
    from modelreg.results import ModelSummary, VersionSummary
    from modelreg.signatures.model import Signature
from modelreg.registry.decoded import DecodedObjects
from modelreg.registry.manifest import Manifest, decode_manifest
from modelreg.registry.names import Ref, model_key, parse_ref
from modelreg.registry.state import (
    Commit,
    VersionEntry,
    bucket_of,
    decode_bucket,
    decode_commit,
    labelled,
    no_such_version,
)
from modelreg.storage.hashing import format_digest
from modelreg.storage.layout import Layout, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore
from modelreg.types import VersionInfo

__all__ = ["MODELS_PREFIX", "Registry"]


def _parse_signature(doc: dict[str, Any]) -> Signature:
    # Loaded only for a version that has a signature.
    from modelreg.signatures.model import parse_signature

    return parse_signature(doc)

MODELS_PREFIX = "models"


class Registry:
    """One ``.modelreg`` store, opened."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.objects = ObjectStore(layout.objects, layout.tmp)
        self.refs = RefStore(layout.refs, layout.tmp)
        self.decoded = DecodedObjects(self.objects)

    @cached_property
    def config(self) -> StoreConfig:
        """The store's policy and hooks, read once from ``config.toml``."""
        from modelreg.registry.policy import load_config

        return load_config(self.layout.config_file)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Registry:
        """Open the store at ``path``, ``$MODELREG_DIR``, or above the current directory.

        Args:
            path: The project directory or its ``.modelreg`` directory.

        Returns:
            The opened registry.
        """
        return cls(discover(path))

    @classmethod
    def init(cls, directory: str | os.PathLike[str] = ".") -> tuple[Registry, bool]:
        """Create (or reopen) the store in ``directory``.

        Args:
            directory: Where ``.modelreg`` goes.

        Returns:
            The registry and whether it was newly created.
        """
        layout, created = init(Path(directory))
        return cls(layout), created

    # -- reading state -------------------------------------------------------------------

    @staticmethod
    def ref_name(name: str) -> str:
        """The name of model ``name``'s ref (``models/<key>``)."""
        return f"{MODELS_PREFIX}/{model_key(name)}"

    def where(self, oid: str) -> str:
        """The path of object ``oid``, for messages."""
        return str(self.objects.path(oid))

    def load_commit(self, oid: str) -> Commit:
        """Read and verify a commit object."""
        return self.decoded.get(oid, decode_commit)

    def load_bucket(self, oid: str) -> dict[int, VersionEntry]:
        """Read and verify an index bucket object (a copy the caller may change)."""
        return dict(self.decoded.get(oid, decode_bucket))

    def load_manifest(self, oid: str) -> Manifest:
        """Read and verify a manifest object."""
        return self.decoded.get(oid, decode_manifest)

    def head(self, name: str) -> tuple[str, Commit] | None:
        """Return the head commit of model ``name`` and its id, or None if it has none."""
        oid = self.refs.read(self.ref_name(name))
        return None if oid is None else (oid, self.load_commit(oid))

    def require_head(self, name: str) -> Commit:
        """Return the head commit of model ``name``.

        Raises:
            NotFound: The model does not exist.
        """
        found = self.head(name)
        if found is None:
            raise NotFound(f"model {name!r} not found")
        return found[1]

    def entry(self, commit: Commit, version: int,
              load_bucket: Callable[[str], dict[int, VersionEntry]] | None = None
              ) -> VersionEntry:
        """Return ``version``'s index entry in the state ``commit`` records.

        Args:
            commit: A commit of the model.
            version: The version number.
            load_bucket: How to read a bucket (default: from the store).

        Raises:
            NotFound: The model has no such version.
        """
        bucket = commit.index.get(bucket_of(version))
        entry = (load_bucket or self.load_bucket)(bucket).get(version) if bucket else None
        if entry is None:
            raise no_such_version(commit.model, version, commit.latest.version)
        return entry

    def resolve(self, ref: str | Ref) -> tuple[Commit, int, str]:
        """Resolve a reference to a version.

        Args:
            ref: ``NAME``, ``NAME@N``, ``NAME@vN``, ``NAME@latest`` or ``NAME@STAGE``.

        Returns:
            The model's head commit, the version number and its manifest id.

        Raises:
            UsageError: The reference is malformed.
            NotFound: The model, version or stage does not exist.
        """
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        commit = self.require_head(parsed.name)
        if parsed.version is not None:
            return commit, parsed.version, self.entry(commit, parsed.version).manifest
        if parsed.label is None:
            return commit, commit.latest.version, commit.latest.manifest
        head = labelled(commit.model, commit.stages, commit.aliases, parsed.label,
                        lambda: self.config.stages)
        return commit, head.version, head.manifest

    def describe(self, commit: Commit, version: int, manifest_oid: str, *,
                 manifest: Manifest | None = None, entry: VersionEntry | None = None
                 ) -> VersionInfo:
        """Describe ``version`` as ``commit`` records it (its manifest, entry and aliases).

        Args:
            commit: A commit of the model.
            version: The version number.
            manifest_oid: The id of the version's manifest.
            manifest: The manifest, if the caller holds it already.
            entry: The version's index entry, if the caller holds it already.

        Raises:
            IntegrityError: The manifest names another version.
        """
        m = self.load_manifest(manifest_oid) if manifest is None else manifest
        if m.name != commit.model or m.version != version:
            raise IntegrityError(
                f"{self.where(manifest_oid)}: manifest says {m.name}@{m.version}, "
                f"index says {commit.model}@{version}",
                self.where(manifest_oid),
            )
        if entry is None:
            entry = self.entry(commit, version)
        return VersionInfo(
            name=m.name,
            version=m.version,
            created_at=m.created_at,
            created_by=m.created_by,
            description=entry.meta.get("description", m.description),
            tags=dict(entry.meta.get("tags", m.tags)),
            artifact=m.artifact,
            lineage=m.lineage,
            stage=entry.stage,
            aliases=sorted(a for a, h in commit.aliases.items() if h.version == version),
            manifest=format_digest(manifest_oid),
            approvals=list(entry.approvals),
            checks=dict(entry.checks),
            signature=None if m.signature is None else _parse_signature(m.signature),
            example=m.example,
        )

    def show(self, ref: str | Ref) -> VersionInfo:
        """Describe one version.

        Args:
            ref: A version reference.

        Returns:
            The version's manifest, stage and aliases.
        """
        commit, version, manifest = self.resolve(ref)
        return self.describe(commit, version, manifest)

    def signature(self, ref: str | Ref) -> Signature:
        """Return the signature of the version ``ref`` names.

        Raises:
            NotFound: The version does not exist or has no signature.
        """
        info = self.show(ref)
        if info.signature is None:
            raise NotFound(f"{info.ref} has no signature (register it with --signature, "
                           "--infer-signature or an ONNX file)")
        return info.signature

    def list_models(self) -> list[ModelSummary]:
        """Summarise every model (one ref and one commit read per model)."""
        from modelreg.results import ModelSummary

        out = []
        for ref_name in self.refs.names(MODELS_PREFIX):
            oid = self.refs.read(ref_name)
            if oid is None:
                continue
            c = self.load_commit(oid)
            out.append(
                ModelSummary(
                    name=c.model,
                    versions=c.latest.version,
                    latest=c.latest.version,
                    updated_at=c.event.time,
                    updated_by=c.event.actor,
                    stages={s: h.version for s, h in sorted(c.stages.items())},
                )
            )
        return sorted(out, key=lambda m: m.name.lower())

    def iter_entries(self, commit: Commit) -> Iterator[tuple[int, VersionEntry]]:
        """Yield every ``(version, entry)`` of a model, oldest first."""
        for bucket_no in sorted(commit.index):
            yield from sorted(self.load_bucket(commit.index[bucket_no]).items())

    def versions(self, name: str) -> list[VersionSummary]:
        """List every version of model ``name``, oldest first."""
        from modelreg.results import VersionSummary

        commit = self.require_head(name)
        aliases: dict[int, list[str]] = {}
        for alias, h in sorted(commit.aliases.items()):
            aliases.setdefault(h.version, []).append(alias)
        return [
            VersionSummary(
                name=commit.model,
                version=v,
                created_at=e.created_at,
                created_by=e.created_by,
                stage=e.stage,
                aliases=aliases.get(v, []),
                digest=e.digest,
                size=e.size,
            )
            for v, e in self.iter_entries(commit)
        ]

    # -- helpers for other modules ---------------------------------------------------------

    def model_names(self) -> list[str]:
        """Return the ref names of all models (``models/<key>``)."""
        return list(self.refs.names(MODELS_PREFIX))
