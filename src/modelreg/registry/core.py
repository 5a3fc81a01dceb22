"""The registry: one opened store, composed of its objects, refs and policy, and read.

``Registry`` composes an :class:`~modelreg.storage.backend.Objects` and a
:class:`~modelreg.storage.backend.Refs` (the file system's ``ObjectStore`` and ``RefStore``
for a ``.modelreg`` directory, or the memory backend), the store's configuration and a
cache of decoded objects (:class:`~modelreg.registry.decoded.DecodedObjects`), as dulwich's
``Repo`` composes its stores, and answers the reading questions: resolve a reference, show
a version, list models and versions. It changes nothing. Changes are verbs
(``modelreg.registry.registering``, ``modelreg.registry.operations``,
``modelreg.registry.pulling``) that run as transactions (``modelreg.registry.transaction``):
one compare-and-swap of the model's ref. What only a directory has (``config.toml``, the
ownership check, hooks, ``tmp/``) is reached through :attr:`Registry.layout`; a memory
store has none and runs on the default policy (or the one it was given).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import IntegrityError, NotFound, UsageError

if TYPE_CHECKING:
    from modelreg.registry.policy import StoreConfig
    from modelreg.results import ModelSummary, VersionSummary
    from modelreg.signatures.model import Signature
from modelreg.registry.decoded import DecodedObjects
from modelreg.registry.manifest import Manifest, decode_manifest
from modelreg.registry.names import Ref, model_key, parse_ref
from modelreg.registry.state import (
    Commit,
    ModelState,
    VersionEntry,
    decode_commit,
    decode_leaf,
    decode_ref,
    group_of,
    labelled,
    no_such_version,
)
from modelreg.storage.backend import Objects, Refs, Token
from modelreg.storage.hashing import digest_bytes, format_digest
from modelreg.storage.layout import ENV_DIR, Layout, check_owner, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore
from modelreg.types import VersionInfo

__all__ = ["MODELS_PREFIX", "Current", "Registry", "manifest_of"]


def _parse_signature(doc: dict[str, Any]) -> Signature:
    # Loaded only for a version that has a signature.
    from modelreg.signatures.model import parse_signature

    return parse_signature(doc)

MODELS_PREFIX = "models"
FORMAT_REF = "format"
"""On object storage, the ref holding the store's format version (on disk: the file)."""
CONFIG_REF = "config"
"""On object storage, the ref holding ``config.toml``."""
S3_SCHEME = "s3://"


def manifest_of(data: bytes, where: str) -> tuple[Manifest, str]:
    """Decode the manifest a register commit holds, and the manifest's own digest.

    The digest is the sha256 of the manifest's TOML text: what ``show`` reports as the
    version's manifest, and what a bundle's ``manifest.toml`` hashes to.

    Raises:
        IntegrityError: The bytes are not a commit that holds a manifest.
    """
    commit = decode_commit(data, where)
    if commit.manifest is None:
        raise IntegrityError(f"{where}: commit of event {commit.seq} ({commit.event.action}) "
                             "holds no manifest, but a version names it as its manifest", where)
    text = commit.manifest.encode("utf-8")
    return decode_manifest(text, where), digest_bytes(text)


@dataclass(frozen=True)
class Current:
    """A model as its ref shows it now: head commit, state, and the ref's token."""

    oid: str
    commit: Commit
    state: ModelState
    token: Token


class Registry:
    """One store, opened: a ``.modelreg`` directory or a memory store."""

    def __init__(self, layout: Layout | None = None, *, objects: Objects | None = None,
                 refs: Refs | None = None,
                 config: StoreConfig | Callable[[], StoreConfig] | None = None,
                 location: str | None = None) -> None:
        """Compose a registry.

        Args:
            layout: A ``.modelreg`` directory: its objects, refs and ``config.toml``.
            objects: The objects of a store with no directory (memory, S3).
            refs: The refs of that store.
            config: The policy of a store with no directory (default: the defaults), or
                a function that reads it, called the first time it is needed (a store on
                S3: a command that needs no policy, such as ``show``, does not read it).
            location: Where a store with no directory is, for messages (its URL).

        Raises:
            ValueError: Neither a layout nor both objects and refs were given.
        """
        self.fs_layout = layout
        self.location = location or (str(layout.root) if layout is not None else "(memory)")
        """Where the store is, for messages: its directory, or its URL."""
        if layout is not None:
            objects = ObjectStore(layout.objects, layout.tmp)
            refs = RefStore(layout.refs, layout.tmp)
        if objects is None or refs is None:
            raise ValueError("a registry needs a layout, or objects and refs")
        self.objects: Objects = objects
        self.refs: Refs = refs
        self._config = config
        self.decoded = DecodedObjects(self.objects)

    @classmethod
    def in_memory(cls, config: StoreConfig | None = None) -> Registry:
        """Open a new, empty store in this process's memory (tests, scratch work)."""
        from modelreg.storage.memory import MemoryObjects, MemoryRefs

        return cls(objects=MemoryObjects(), refs=MemoryRefs(), config=config)

    @property
    def layout(self) -> Layout:
        """The store's directory.

        Raises:
            UsageError: The store has no directory (a memory store).
        """
        if self.fs_layout is None:
            raise UsageError("this needs a store on the file system (a .modelreg directory); "
                             f"this store is {self.location}")
        return self.fs_layout

    def scratch(self) -> Path:
        """Where a command puts its temporary work files.

        The store's ``tmp/`` (created if missing; on the objects' file system, so ``gc``
        sweeps what a crash leaves), or the system's temporary directory for a store with
        no directory (S3, memory).
        """
        if self.fs_layout is None:
            import tempfile  # only export and bundle import need it

            return Path(tempfile.gettempdir())
        self.fs_layout.tmp.mkdir(parents=True, exist_ok=True)
        return self.fs_layout.tmp

    @cached_property
    def config(self) -> StoreConfig:
        """The store's policy and hooks, read once from ``config.toml``."""
        from modelreg.registry.policy import StoreConfig, load_config

        if self.fs_layout is None:
            if callable(self._config):
                return self._config()
            return self._config if self._config is not None else StoreConfig()
        return load_config(self.fs_layout.config_file)

    def check_owner(self) -> None:
        """Refuse to change a directory store owned by someone else (see ``check_owner``)."""
        if self.fs_layout is not None:
            check_owner(self.fs_layout)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Registry:
        """Open the store at ``path``, ``$MODELREG_DIR``, or above the current directory.

        Args:
            path: The project directory or its ``.modelreg`` directory, or an
                ``s3://BUCKET/PREFIX`` URL.

        Returns:
            The opened registry.
        """
        given = os.fspath(path) if path is not None else os.environ.get(ENV_DIR) or None
        if given is not None and str(given).startswith(S3_SCHEME):
            return cls._s3(str(given), create=False)[0]
        return cls(discover(path))

    @classmethod
    def init(cls, directory: str | os.PathLike[str] = ".") -> tuple[Registry, bool]:
        """Create (or reopen) the store in ``directory`` (or at an ``s3://`` URL).

        Args:
            directory: Where ``.modelreg`` goes, or ``s3://BUCKET/PREFIX``.

        Returns:
            The registry and whether it was newly created.
        """
        if os.fspath(directory).startswith(S3_SCHEME):
            return cls._s3(os.fspath(directory), create=True)
        layout, created = init(Path(directory))
        return cls(layout), created

    @classmethod
    def _s3(cls, url: str, *, create: bool) -> tuple[Registry, bool]:
        """Open (or create) a store in S3-compatible object storage (docs/s3.md).

        The store's format and ``config.toml`` are refs of their own (``format``,
        ``config``) beside the models' refs; ``format`` is written last, so a store exists
        only once it is whole.
        """
        from modelreg.errors import NotARegistry, UnsupportedFormat
        from modelreg.registry.policy import config_from_bytes
        from modelreg.storage.layout import CONFIG_TEMPLATE, FORMAT_VERSION
        from modelreg.storage.s3 import open_s3

        objects, refs = open_s3(url)
        body = refs.read(FORMAT_REF)
        created = False
        if body is None:
            if not create:
                raise NotARegistry(f"no modelreg store at {url} (run `modelreg init {url}` to "
                                   "create one)")
            refs.compare_and_swap(CONFIG_REF, None, CONFIG_TEMPLATE.encode())
            created = refs.compare_and_swap(FORMAT_REF, None, f"{FORMAT_VERSION}\n".encode())
            body = refs.read(FORMAT_REF) or b""
        text = body.decode("utf-8", "replace").strip()
        if text != str(FORMAT_VERSION):
            raise UnsupportedFormat(f"{url} has format version {text!r}; this modelreg reads "
                                    f"version {FORMAT_VERSION}", url)

        def read_config() -> StoreConfig:
            config = config_from_bytes(refs.read(CONFIG_REF) or b"", f"{url} (config.toml)")
            if config.hooks:
                raise UsageError(f"{url}: its config.toml names hooks, which run as commands "
                                 "beside a store on the file system; a store on S3 runs none, "
                                 "so it refuses every command that reads its policy rather "
                                 "than skip them")
            return config

        return cls(objects=objects, refs=refs, config=read_config, location=url), created

    # -- reading state -------------------------------------------------------------------

    @staticmethod
    def ref_name(name: str) -> str:
        """The name of model ``name``'s ref (``models/<key>``)."""
        return f"{MODELS_PREFIX}/{model_key(name)}"

    def where(self, oid: str) -> str:
        """Where object ``oid`` is, for messages."""
        return self.objects.where(oid)

    def load_commit(self, oid: str) -> Commit:
        """Read and verify a commit object."""
        return self.decoded.get(oid, decode_commit)

    def load_leaf(self, oid: str) -> dict[int, VersionEntry]:
        """Read and verify an index leaf object (a copy the caller may change)."""
        return dict(self.decoded.get(oid, decode_leaf))

    def load_manifest(self, oid: str) -> Manifest:
        """Read and verify a version's manifest (``oid``: the commit that registered it)."""
        return self.decoded.get(oid, manifest_of)[0]

    def manifest_digest(self, oid: str) -> str:
        """The sha256 of the manifest's TOML text that commit ``oid`` holds."""
        return self.decoded.get(oid, manifest_of)[1]

    def manifest_text(self, oid: str) -> bytes:
        """The manifest's TOML text, as registered, that commit ``oid`` holds."""
        commit = self.load_commit(oid)
        if commit.manifest is None:
            self.load_manifest(oid)  # raises the error that says so
        return (commit.manifest or "").encode("utf-8")

    def parse_body(self, ref_name: str, body: bytes, token: Token) -> Current:
        """Decode a model's ref body and verify its state against its head commit.

        Raises:
            IntegrityError: The body is malformed, its head commit is missing or corrupt,
                or the state is not the one the head commit records (the ref was edited).
        """
        where = self.refs.where(ref_name)
        head, state_bytes, digest = decode_ref(body, where)
        commit = self.load_commit(head)
        if commit.state != digest:
            raise IntegrityError(
                f"ref {where} is corrupt: the state it holds does not match the digest its "
                f"head commit {head} records (the ref was edited or damaged)", where)
        state = self.decoded.state(head, digest, state_bytes, where)
        if state.model != commit.model or state.seq != commit.seq:
            raise IntegrityError(f"ref {where} is corrupt: its state names "
                                 f"{state.model} event {state.seq}, its head commit "
                                 f"{commit.model} event {commit.seq}", where)
        return Current(head, commit, state, token)

    def current(self, name: str) -> Current | None:
        """Return model ``name`` as its ref shows it now, or None if it does not exist."""
        ref_name = self.ref_name(name)
        body, token = self.refs.read_versioned(ref_name)
        return None if body is None else self.parse_body(ref_name, body, token)

    def require(self, name: str) -> Current:
        """Return model ``name`` as its ref shows it now.

        Raises:
            NotFound: The model does not exist.
        """
        found = self.current(name)
        if found is None:
            raise NotFound(f"model {name!r} not found")
        return found

    def require_state(self, name: str) -> ModelState:
        """Return model ``name``'s current state.

        Raises:
            NotFound: The model does not exist.
        """
        return self.require(name).state

    def entry(self, state: ModelState, version: int,
              load_leaf: Callable[[str], dict[int, VersionEntry]] | None = None
              ) -> VersionEntry:
        """Return ``version``'s index entry in ``state`` (inline in the tail, or one leaf).

        Args:
            state: A state of the model.
            version: The version number.
            load_leaf: How to read a leaf (default: from the store).

        Raises:
            NotFound: The model has no such version.
        """
        entry = state.tail.get(version)
        if entry is None and 1 <= version <= state.latest.version:
            leaf = state.leaves.get(group_of(version))
            entry = (load_leaf or self.load_leaf)(leaf).get(version) if leaf else None
        if entry is None:
            raise no_such_version(state.model, version, state.latest.version)
        return entry

    def resolve(self, ref: str | Ref) -> tuple[ModelState, int, str]:
        """Resolve a reference to a version.

        Args:
            ref: ``NAME``, ``NAME@N``, ``NAME@vN``, ``NAME@latest`` or ``NAME@STAGE``.

        Returns:
            The model's state, the version number and its manifest id (the id of the
            commit that registered it).

        Raises:
            UsageError: The reference is malformed.
            NotFound: The model, version or stage does not exist.
        """
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        state = self.require_state(parsed.name)
        if parsed.version is not None:
            return state, parsed.version, self.entry(state, parsed.version).manifest
        if parsed.label is None:
            return state, state.latest.version, state.latest.manifest
        head = labelled(state.model, state.stages, state.aliases, parsed.label,
                        lambda: self.config.stages)
        return state, head.version, head.manifest

    def describe(self, state: ModelState, version: int, manifest_oid: str, *,
                 manifest: Manifest | None = None, entry: VersionEntry | None = None
                 ) -> VersionInfo:
        """Describe ``version`` as ``state`` records it (its manifest, entry and aliases).

        Args:
            state: A state of the model.
            version: The version number.
            manifest_oid: The version's manifest id (the commit that registered it).
            manifest: The manifest, if the caller holds it already.
            entry: The version's index entry, if the caller holds it already.

        Raises:
            IntegrityError: The manifest names another version.
        """
        m = self.load_manifest(manifest_oid) if manifest is None else manifest
        if m.name != state.model or m.version != version:
            raise IntegrityError(
                f"{self.where(manifest_oid)}: manifest says {m.name}@{m.version}, "
                f"index says {state.model}@{version}",
                self.where(manifest_oid),
            )
        if entry is None:
            entry = self.entry(state, version)
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
            aliases=sorted(a for a, h in state.aliases.items() if h.version == version),
            manifest=format_digest(self.manifest_digest(manifest_oid)),
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
        state, version, manifest = self.resolve(ref)
        return self.describe(state, version, manifest)

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
            body, token = self.refs.read_versioned(ref_name)
            if body is None:
                continue
            cur = self.parse_body(ref_name, body, token)
            s = cur.state
            out.append(
                ModelSummary(
                    name=s.model,
                    versions=s.latest.version,
                    latest=s.latest.version,
                    updated_at=cur.commit.event.time,
                    updated_by=cur.commit.event.actor,
                    stages={st: h.version for st, h in sorted(s.stages.items())},
                )
            )
        return sorted(out, key=lambda m: m.name.lower())

    def iter_entries(self, state: ModelState) -> Iterator[tuple[int, VersionEntry]]:
        """Yield every ``(version, entry)`` of a model, oldest first."""
        for group in sorted(state.leaves):
            yield from sorted(self.load_leaf(state.leaves[group]).items())
        yield from sorted(state.tail.items())

    def versions(self, name: str) -> list[VersionSummary]:
        """List every version of model ``name``, oldest first."""
        from modelreg.results import VersionSummary

        state = self.require_state(name)
        aliases: dict[int, list[str]] = {}
        for alias, h in sorted(state.aliases.items()):
            aliases.setdefault(h.version, []).append(alias)
        return [
            VersionSummary(
                name=state.model,
                version=v,
                created_at=e.created_at,
                created_by=e.created_by,
                stage=e.stage,
                aliases=aliases.get(v, []),
                digest=e.digest,
                size=e.size,
            )
            for v, e in self.iter_entries(state)
        ]

    # -- helpers for other modules ---------------------------------------------------------

    def model_names(self) -> list[str]:
        """Return the ref names of all models (``models/<key>``)."""
        return list(self.refs.names(MODELS_PREFIX))
