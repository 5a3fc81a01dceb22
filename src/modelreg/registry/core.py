"""The registry: models and versions over the object store and refs.

``Registry`` composes an ``ObjectStore`` and a ``RefStore`` (as dulwich's ``Repo`` does) and
implements register, resolve, show, list, versions, pull and diff. Every state change is one
compare-and-swap of the model's ref under its lock; see ``modelreg.registry.state``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from modelreg.errors import ConflictError, IntegrityError, NotFound, UsageError
from modelreg.registry.lineage import check_toml_value
from modelreg.registry.manifest import Manifest, decode_manifest, encode_manifest
from modelreg.registry.names import Ref, check_model_name, model_key, parse_ref
from modelreg.registry.state import (
    Commit,
    Event,
    Head,
    VersionEntry,
    bucket_of,
    decode_bucket,
    decode_commit,
    encode_bucket,
    encode_commit,
)
from modelreg.storage.hashing import digest_bytes, digest_file, format_digest, parse_digest
from modelreg.storage.layout import Layout, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore
from modelreg.storage.tree import FileEntry, check_relpath, collect, encode_tree
from modelreg.types import (
    Artifact,
    FileInfo,
    Lineage,
    ModelSummary,
    Progress,
    PullResult,
    RegisterResult,
    VersionInfo,
    VersionSummary,
    to_json_data,
)

__all__ = ["DEFAULT_STAGE", "Registry", "now_iso"]

DEFAULT_STAGE = "development"
MODELS_PREFIX = "models"


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def fingerprint(artifact_digest: str, description: str | None, tags: dict[str, str],
                lineage: Lineage) -> str:
    """Digest what makes two registrations "the same": content and lineage, not time or actor.

    Args:
        artifact_digest: The artifact's ``sha256:`` digest.
        description: The version's description.
        tags: Its tags.
        lineage: Its lineage.

    Returns:
        A sha256 hex digest.
    """
    doc = {
        "artifact": artifact_digest,
        "description": description,
        "tags": tags,
        "lineage": to_json_data(lineage),
    }
    return digest_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


class Registry:
    """One ``.modelreg`` store, opened."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.objects = ObjectStore(layout.objects, layout.tmp)
        self.refs = RefStore(layout.refs, layout.tmp)

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

    def load_commit(self, oid: str) -> Commit:
        """Read and verify a commit object."""
        return decode_commit(self.objects.get_bytes(oid), self._where(oid))

    def load_bucket(self, oid: str) -> dict[int, VersionEntry]:
        """Read and verify an index bucket object."""
        return decode_bucket(self.objects.get_bytes(oid), self._where(oid))

    def load_manifest(self, oid: str) -> Manifest:
        """Read and verify a manifest object."""
        return decode_manifest(self.objects.get_bytes(oid), self._where(oid))

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

    def _info(self, commit: Commit, version: int, manifest_oid: str,
              stage: str | None = None) -> VersionInfo:
        m = self.load_manifest(manifest_oid)
        if m.name != commit.model or m.version != version:
            raise IntegrityError(
                f"{self._where(manifest_oid)}: manifest says {m.name}@{m.version}, "
                f"index says {commit.model}@{version}",
                self._where(manifest_oid),
            )
        if stage is None:
            held = [s for s, h in commit.stages.items() if h.version == version]
            stage = held[0] if held else self._entry(commit, version).stage
        return VersionInfo(
            name=m.name,
            version=m.version,
            created_at=m.created_at,
            created_by=m.created_by,
            description=m.description,
            tags=m.tags,
            artifact=m.artifact,
            lineage=m.lineage,
            stage=stage,
            aliases=sorted(a for a, h in commit.aliases.items() if h.version == version),
            manifest=format_digest(manifest_oid),
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

    def history(self, name: str) -> list[Event]:
        """Return the events of model ``name``, newest first, by walking its commit chain."""
        found = self.head(name)
        if found is None:
            raise NotFound(f"model {name!r} not found")
        events = []
        oid: str | None = found[0]
        while oid is not None:
            c = self.load_commit(oid)
            events.append(c.event)
            oid = c.parent
        return events

    # -- register ------------------------------------------------------------------------

    def _store_artifact(self, paths: list[Path], progress: Progress | None) -> Artifact:
        kind, sources = collect(paths)
        total = sum(s.source.stat().st_size for s in sources)
        if progress is not None:
            progress.start(total)
        entries = []
        try:
            for s in sources:
                oid, size = self.objects.put_file(
                    s.source, progress.advance if progress is not None else None
                )
                entries.append(FileEntry(s.relpath, oid, size))
        finally:
            if progress is not None:
                progress.finish()
        files = [FileInfo(e.path, format_digest(e.digest), e.size) for e in entries]
        size = sum(e.size for e in entries)
        if kind == "file":
            return Artifact("file", files[0].digest, size, files)
        tree_oid = self.objects.put_bytes(encode_tree(entries))
        return Artifact("directory", format_digest(tree_oid), size, files)

    def register(
        self,
        name: str,
        paths: list[Path],
        *,
        actor: str,
        lineage: Lineage | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> RegisterResult:
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
            progress: Receives byte counts while files are copied.

        Returns:
            The version and whether it was created (False: an identical one was returned).

        Raises:
            UsageError: The name or a path is refused.
            ConflictError: A model of the same name in another case exists, or the lock
                stayed held too long.
        """
        check_model_name(name)
        lineage = lineage or Lineage()
        tags = dict(sorted((tags or {}).items()))
        check_toml_value(lineage.params, "params")
        check_toml_value(lineage.metrics, "metrics")
        artifact = self._store_artifact(paths, progress)
        fp = fingerprint(artifact.digest, description, tags, lineage)
        with self.refs.transaction(self._ref_name(name)) as txn:
            parent = None if txn.old is None else self.load_commit(txn.old)
            if parent is not None and parent.model != name:
                raise ConflictError(
                    f"model {parent.model!r} already exists; names are unique ignoring case, "
                    f"so register under {parent.model!r}"
                )
            if parent is not None and not force:
                for v, e in self.iter_entries(parent):
                    if e.fingerprint == fp:
                        return RegisterResult(self._info(parent, v, e.manifest), created=False)
            version = 1 if parent is None else parent.latest.version + 1
            when = now_iso()
            manifest = Manifest(name, version, when, actor, description, tags, artifact, lineage)
            manifest_oid = self.objects.put_bytes(encode_manifest(manifest))
            entry = VersionEntry(manifest_oid, fp, when, actor, DEFAULT_STAGE,
                                 artifact.digest, artifact.size)
            b = bucket_of(version)
            bucket: dict[int, VersionEntry] = {}
            if parent is not None and b in parent.index:
                bucket = self.load_bucket(parent.index[b])
            bucket[version] = entry
            index = dict(parent.index) if parent is not None else {}
            index[b] = self.objects.put_bytes(encode_bucket(bucket))
            head = Head(version, manifest_oid)
            stages = dict(parent.stages) if parent is not None else {}
            stages[DEFAULT_STAGE] = head
            event = Event(
                seq=1 if parent is None else parent.seq + 1,
                time=when,
                actor=actor,
                action="register",
                version=version,
                to_stage=DEFAULT_STAGE,
                extra={"manifest": format_digest(manifest_oid)},
            )
            commit = Commit(
                model=name,
                parent=txn.old,
                event=event,
                latest=head,
                index=index,
                stages=stages,
                aliases=dict(parent.aliases) if parent is not None else {},
            )
            txn.commit(self.objects.put_bytes(encode_commit(commit)))
            return RegisterResult(self._info(commit, version, manifest_oid, DEFAULT_STAGE),
                                  created=True)

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
        info = self.show(ref)
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"{dest} exists and is not a directory")
        created_dest = not dest.exists()
        real_dest = dest.resolve()
        plan: list[tuple[FileInfo, Path, str]] = []
        unchanged = 0
        for f in info.artifact.files:
            target = dest / check_relpath(f.path)
            if target.is_symlink():
                raise ConflictError(f"{target} is a symlink; refusing to write through it")
            if not target.parent.resolve().is_relative_to(real_dest):
                raise ConflictError(f"{target} would be written outside {dest} (through a "
                                    "symlinked directory); refused")
            oid = parse_digest(f.digest)
            if oid is None:
                raise IntegrityError(f"{info.manifest}: bad digest {f.digest!r} for {f.path}")
            if target.exists():
                if not target.is_file():
                    raise ConflictError(f"{target} exists and is not a file")
                if digest_file(target)[0] == oid:
                    unchanged += 1
                    continue
                if not force:
                    raise ConflictError(
                        f"{target} exists with different content; use --force to overwrite"
                    )
            plan.append((f, target, oid))
        dest.mkdir(parents=True, exist_ok=True)
        staging = dest / f".modelreg-pull-{secrets.token_hex(6)}"
        if progress is not None:
            progress.start(sum(f.size for f, _, _ in plan))
        try:
            staging.mkdir()
            staged = []
            for i, (_f, target, oid) in enumerate(plan):
                tmp = staging / str(i)
                with open(tmp, "xb") as fh:
                    self.objects.copy_to(
                        oid, fh, progress.advance if progress is not None else None
                    )
                    fh.flush()
                    os.fsync(fh.fileno())
                staged.append((tmp, target))
            for tmp, target in staged:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created_dest:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            if progress is not None:
                progress.finish()
        with contextlib.suppress(OSError):
            staging.rmdir()
        return PullResult(ref=info.ref, dest=str(dest), files=info.artifact.files,
                          written=len(plan), unchanged=unchanged)

    # -- helpers for other modules ---------------------------------------------------------

    def model_names(self) -> list[str]:
        """Return the ref names of all models (``models/<key>``)."""
        return list(self.refs.names(MODELS_PREFIX))
