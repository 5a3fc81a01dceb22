"""modelreg: a model registry with no server.

``import modelreg`` gives the same operations as the ``modelreg`` command::

    import modelreg
    modelreg.init(".")
    result = modelreg.register("churn", ["model.pkl"], params={"C": 1.0})
    print(modelreg.show("churn@latest").artifact.digest)
"""

from modelreg.api import (
    diff,
    fsck,
    gc,
    history,
    init,
    list_models,
    open_registry,
    pull,
    register,
    show,
    versions,
)
from modelreg.errors import ModelregError
from modelreg.registry import Registry

__version__ = "0.1.0"

__all__ = [
    "ModelregError",
    "Registry",
    "__version__",
    "diff",
    "fsck",
    "gc",
    "history",
    "init",
    "list_models",
    "open_registry",
    "pull",
    "register",
    "show",
    "versions",
]
