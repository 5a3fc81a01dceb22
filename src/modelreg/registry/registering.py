"""Registering a version: store the artifact's bytes, then commit the version and move the ref.

This module is imported only when a register runs, so read-only commands (``show``,
``list``) do not load it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelreg.errors import ConflictError, NotFound, PolicyDenied
from modelreg.registry.builder import StateBuilder
from modelreg.registry.core import Registry
from modelreg.registry.lifecycle import move
from modelreg.registry.lineage import check_lineage, check_tags, check_text
from modelreg.registry.manifest import Manifest, decoded_form, encode_manifest
from modelreg.registry.names import check_model_name
from modelreg.registry.state import THIS_COMMIT, Head, VersionEntry, now_iso
from modelreg.registry.transaction import mutate, version_after
from modelreg.results import RegisterResult
from modelreg.storage.hashing import digest_bytes, format_digest, parse_digest
from modelreg.storage.tree import (
    FileEntry,
    SourceFile,
    check_user_path,
    collect,
    encode_tree,
)
from modelreg.types import Artifact, FileInfo, Lineage, Progress, to_json_data

__all__ = ["fingerprint", "heal_blobs", "register", "store_artifact"]


def fingerprint(artifact_digest: str, description: str | None, tags: dict[str, str],
                lineage: Lineage, more: dict[str, Any] | None = None) -> str:
    """Digest what makes two registrations "the same": content and lineage, not time or actor.

    Args:
        artifact_digest: The artifact's ``sha256:`` digest.
        description: The version's description.
        tags: Its tags.
        lineage: Its lineage.
        more: Further content that makes versions differ (signature, input example).

    Returns:
        A sha256 hex digest.
    """
    doc = {
        "artifact": artifact_digest,
        "description": description,
        "tags": tags,
        "lineage": to_json_data(lineage),
        **(more or {}),
    }
    return digest_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def store_artifact(reg: Registry, kind: str, sources: list[SourceFile],
                   progress: Progress | None) -> tuple[Artifact, bool]:
    """Store the files of an artifact (no lock held) and describe it.

    Returns:
        The artifact, and whether one of its files was stored anew (absent before).
    """
    total = sum(s.source.stat().st_size for s in sources)
    if progress is not None:
        progress.start(total)
    entries = []
    new = False
    try:
        for s in sources:
            oid, size, created = reg.objects.store_file(
                s.source, progress.advance if progress is not None else None
            )
            entries.append(FileEntry(s.relpath, oid, size))
            new = new or created
    finally:
        if progress is not None:
            progress.finish()
    files = [FileInfo(e.path, format_digest(e.digest), e.size) for e in entries]
    size = sum(e.size for e in entries)
    if kind == "file":
        return Artifact("file", files[0].digest, size, files), new
    tree_oid = reg.objects.put_bytes(encode_tree(entries))
    return Artifact("directory", format_digest(tree_oid), size, files), new


def register(
    reg: Registry,
    name: str,
    paths: list[Path],
    *,
    actor: str,
    lineage: Lineage | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    force: bool = False,
    stage: str | None = None,
    reason: str | None = None,
    signature: dict[str, Any] | None = None,
    example: Path | None = None,
    progress: Progress | None = None,
) -> RegisterResult:
    """Register ``paths`` as the next version of ``name``.

    Artifact bytes are stored first (without any lock); the commit holding the manifest
    (and, one register in 64, a full index leaf) is then written and the model's ref, which
    holds the new state, moved in one compare-and-swap. A crash before that last step
    leaves only unreferenced objects, which ``gc`` removes.

    Args:
        reg: The registry.
        name: The model name.
        paths: Files or directories to store.
        actor: Who registers.
        lineage: Params, metrics, run, git, data.
        description: Free text.
        tags: String labels.
        force: Make a new version even if an identical one exists.
        stage: Move the new version on to this stage in the same step (the policy applies,
            the signature rule included).
        reason: Why, recorded with the stage transition.
        signature: The canonical signature (stored in the manifest).
        example: An input example file, stored with the version.
        progress: Receives byte counts while files are copied.

    Returns:
        The version and whether it was created (False: an identical one was returned).

    Raises:
        UsageError: The name or a path is refused.
        ConflictError: A model of the same name in another case exists, or the lock
            stayed held too long.
        PolicyDenied: ``stage`` may not be entered (nothing is registered then), or the store
            is owned by someone else and not listed as safe in the user config.
    """
    check_model_name(name)
    reg.check_owner()  # before any object is stored: someone else's store is not changed
    config = reg.config
    if stage is not None and stage not in config.stages:
        raise NotFound(f"no stage {stage!r} (stages: {', '.join(config.stages)})")
    lineage = lineage or Lineage()
    tags = dict(sorted((tags or {}).items()))
    # The library's own checks, so a caller other than the command line (a bundle's
    # index, Python code) cannot store what `--tag`, `--param` or `--metric` would refuse.
    check_tags(tags)
    check_lineage(lineage)
    if description is not None:
        check_text(description, "the description")
    if reason is not None:
        check_text(reason, "the reason")
    if example is not None:
        if not example.is_file():
            raise NotFound(f"input example {example} does not exist")
        check_user_path(example.name, "input example")
    # Every check on the user's input is done; only now are bytes stored.
    kind, sources = collect(paths)
    # The model as it is before any byte is stored: if a file of the artifact is then
    # stored anew, no version up to this one can be an identical registration (its files
    # would be stored, and reachable objects are never removed), so the duplicate check
    # looks only at versions committed since: the tail, not every index leaf (on S3, a
    # request per leaf). Where writers do not queue, the change is planned on this read.
    before = reg.current(name)
    artifact, new = store_artifact(reg, kind, sources, progress)
    known = before.state.latest.version if new and before and before.state.latest else 0
    example_info = None
    if example is not None:
        oid, size = reg.objects.put_file(example)
        example_info = FileInfo(example.name, format_digest(oid), size)
    more = {"signature": signature,
            "example": None if example_info is None else example_info.digest}
    fp = fingerprint(artifact.digest, description, tags, lineage,
                     {k: v for k, v in more.items() if v is not None})

    def plan(b: StateBuilder) -> tuple[int, bool]:
        if b.exists and b.name != name:
            raise ConflictError(
                f"model {b.name!r} already exists; names are unique ignoring case, "
                f"so register under {b.name!r}"
            )
        found = b.find_fingerprint(fp, after=known) if b.exists and not force else None
        if found is not None:
            v, e = found
            # A rerun of `register --stage` after a run that stopped short of the move
            # finishes it; a version already moved on stays put.
            if stage is not None and e.stage == config.initial:
                move(b, config, v, stage, actor=actor, time=now_iso(), reason=reason)
            return v, False
        version = 1 if b.latest is None else b.latest.version + 1
        when = now_iso()
        manifest = Manifest(name, version, when, actor, description, tags, artifact, lineage,
                            signature, example_info)
        text = encode_manifest(manifest)
        # The manifest rides in the register commit, whose id becomes the version's
        # manifest id (THIS_COMMIT until the commit is made).
        b.set_entry(version, VersionEntry(
            THIS_COMMIT, fp, when, actor, config.initial, artifact.digest, artifact.size,
            search={"m": dict(lineage.metrics), "p": dict(lineage.params), "t": dict(tags)}))
        b.latest = Head(version, THIS_COMMIT)
        b.stages[config.initial] = b.latest
        b.record(action="register", actor=actor, time=when, version=version,
                 to_stage=config.initial, extra={"manifest": format_digest(digest_bytes(text))},
                 manifest=text.decode("utf-8"), decoded=decoded_form(manifest))
        if stage is not None and stage != config.initial:
            # A refusal leaves nothing registered, so the message may not name the version
            # number it would have had as if it existed.
            try:
                move(b, config, version, stage, actor=actor, time=when, reason=reason,
                     subject=f"the new version of {name}")
            except PolicyDenied as exc:
                raise PolicyDenied(f"{name} was not registered: {exc.message}",
                                   exc.reasons) from exc
        return version, True

    outcome = mutate(reg, name, plan, start=before)
    version, created = outcome.value
    if created:
        heal_blobs(reg, artifact, sources)
    return RegisterResult(version_after(reg, outcome, version), created=created,
                          events=outcome.event_records(), hooks=outcome.hooks)


def heal_blobs(reg: Registry, artifact: Artifact, sources: list[SourceFile]) -> None:
    """Re-store any blob that vanished while the version was being committed.

    An existing object is reused, and its mtime refreshed so ``gc`` spares it; where the
    file system refuses that (an object owned by another user on a shared store), a
    concurrent ``gc`` could remove it in between. Checking after the commit, with the
    source files still at hand, closes that window.
    """
    by_path = {s.relpath: s.source for s in sources}
    healed = False
    for f in artifact.files:
        oid = parse_digest(f.digest)
        if oid is not None and not reg.objects.contains(oid):
            reg.objects.put_file(by_path[f.path])
            healed = True
    if healed:
        reg.objects.sync()  # the ref names it already: make its directory entry durable
