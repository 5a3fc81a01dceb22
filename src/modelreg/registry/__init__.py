"""The registry layer: models, versions, manifests, history, over the storage layer."""

from modelreg.registry.core import DEFAULT_STAGE, Registry

__all__ = ["DEFAULT_STAGE", "Registry"]
