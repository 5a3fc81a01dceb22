"""Signatures: declare, infer, store and validate input/output schemas; compare two of them.

A pure layer: it imports only ``modelreg.errors`` and itself. It never imports onnx or
onnxruntime (``modelreg.packaging`` does, and reads a graph into a ``Signature`` there), and
imports numpy and jsonschema only inside the functions that need them. Every comparison of
two signatures lives here: ``compat`` (does a caller of the old version still work with the
new one) and ``contradictions`` (does a declared signature contradict the one a graph
infers).
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
