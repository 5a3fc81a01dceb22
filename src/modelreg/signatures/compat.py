"""Compatibility between two signatures: which changes break callers, which do not.

The question is always "a caller that worked with the old version: does it still work with
the new one?". For inputs that means: would a payload valid for the old signature still be
valid (and still mean the same) for the new one. For outputs: does the caller still get
every output it read, in the same type and shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelreg.signatures.model import ColumnSpec, Schema, Signature, TensorSpec, family

__all__ = ["Change", "diff_signatures", "is_breaking"]

# Column type widenings a caller cannot notice: every value valid before is valid after.
_WIDER: dict[str, set[str]] = {
    "int32": {"int64", "float32", "float64"},
    "int64": {"float64"},
    "float32": {"float64"},
}


@dataclass(frozen=True)
class Change:
    """One difference between two signatures."""

    breaking: bool
    side: str
    name: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"breaking": self.breaking, "side": self.side, "name": self.name,
                "message": self.message}


def _dims(spec: TensorSpec) -> str:
    return "?" if spec.shape is None else "[" + ", ".join(map(str, spec.shape)) + "]"


def _tensor_changes(side: str, old: TensorSpec, new: TensorSpec) -> list[Change]:
    out: list[Change] = []
    n = old.name
    if (old.kind, old.dtype, old.elem) != (new.kind, new.dtype, new.elem):
        before = f"{old.kind} {old.dtype or old.elem}"
        after = f"{new.kind} {new.dtype or new.elem}"
        out.append(Change(True, side, n, f"{side} {n!r}: type changed from {before} to {after}"))
        return out
    if old.shape is None or new.shape is None:
        if old.shape != new.shape:
            out.append(Change(new.shape is not None, side, n,
                              f"{side} {n!r}: shape {_dims(old)} -> {_dims(new)}"))
        return out
    if len(old.shape) != len(new.shape):
        out.append(Change(True, side, n, f"{side} {n!r}: rank changed, {_dims(old)} -> "
                          f"{_dims(new)}"))
        return out
    for i, (a, b) in enumerate(zip(old.shape, new.shape, strict=True)):
        fixed_a, fixed_b = isinstance(a, int) and a >= 0, isinstance(b, int) and b >= 0
        if fixed_a and fixed_b and a != b:
            out.append(Change(True, side, n, f"{side} {n!r}: dimension {i} changed from {a} "
                              f"to {b}"))
        elif not fixed_a and fixed_b:
            out.append(Change(True, side, n, f"{side} {n!r}: dimension {i} fixed to {b} "
                              f"(was dynamic {a})"))
        elif fixed_a and not fixed_b:
            out.append(Change(side == "output", side, n,
                              f"{side} {n!r}: dimension {i} made dynamic (was {a})"))
    return out


def _column_changes(old: ColumnSpec, new: ColumnSpec, side: str) -> list[Change]:
    out: list[Change] = []
    n = old.name
    if old.type != new.type:
        if side == "input":
            widened = new.type in _WIDER.get(old.type, set())
            verb = "widened" if widened else ("narrowed" if old.type in _WIDER.get(new.type, set())
                                               else "changed")
            out.append(Change(not widened, side, n, f"input {n!r}: type {verb} from "
                              f"{family(old.type)} ({old.type}) to {family(new.type)} "
                              f"({new.type})"))
        else:
            out.append(Change(True, side, n, f"output {n!r}: type changed from {old.type} to "
                              f"{new.type}"))
    if side == "input":
        if not old.required and new.required:
            out.append(Change(True, side, n, f"input {n!r}: made required"))
        elif old.required and not new.required:
            out.append(Change(False, side, n, f"input {n!r}: made optional"))
        if old.nullable and not new.nullable:
            out.append(Change(True, side, n, f"input {n!r}: no longer nullable"))
        elif not old.nullable and new.nullable:
            out.append(Change(False, side, n, f"input {n!r}: now nullable"))
    elif (old.required, old.nullable) != (new.required, new.nullable):
        # A caller may now get a null or no value where it always got one.
        loosened = (not old.nullable and new.nullable) or (old.required and not new.required)
        out.append(Change(loosened, side, n, f"output {n!r}: required/nullable changed"))
    return out


def _schema_changes(side: str, old: Schema | None, new: Schema | None) -> list[Change]:
    if old is None and new is None:
        return []
    if old is None:
        return [Change(False, side, None, f"{side}s declared (there were none)")]
    if new is None:
        return [Change(True, side, None, f"{side}s no longer declared")]
    if old.kind != new.kind:
        return [Change(True, side, None, f"{side}s changed from {old.kind} to {new.kind}")]
    out: list[Change] = []
    if old.kind == "columns":
        before = {c.name: c for c in old.columns}
        after = {c.name: c for c in new.columns}
        for name in before.keys() - after.keys():
            why = ("callers sending it would be rejected as an unexpected column"
                   if side == "input" else "callers reading it would fail")
            out.append(Change(True, side, name, f"{side} {name!r} removed ({why})"))
        for name in after.keys() - before.keys():
            col = after[name]
            breaking = side == "input" and col.required
            kind = "required" if col.required else "optional"
            out.append(Change(breaking, side, name, f"{side} {name!r} added ({kind})"))
        for name in before.keys() & after.keys():
            out.extend(_column_changes(before[name], after[name], side))
    else:
        tb = {t.name: t for t in old.tensors}
        ta = {t.name: t for t in new.tensors}
        for name in tb.keys() - ta.keys():
            out.append(Change(True, side, name, f"{side} {name!r} removed"))
        for name in ta.keys() - tb.keys():
            out.append(Change(side == "input", side, name, f"{side} {name!r} added"))
        for name in tb.keys() & ta.keys():
            out.extend(_tensor_changes(side, tb[name], ta[name]))
    return sorted(out, key=lambda c: (not c.breaking, c.name or "", c.message))


def diff_signatures(old: Signature | None, new: Signature | None) -> list[Change]:
    """Classify every difference from ``old`` to ``new``.

    Args:
        old: The signature callers rely on now (None: none was declared).
        new: The candidate's signature.

    Returns:
        The changes, breaking ones first; empty when the signatures are equivalent.
    """
    if old is None and new is None:
        return []
    if old is None:
        return [Change(False, "input", None, "signature declared (there was none)")]
    if new is None:
        return [Change(True, "input", None, "signature removed: payloads can no longer be "
                       "checked against it")]
    return (_schema_changes("input", old.facing_inputs(), new.facing_inputs())
            + _schema_changes("output", old.outputs, new.outputs))


def is_breaking(changes: list[Change]) -> bool:
    """True when any change breaks callers."""
    return any(c.breaking for c in changes)
