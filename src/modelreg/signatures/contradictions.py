"""Where a declared signature contradicts the one inferred from an ONNX graph.

``register`` infers a signature from an ONNX file (:mod:`modelreg.packaging.onnxfile`) and,
when one is also declared, refuses the registration if :func:`signature_contradictions`
finds any line. The comparison itself needs no onnx: both sides are plain
:class:`~modelreg.signatures.model.Signature` values, so it lives here with the other
signature comparison (:mod:`modelreg.signatures.compat`, which asks a different question:
does a caller of the old version still work with the new one).
"""

from __future__ import annotations

from typing import Any

from modelreg.signatures.model import Schema, Signature

__all__ = ["signature_contradictions"]


def _fixed(dim: int | str) -> bool:
    return isinstance(dim, int) and dim >= 0


def _shape_lines(where: str, declared: list[Any] | tuple[Any, ...] | None,
                 graph: list[Any] | tuple[Any, ...] | None, is_input: bool,
                 symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    if declared is None or graph is None:
        return []  # nothing declared, or the graph leaves the rank open
    if len(declared) != len(graph):
        return [f"{where}: declared rank {len(declared)} {list(declared)}, the graph has rank "
                f"{len(graph)} {list(graph)}"]
    lines: list[str] = []
    for i, (d, g) in enumerate(zip(declared, graph, strict=True)):
        if _fixed(g) and _fixed(d) and d != g:
            lines.append(f"{where}: dimension {i} declared {d}, the graph fixes it to {g}")
        elif _fixed(g) and not _fixed(d) and is_input:
            lines.append(f"{where}: dimension {i} declared dynamic ({d}), the graph fixes it "
                         f"to {g}")
        elif isinstance(g, str) and _fixed(d):
            symbols.setdefault(g, []).append((f"{where}[{i}]", int(d)))
    return lines


def _elem_lines(where: str, declared: Any, graph: Any, is_input: bool,
                symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Compare descriptions: every key declared must match the graph's (shapes by rule)."""
    if not isinstance(declared, dict) or not isinstance(graph, dict):
        return [] if declared == graph else [f"{where}: declared {declared!r}, the graph has "
                                             f"{graph!r}"]
    lines: list[str] = []
    for key, value in declared.items():
        if key not in graph:
            lines.append(f"{where}: declares {key!r}, which the graph's type has not")
        elif key == "shape":
            lines += _shape_lines(where, value, graph[key], is_input, symbols)
        else:
            lines += _elem_lines(f"{where}.{key}", value, graph[key], is_input, symbols)
    return lines


def _schema_lines(side: str, declared: Schema | None, graph: Schema | None,
                  symbols: dict[str, list[tuple[str, int]]]) -> list[str]:
    if declared is None or graph is None or declared.kind != "tensors":
        return []  # undeclared, or columns: a record payload a server maps onto tensors
    have = {t.name: t for t in graph.tensors}
    want = {t.name: t for t in declared.tensors}
    is_input = side == "input"
    lines = [f"{side} {n!r} is declared but the graph has no such {side} (graph {side}s: "
             f"{', '.join(have)})" for n in want if n not in have]
    lines += [f"graph {side} {n!r} is not declared" for n in have if n not in want]
    for name, g in have.items():
        d = want.get(name)
        if d is None:
            continue
        where = f"{side} {name!r}"
        if d.kind != g.kind:
            lines.append(f"{where}: declared {d.kind}, the graph has a {g.kind}")
            continue
        if d.kind == "tensor" and d.dtype != g.dtype:
            lines.append(f"{where}: declared dtype {d.dtype}, the graph has {g.dtype}")
        lines += _shape_lines(where, d.shape, g.shape, is_input, symbols)
        if d.elem is not None:
            lines += _elem_lines(f"{where} element", d.elem, g.elem, is_input, symbols)
    return lines


def signature_contradictions(declared: Signature, inferred: Signature) -> list[str]:
    """Name every way a declared signature contradicts the one inferred from the graph.

    Only ``tensors`` schemas are compared: a ``columns`` schema describes a record payload
    that a serving layer maps onto the graph's tensors, so it cannot contradict them, and
    undeclared outputs are not compared at all. The rules, per side and name:

    * a declared name the graph lacks, and a graph name not declared, are contradictions;
    * a different kind (tensor, sequence, map) or tensor dtype is a contradiction;
    * a known rank differing from the graph's is a contradiction;
    * a fixed size declared where the graph fixes a different one is a contradiction;
    * the declaration MAY be more specific: a fixed size (or any shape) where the graph
      is dynamic or of unknown rank is fine, unless two sizes fixed for the same symbolic
      graph dimension (``"batch"`` in two inputs) differ;
    * an input declared dynamic where the graph is fixed is a contradiction (callers would
      send sizes the model rejects); for an output it is fine (only less specific);
    * a non-tensor ``elem`` is compared key by key as far as it is declared.

    Args:
        declared: The signature a person declared.
        inferred: The signature read from the graph
            (:func:`modelreg.packaging.onnxfile.infer_signature`).

    Returns:
        One human-readable line per contradiction; empty when there are none.
    """
    symbols: dict[str, list[tuple[str, int]]] = {}
    lines = _schema_lines("input", declared.inputs, inferred.inputs, symbols)
    lines += _schema_lines("output", declared.outputs, inferred.outputs, symbols)
    for symbol, uses in symbols.items():
        if len({size for _, size in uses}) > 1:
            lines.append(f"graph dimension {symbol!r} is one size but is declared as "
                         + ", ".join(f"{size} in {at}" for at, size in uses))
    return lines
