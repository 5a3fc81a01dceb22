"""``modelreg copy SRC DEST``: a whole registry moved between any two backends.

Every object is copied first (streamed through a private temporary file, verified on the way
out of SRC and again as it lands in DEST), then DEST's objects are made durable, and only
then is each model's ref created in DEST. So a ref never names an object DEST lacks, and a
copy cut short anywhere is finished by running it again: objects already there are skipped,
refs already equal are left alone. A model DEST already holds in another state is never
overwritten; it is reported, and the command exits 4.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import IntegrityError

if TYPE_CHECKING:
    from modelreg.registry.core import Registry

__all__ = ["CopyReport", "copy_store"]


@dataclass
class CopyReport:
    """What ``copy`` did."""

    source: str
    dest: str
    objects: int = 0
    present: int = 0
    models: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    config: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/cli.md, copy)."""
        return {"source": self.source, "dest": self.dest, "objects": self.objects,
                "present": self.present, "models": self.models, "same": self.same,
                "conflicts": self.conflicts, "config": self.config}


_SMALL = 1 << 20


def copy_store(src: Registry, dest: Registry, *, dest_created: bool) -> CopyReport:
    """Copy every object, then every model's ref, from ``src`` to ``dest``.

    Args:
        src: The registry to copy.
        dest: Where to (opened, or just created).
        dest_created: ``dest`` was created for this copy: it also takes ``src``'s policy.

    Raises:
        IntegrityError: An object of ``src`` is corrupt (nothing of it reaches ``dest``).
    """
    report = CopyReport(src.location, dest.location)
    with tempfile.TemporaryDirectory(prefix="modelreg-copy-") as tmp:
        staging = Path(tmp) / "object"
        for oid in src.objects.ids():
            if dest.objects.contains(oid):
                report.present += 1
                continue
            stat = src.objects.stat(oid)
            if stat is not None and stat[1] <= _SMALL:
                got = dest.objects.put_bytes(src.objects.get_bytes(oid))
            else:
                with staging.open("wb") as fh:
                    src.objects.copy_to(oid, fh)
                got, _ = dest.objects.put_file(staging)
                staging.unlink()
            if got != oid:
                raise IntegrityError(f"object {oid} changed on its way to {dest.location}; "
                                     "its refs were not copied", oid)
            report.objects += 1
    dest.objects.sync()
    for ref_name in sorted(src.model_names()):
        body = src.refs.read(ref_name)
        if body is None:
            continue
        model = ref_name.split("/", 1)[1]
        have, token = dest.refs.read_versioned(ref_name)
        if have == body:
            report.same.append(model)
        elif have is None and dest.refs.compare_and_swap(ref_name, None, body):
            report.models.append(model)
        else:
            report.conflicts.append(model)
    if dest_created:
        report.config = copy_policy(src, dest)
    return report


def copy_policy(src: Registry, dest: Registry) -> bool:
    """Give a store made by ``copy`` the policy of the store it copies."""
    from modelreg.registry.core import CONFIG_REF
    from modelreg.storage.atomic import write_atomic

    text = (src.layout.config_file.read_bytes() if src.fs_layout is not None
            and src.layout.config_file.is_file() else src.refs.read(CONFIG_REF))
    if text is None:
        return False
    if dest.fs_layout is not None:
        write_atomic(dest.layout.config_file, text, dest.layout.tmp)
        return True
    current, token = dest.refs.read_versioned(CONFIG_REF)
    return current == text or dest.refs.compare_and_swap(CONFIG_REF, token, text)
