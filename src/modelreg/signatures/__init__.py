"""Signatures: declare, infer, store and validate input/output schemas; compare two of them.

This package never imports onnx or onnxruntime (``modelreg.onnxio`` does), and imports
numpy and jsonschema only inside the functions that need them.
"""

from modelreg.signatures.model import (
    ColumnSpec,
    Schema,
    Signature,
    TensorSpec,
    load_signature_file,
    parse_signature,
)

__all__ = ["ColumnSpec", "Schema", "Signature", "TensorSpec", "load_signature_file",
           "parse_signature"]
