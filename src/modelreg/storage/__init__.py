"""The storage layer: objects, refs, the one write path, copying, locks and the store layout.

It knows nothing about models; the registry layer above composes it. The backend protocol
(:mod:`modelreg.storage.backend`) says what every place the bytes can live provides: the
file system (``ObjectStore``, ``RefStore``), memory (:mod:`modelreg.storage.memory`) and S3
(:mod:`modelreg.storage.s3`, which imports boto3 only when a store is opened).
"""

from typing import TYPE_CHECKING

from modelreg.storage.layout import FORMAT_VERSION, Layout, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore

if TYPE_CHECKING:
    from modelreg.storage.backend import Objects, Refs
    from modelreg.storage.memory import MemoryObjects, MemoryRefs
    from modelreg.storage.s3 import S3Objects, S3Refs

    def _backends_keep_the_protocol(
        fs_objects: ObjectStore, fs_refs: RefStore, mem_objects: MemoryObjects,
        mem_refs: MemoryRefs, s3_objects: S3Objects, s3_refs: S3Refs,
    ) -> tuple[Objects, Refs, Objects, Refs, Objects, Refs]:
        # mypy checks here that each backend implements the protocol; nothing runs.
        return fs_objects, fs_refs, mem_objects, mem_refs, s3_objects, s3_refs

__all__ = ["FORMAT_VERSION", "Layout", "ObjectStore", "RefStore", "discover", "init"]
