"""The registry layer: models, versions, manifests, history, over the storage layer."""

from modelreg.registry.core import Registry

__all__ = ["Registry"]
