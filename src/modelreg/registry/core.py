"""The registry: models and versions over the object store and refs.

``Registry`` composes an ``ObjectStore`` and a ``RefStore`` (as dulwich's ``Repo`` does) and
implements resolve, show, list and versions. ``Registry.register`` and ``Registry.pull`` are
thin methods: the register path (``fingerprint``, storing the artifact, healing blobs) lives in
``modelreg.registry.registering`` and the pull path in ``modelreg.registry.pulling``, each
imported only when called. Every state change is one compare-and-swap of the model's ref
under its lock; see ``modelreg.registry.state``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelreg.errors import ConflictError, IntegrityError, NotFound

if TYPE_CHECKING:
    from modelreg.registry.builder import StateBuilder
    from modelreg.registry.hooks import HookResult
    from modelreg.registry.lifecycle import SignatureGuard
    from modelreg.registry.policy import StoreConfig
    from modelreg.results import ModelSummary, PullResult, RegisterResult, VersionSummary
from modelreg.registry.manifest import Manifest, decode_manifest
from modelreg.registry.names import Ref, model_key, parse_ref
from modelreg.registry.state import Commit, VersionEntry, bucket_of, decode_bucket, decode_commit
from modelreg.storage.hashing import format_digest
from modelreg.storage.layout import Layout, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore
from modelreg.types import Lineage, Progress, VersionInfo

__all__ = ["Outcome", "Registry", "now_iso"]

MODELS_PREFIX = "models"
_CACHE_LIMIT = 4096
T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What a committed change produced: the plan's value, its events, hook results."""

    value: T
    builder: StateBuilder
    hooks: list[HookResult] = field(default_factory=list)

    def event_records(self) -> list[dict[str, Any]]:
        """The committed events in the shape of ``modelreg events --json``."""
        from modelreg.registry.events import event_record

        return [event_record(self.builder.name, oid, c) for oid, c in self.builder.commits]


def _verified_bytes(data: bytes, where: str) -> bytes:
    """The "decoder" under which the decode cache keeps an object's verified raw bytes."""
    return data


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Registry:
    """One ``.modelreg`` store, opened."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.objects = ObjectStore(layout.objects, layout.tmp)
        self.refs = RefStore(layout.refs, layout.tmp)
        self._cache: dict[tuple[str, Any], Any] = {}

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
    def _ref_name(name: str) -> str:
        return f"{MODELS_PREFIX}/{model_key(name)}"

    def _where(self, oid: str) -> str:
        return str(self.objects.path(oid))

    def _decoded(self, oid: str, decode: Callable[[bytes, str], T]) -> T:
        # Objects never change, so what was read, verified and decoded once in this
        # process can be reused (a register scans every bucket for duplicates).
        key = (oid, decode)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decode(self.objects.get_bytes(oid), self._where(oid))
        return self._cache[key]  # type: ignore[no-any-return]

    def remember(self, oid: str, decode: Callable[[bytes, str], T], data: bytes,
                 decoded: T | None = None) -> T:
        """Keep the decoded form of an object this process has just stored.

        Later loads of ``oid`` are served from memory, as if it had been read back.

        Args:
            oid: The object's id; the object must already be stored, with ``data`` as its
                content.
            decode: The decoder it is loaded with.
            data: Its bytes.
            decoded: ``decode(data)`` if the caller holds it already (a bucket it encoded);
                it must equal what ``decode`` returns, key order included.

        Returns:
            The decoded form.
        """
        key = (oid, decode)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decode(data, self._where(oid)) if decoded is None else decoded
        return self._cache[key]  # type: ignore[no-any-return]

    def clear_cache(self) -> None:
        """Forget decoded objects (fsck does, so that it reads every byte from disk)."""
        self._cache.clear()

    def load_commit(self, oid: str) -> Commit:
        """Read and verify a commit object."""
        return self._decoded(oid, decode_commit)

    def load_bucket(self, oid: str) -> dict[int, VersionEntry]:
        """Read and verify an index bucket object (a copy the caller may change)."""
        return dict(self._decoded(oid, decode_bucket))

    def bucket_may_hold(self, oid: str, needle: bytes) -> bool:
        """Tell whether index bucket ``oid`` may contain ``needle`` (canonical JSON bytes).

        A bucket decoded before may: the caller looks through it. Else its bytes are read
        and verified (once per process: the verified bytes are kept, so a loop of registers
        searches memory), and decoded only if they contain ``needle``.
        """
        if (oid, decode_bucket) in self._cache:
            return True
        data = self._decoded(oid, _verified_bytes)
        if needle not in data:
            return False
        self.remember(oid, decode_bucket, data)
        return True

    def load_manifest(self, oid: str) -> Manifest:
        """Read and verify a manifest object."""
        return self._decoded(oid, decode_manifest)

    def head(self, name: str) -> tuple[str, Commit] | None:
        """Return the head commit of model ``name`` and its id, or None if it has none."""
        oid = self.refs.read(self._ref_name(name))
        return None if oid is None else (oid, self.load_commit(oid))

    def _require_head(self, name: str) -> Commit:
        found = self.head(name)
        if found is None:
            raise NotFound(f"model {name!r} not found")
        return found[1]

    def _entry(self, commit: Commit, version: int) -> VersionEntry:
        bucket = commit.index.get(bucket_of(version))
        entry = self.load_bucket(bucket).get(version) if bucket else None
        if entry is None:
            raise NotFound(
                f"{commit.model} has no version {version} (latest is {commit.latest.version})"
            )
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
        commit = self._require_head(parsed.name)
        if parsed.version is not None:
            return commit, parsed.version, self._entry(commit, parsed.version).manifest
        if parsed.label is None:
            return commit, commit.latest.version, commit.latest.manifest
        label = parsed.label
        for table in (commit.stages, commit.aliases):
            if label in table:
                return commit, table[label].version, table[label].manifest
        raise NotFound(f"{commit.model} has no version in stage or alias {label!r}")

    def _info(self, commit: Commit, version: int, manifest_oid: str, *,
              manifest: Manifest | None = None, entry: VersionEntry | None = None
              ) -> VersionInfo:
        m = self.load_manifest(manifest_oid) if manifest is None else manifest
        if m.name != commit.model or m.version != version:
            raise IntegrityError(
                f"{self._where(manifest_oid)}: manifest says {m.name}@{m.version}, "
                f"index says {commit.model}@{version}",
                self._where(manifest_oid),
            )
        if entry is None:
            entry = self._entry(commit, version)
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
            approvals=[dict(a) for a in entry.approvals],
            checks={k: dict(v) for k, v in entry.checks.items()},
            signature=m.signature,
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
        return self._info(commit, version, manifest)

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

        commit = self._require_head(name)
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

    # -- register ------------------------------------------------------------------------

    def register(self, name: str, paths: list[Path], *, actor: str,
                 lineage: Lineage | None = None, description: str | None = None,
                 tags: dict[str, str] | None = None, force: bool = False,
                 stage: str | None = None, reason: str | None = None,
                 signature: dict[str, Any] | None = None, example: Path | None = None,
                 guard: SignatureGuard | None = None,
                 progress: Progress | None = None) -> RegisterResult:
        """Register ``paths`` as the next version of ``name``.

        Artifact bytes are stored first (without any lock); the manifest, index bucket and
        commit are then written and the model's ref moved in one compare-and-swap. A crash
        before that last step leaves only unreferenced objects, which ``gc`` removes.

        Args:
            name: The model name.
            paths: Files or directories to store.
            actor: Who registers.
            lineage: Params, metrics, run, git, data.
            description: Free text.
            tags: String labels.
            force: Make a new version even if an identical one exists.
            stage: Move the new version on to this stage in the same step (policy applies).
            reason: Why, recorded with the stage transition.
            signature: The canonical signature (stored in the manifest).
            example: An input example file, stored with the version.
            guard: The signature compatibility check for ``stage``.
            progress: Receives byte counts while files are copied.

        Returns:
            The version and whether it was created (False: an identical one was returned).

        Raises:
            UsageError: The name or a path is refused.
            ConflictError: A model of the same name in another case exists, or the lock
                stayed held too long.
            PolicyDenied: ``stage`` may not be entered (nothing is registered then).
        """
        from modelreg.registry import registering

        return registering.register(
            self, name, paths, actor=actor, lineage=lineage, description=description,
            tags=tags, force=force, stage=stage, reason=reason, signature=signature,
            example=example, guard=guard, progress=progress,
        )

    def version_after(self, outcome: Outcome[Any], version: int) -> VersionInfo:
        """Describe ``version`` as a committed change left it.

        The change's last commit is the state it committed, and its builder still holds the
        index buckets and manifests it wrote, so nothing is read again (later hook-delivery
        events do not change a version).
        """
        b = outcome.builder
        if not b.commits:
            commit = self._require_head(b.name)
            return self._info(commit, version, self._entry(commit, version).manifest)
        commit = b.commits[-1][1]
        bucket = commit.index.get(bucket_of(version))
        entry = b.load_bucket(bucket).get(version) if bucket else None
        if entry is None:
            raise NotFound(
                f"{commit.model} has no version {version} (latest is {commit.latest.version})"
            )
        return self._info(commit, version, entry.manifest, manifest=b.load_manifest(entry.manifest),
                          entry=entry)

    def mutate(self, name: str, plan: Callable[[StateBuilder], T]) -> Outcome[T]:
        """Apply ``plan`` to model ``name`` and commit the events it records, atomically.

        ``plan`` runs on a working copy of the model's state while the model's lock is held,
        so it sees the latest state and no one else changes it meanwhile. When config.toml
        has ``pre-`` hooks, ``plan`` first runs without the lock, the hooks are asked about
        its events, and the plan must record the same transitions again under the lock (else
        the state moved while the hook ran: exit 4). Post hooks run after the commit.

        Args:
            name: The model.
            plan: Records events on the builder and returns a value.

        Returns:
            The plan's value, the events committed and the hook results.
        """
        from modelreg.registry.builder import StateBuilder
        from modelreg.registry.events import run_hooks

        config = self.config
        ref_name = self._ref_name(name)
        planned: list[tuple[str, int | None, str | None, str | None]] | None = None
        if any(h.when == "pre" for h in config.hooks):
            found = self.head(name)
            b = StateBuilder(self, name, *(found or (None, None)))
            plan(b)
            if b.events:
                run_hooks(self, config, b, "pre")
            planned = b.signature()
        with self.refs.transaction(ref_name) as txn:
            head = None if txn.old is None else self.load_commit(txn.old)
            b = StateBuilder(self, name, txn.old, head)
            value = plan(b)
            if planned is not None and b.signature() != planned:
                raise ConflictError(
                    f"the state of {b.name} changed while a pre- hook ran; nothing was "
                    "changed, run the command again"
                )
            tip = b.flush()
            if tip is not None:
                txn.commit(tip)
        hooks = run_hooks(self, config, b, "post") if b.events else []
        return Outcome(value, b, hooks)

    # -- pull ----------------------------------------------------------------------------

    def pull(self, ref: str | Ref, dest: Path, *, force: bool = False,
             progress: Progress | None = None) -> PullResult:
        """Write a version's files under ``dest``, verifying every byte.

        Files are first written into a hidden staging directory inside ``dest`` and moved
        into place only after all of them verified, so a corrupt object leaves no file (and,
        if ``dest`` was created for the pull, no ``dest``).

        Args:
            ref: The version to fetch.
            dest: The directory to write into (created if missing).
            force: Overwrite existing files whose content differs.
            progress: Receives byte counts.

        Returns:
            What was written.

        Raises:
            ConflictError: A file at ``dest`` differs and ``force`` is off.
            IntegrityError: An object is corrupt, or the tree holds an unsafe path.
        """
        from modelreg.registry import pulling

        return pulling.pull(self, ref, dest, force=force, progress=progress)

    # -- helpers for other modules ---------------------------------------------------------

    def model_names(self) -> list[str]:
        """Return the ref names of all models (``models/<key>``)."""
        return list(self.refs.names(MODELS_PREFIX))
