"""Where things live under ``.modelreg/``: path constants, ``init`` and discovery.

See docs/layout.md for the meaning of each path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelreg.errors import (
    Denial,
    IntegrityError,
    NotARegistry,
    PolicyDenied,
    UnsupportedFormat,
    UsageError,
)
from modelreg.storage.atomic import ensure_dir, fsync_dir, write_atomic, write_new

__all__ = [
    "CONFIG_TEMPLATE",
    "DIRNAME",
    "ENV_DIR",
    "FORMAT1_OBJECTS",
    "FORMAT1_REFS",
    "FORMAT_VERSION",
    "PENDING_REFS",
    "Layout",
    "check_owner",
    "discover",
    "finish_ref_switch",
    "init",
    "project_dir",
    "read_format",
    "remove_pending_refs",
    "write_format",
]

DIRNAME = ".modelreg"
FORMAT_VERSION = 2
FORMAT1_OBJECTS = "objects/sha256"
"""Where format 1 kept its objects (``<2 hex>/<62 hex>`` below it)."""
PENDING_REFS = "refs.v2"
"""Where ``migrate`` builds the format-2 refs before the switch."""
FORMAT1_REFS = "refs.format1"
"""Where ``migrate`` moves the format-1 refs after the switch, before removing them."""
ENV_DIR = "MODELREG_DIR"

CONFIG_TEMPLATE = """\
# modelreg store configuration: stages, transition policy and hooks (docs/lifecycle.md).
# Commands that change state read it; on a shared store, let only admins edit it.
"""


@dataclass(frozen=True)
class Layout:
    """The paths of one store; ``root`` is the ``.modelreg`` directory itself."""

    root: Path

    @property
    def format_file(self) -> Path:
        """The integer format version of the store."""
        return self.root / "format"

    @property
    def config_file(self) -> Path:
        """Store-wide configuration (policy, hooks in later formats)."""
        return self.root / "config.toml"

    @property
    def objects(self) -> Path:
        """Content-addressed objects, in one flat directory (format 2)."""
        return self.root / "objects"

    @property
    def refs(self) -> Path:
        """Named, mutable pointers to objects.

        While ``refs.v2/`` exists, a migration from format 1 has switched the store but not
        yet moved its new refs into place (:func:`finish_ref_switch`): they are read there.
        """
        pending = self.root / PENDING_REFS
        return pending if pending.is_dir() else self.root / "refs"

    @property
    def model_refs(self) -> Path:
        """One ref per model: its head commit and current state."""
        return self.refs / "models"

    @property
    def tmp(self) -> Path:
        """Temporary files on the same file system, renamed into place when complete."""
        return self.root / "tmp"

    def check_format(self) -> None:
        """Refuse a store whose format version is missing or unknown.

        Raises:
            NotARegistry: The format file is missing.
            UnsupportedFormat: The format version is not one this modelreg reads.
        """
        try:
            raw = self.format_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError as exc:
            raise NotARegistry(f"{self.root} is not a modelreg store (no format file)") from exc
        try:
            version = int(raw)
        except ValueError as exc:
            raise IntegrityError(
                f"{self.format_file}: format version {raw!r} is not an integer",
                str(self.format_file),
            ) from exc
        if version == 1:
            raise UnsupportedFormat(
                f"{self.root} has format version 1; this modelreg reads format version "
                f"{FORMAT_VERSION} only. Convert the store with `modelreg migrate` (run in "
                "the project, or with --registry pointing at the store).",
                str(self.format_file),
            )
        if version != FORMAT_VERSION:
            raise UnsupportedFormat(
                f"{self.root} has format version {version}; this modelreg reads version "
                f"{FORMAT_VERSION}. Upgrade modelreg to use this store.",
                str(self.format_file),
            )


def read_format(layout: Layout) -> int:
    """The store's format number, whatever it is.

    Raises:
        NotARegistry: There is no format file.
        IntegrityError: It does not hold an integer.
    """
    try:
        raw = layout.format_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise NotARegistry(f"{layout.root} is not a modelreg store (no format file)") from exc
    try:
        return int(raw)
    except ValueError as exc:
        raise IntegrityError(f"{layout.format_file}: format version {raw!r} is not an integer",
                             str(layout.format_file)) from exc


def write_format(layout: Layout, version: int) -> None:
    """Replace the format file (one rename: the switch of a migration)."""
    write_atomic(layout.format_file, f"{version}\n".encode(), layout.tmp)


def remove_pending_refs(layout: Layout) -> None:
    """Remove a ``refs.v2/`` that a migration killed before its switch left behind."""
    import shutil

    pending = layout.root / PENDING_REFS
    if pending.is_dir() and read_format(layout) == 1:
        shutil.rmtree(pending)


def finish_ref_switch(layout: Layout) -> bool:
    """Finish a migration after its switch: new refs into place, format 1's removed.

    Each step can be repeated, so a run cut short anywhere is finished by the next.

    Returns:
        Whether anything was left to do.
    """
    import shutil

    root = layout.root
    pending, current, old = root / PENDING_REFS, root / "refs", root / FORMAT1_REFS
    did = False
    if pending.is_dir():
        if current.is_dir():
            if old.exists():
                shutil.rmtree(old)
            os.rename(current, old)
        os.rename(pending, current)
        fsync_dir(root)
        did = True
    for leftover in (old, root / FORMAT1_OBJECTS):
        if leftover.exists():
            shutil.rmtree(leftover)
            did = True
    return did


def project_dir(path: Path) -> Path:
    """Return the project directory ``path`` names: itself, or its parent for a ``.modelreg``.

    ``--registry`` and ``init`` take either form.
    """
    return path.parent if path.name == DIRNAME else path


def init(directory: Path) -> tuple[Layout, bool]:
    """Create ``directory/.modelreg`` (or check the one there).

    Args:
        directory: The project directory that will hold the store, or that store's
            ``.modelreg`` itself.

    Returns:
        The layout and whether it was newly created.

    Raises:
        UsageError: ``directory`` exists and is not a directory.
        UnsupportedFormat: A store of an unknown format is already there.
    """
    directory = project_dir(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    layout = Layout(directory / DIRNAME)
    # The store's own entry is made durable (as format and config.toml are, below); its
    # sub-directories need not be, since the write path creates them again where missing.
    ensure_dir(layout.root)
    for path in (layout.tmp, layout.objects, layout.model_refs):
        ensure_dir(path, durable=False)
    if not layout.config_file.exists():
        write_new(layout.config_file, CONFIG_TEMPLATE.encode(), layout.tmp)
    created = write_new(layout.format_file, f"{FORMAT_VERSION}\n".encode(), layout.tmp)
    layout.check_format()
    return layout, created


def _as_layout(path: Path) -> Layout | None:
    if path.name == DIRNAME and path.is_dir():
        return Layout(path)
    if (path / DIRNAME).is_dir():
        return Layout(path / DIRNAME)
    return None


def discover(explicit: str | os.PathLike[str] | None = None, start: Path | None = None,
             *, any_format: bool = False) -> Layout:
    """Find the store: ``explicit``, else ``$MODELREG_DIR``, else walk up from ``start``.

    Args:
        explicit: A path given with ``--registry`` (the project dir or its ``.modelreg``).
        start: Where the upward walk begins (default: the current directory).
        any_format: Return a store of any format (``migrate`` opens format 1).

    Returns:
        The layout of a store whose format this modelreg reads.

    Raises:
        NotARegistry: No store was found.
        UnsupportedFormat: The store found has an unknown format version.
    """
    given = explicit if explicit is not None else os.environ.get(ENV_DIR) or None
    if given is not None:
        layout = _as_layout(Path(given))
        if layout is None:
            raise NotARegistry(
                f"no modelreg store at {given} (run `modelreg init {given}` to create one)"
            )
        if not any_format:
            layout.check_format()
        return layout
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        layout = _as_layout(candidate)
        if layout is not None:
            if not any_format:
                layout.check_format()
            return layout
    raise NotARegistry(
        f"no modelreg store in {here} or any parent; run `modelreg init`, "
        f"pass --registry PATH or set {ENV_DIR}"
    )


# --- whose store is it ------------------------------------------------------------------
#
# A store's config.toml holds hooks: commands that run as whoever runs modelreg. Like git's
# safe.directory, a store owned by someone else (found by walking up into a shared parent
# directory, or given explicitly) is read freely but is not changed and runs no hooks until
# the user says, in their own config, that they trust it.

def _name_of_uid(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _group_names(gid: int) -> set[str]:
    names = {str(gid)}
    try:
        import grp

        names.add(grp.getgrgid(gid).gr_name)
    except (ImportError, KeyError):
        pass
    return names


def _foreign(layout: Layout) -> tuple[Path, int, int] | None:
    """The first of the store's directory and config.toml not owned by the user, if any."""
    from modelreg.config import trusted_groups

    if not hasattr(os, "geteuid"):
        return None  # no POSIX owners to compare (Windows): nothing to check
    me = os.geteuid()
    for path in (layout.root, layout.config_file):
        try:
            # The directory itself (a symlink to it counts as its target), and the file
            # config.toml reads (a symlink's target: that is what holds the hooks).
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == me:
            continue
        trusted = set(trusted_groups())
        if trusted and _group_names(st.st_gid) & trusted:
            continue
        return path, st.st_uid, st.st_gid
    return None


def check_owner(layout: Layout) -> None:
    """Refuse to change (or run the hooks of) a store owned by someone else.

    A store counts as the user's own when its ``.modelreg`` directory and its
    ``config.toml`` are owned by the user's effective uid, or by a group the user config
    lists in ``trusted_groups``; or when the user config lists it in ``safe_stores``.

    Args:
        layout: The store.

    Raises:
        PolicyDenied: The store is someone else's and not listed as safe (exit 5); the
            message gives the line to add to the user config.
    """
    from modelreg.config import SAFE_STORES_KEY, store_listed_as_safe, user_config_path

    found = _foreign(layout)
    if found is None or store_listed_as_safe(layout.root):
        return
    path, uid, gid = found
    store = str(layout.root.resolve())
    group = sorted(_group_names(gid), key=str.isdigit)[0]
    message = (
        f"{path} is owned by {_name_of_uid(uid)}, not by you (uid {os.geteuid()}): the "
        "hooks of a store owned by someone else would run as you, so it runs none and "
        "nothing was changed (reading it still works). If you trust this store, add it to "
        f"your user config {user_config_path()}:\n"
        f"    {SAFE_STORES_KEY} = [{_toml_string(store)}]\n"
        f"or trust the group that owns it: trusted_groups = [{_toml_string(group)}]"
    )
    raise PolicyDenied(message, (Denial("owner", message),))


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string
