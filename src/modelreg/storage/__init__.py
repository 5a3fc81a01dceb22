"""The storage layer: objects, refs, the one write path, copying, locks and the store layout.

It knows nothing about models; the registry layer above composes it.
"""

from modelreg.storage.layout import FORMAT_VERSION, Layout, discover, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore

__all__ = ["FORMAT_VERSION", "Layout", "ObjectStore", "RefStore", "discover", "init"]
