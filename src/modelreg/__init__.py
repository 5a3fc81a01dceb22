"""modelreg: a model registry with no server.

``import modelreg`` gives the same operations as the ``modelreg`` command::

    import modelreg
    modelreg.init(".")
    result = modelreg.register("churn", ["model.pkl"], params={"C": 1.0})
    print(modelreg.show("churn@latest").artifact.digest)
"""

from modelreg.api import (
    alias_list,
    alias_remove,
    alias_set,
    approve,
    archive,
    bench,
    check,
    diff,
    edit,
    events,
    export_bundle,
    export_onnx,
    fsck,
    gc,
    history,
    import_bundle,
    infer_signature,
    init,
    list_models,
    open_registry,
    predict,
    promote,
    pull,
    register,
    rollback,
    search,
    serve,
    show,
    signature,
    signature_diff,
    validate,
    versions,
)
from modelreg.errors import ModelregError
from modelreg.registry import Registry
from modelreg.version import __version__

__all__ = [
    "ModelregError",
    "Registry",
    "__version__",
    "alias_list",
    "bench",
    "export_bundle",
    "export_onnx",
    "import_bundle",
    "predict",
    "serve",
    "alias_remove",
    "alias_set",
    "approve",
    "archive",
    "check",
    "diff",
    "edit",
    "events",
    "fsck",
    "gc",
    "history",
    "infer_signature",
    "init",
    "list_models",
    "open_registry",
    "promote",
    "pull",
    "register",
    "rollback",
    "search",
    "show",
    "signature",
    "signature_diff",
    "validate",
    "versions",
]
