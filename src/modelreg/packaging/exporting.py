"""Export a registered model to ONNX, prove parity, and register the result.

The source version's files are pulled (digest-verified) into the store's temp directory, the
model is loaded (pickles only when allowed), converted, checked with the ONNX checker and
shape inference, and run side by side with ONNX Runtime on sample inputs. Only when every
output agrees within tolerance is the ONNX file registered, as a new version derived from the
source; otherwise nothing is registered and the figures are reported (exit 7).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelreg.errors import ModelError, NotFound, UsageError
from modelreg.packaging import onnxfile
from modelreg.packaging.converters import Conversion, convert
from modelreg.packaging.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, check_parity
from modelreg.packaging.samples import column_order, sample_inputs
from modelreg.packaging.sources import SourceModel, load_source
from modelreg.registry import pulling, registering
from modelreg.registry.core import Registry
from modelreg.results import RegisterResult
from modelreg.signatures.model import Signature
from modelreg.types import Lineage, VersionInfo

__all__ = ["ExportResult", "export_onnx", "export_record"]


@dataclass(frozen=True)
class ExportResult:
    """The registered ONNX version and the proof that it agrees with its source."""

    source: str
    result: RegisterResult
    parity: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The new version's JSON shape plus ``source`` and ``parity``."""
        data = self.result.to_dict()
        data["source"] = self.source
        data["parity"] = self.parity
        return data


def _binding(source_sig: Signature | None, onnx_sig: Signature,
             order: list[str] | None) -> dict[str, Any] | None:
    """Bind a column signature to a single ``[N, F]`` tensor input, by column order."""
    if source_sig is None or source_sig.inputs.kind != "columns":
        return None
    tensors = onnx_sig.inputs.tensors
    if len(tensors) != 1 or tensors[0].shape is None or len(tensors[0].shape) != 2:
        return None
    columns = {c.name: c for c in source_sig.inputs.columns}
    names = order or list(columns)
    width = tensors[0].shape[1]
    if isinstance(width, int) and width >= 0 and width != len(names):
        return None
    return {"input": tensors[0].name, "dtype": tensors[0].dtype,
            "columns": [columns[n].to_dict() for n in names if n in columns]}


def _named_outputs(conversion: Conversion, source_sig: Signature | None,
                   ref: str) -> Conversion:
    """The conversion with its outputs named as the source's signature declares them.

    Declared names are given to the graph's outputs in order (a classifier declaring one
    output names its label); nothing changes when every declared name is already a
    graph output (a torch model returning a dict) or nothing is declared.

    Raises:
        UsageError: The signature declares more outputs than the graph has.
        ModelError: A declared name is taken by another value of the graph.
    """
    declared = source_sig.outputs.names() if source_sig and source_sig.outputs else []
    graph = conversion.output_names
    if not declared or set(declared) <= set(graph):
        return conversion
    if len(declared) > len(graph):
        raise UsageError(f"{ref}'s signature declares {len(declared)} outputs "
                         f"({', '.join(declared)}); the converted model gives {len(graph)} "
                         f"({', '.join(graph)})")
    names = dict(zip(graph, declared, strict=False))
    try:
        renamed = onnxfile.rename_outputs(conversion.onnx_bytes, names)
    except ModelError as exc:
        raise ModelError(f"{ref}'s declared outputs cannot name the graph's: "
                         f"{exc.message}") from exc
    return replace(conversion, onnx_bytes=onnxfile.check_and_infer(renamed),
                   output_names=[names.get(n, n) for n in graph])


def export_record(source: SourceModel, conversion: Conversion, report: ParityReport, *,
                  columns: list[str] | None = None) -> dict[str, Any]:
    """The ``Lineage.export`` table for a converted version.

    Args:
        source: The source model.
        conversion: The conversion.
        report: Its (passing) parity report.
        columns: The column order bound to the single input, if any (see
            :func:`~modelreg.packaging.samples.column_order`).

    Returns:
        ``converter``, ``converter_version``, ``opset``, ``source_framework``,
        ``source_kind``, ``inputs``, ``outputs``, ``parity`` (the report's figures without
        ``details``) and, when given, ``columns``.
    """
    parity = {k: v for k, v in report.to_dict().items() if k != "details" and v is not None}
    record: dict[str, Any] = {
        "converter": conversion.converter, "converter_version": conversion.converter_version,
        "opset": conversion.opset, "source_framework": source.framework,
        "source_kind": source.kind, "inputs": list(conversion.input_names),
        "outputs": list(conversion.output_names), "parity": parity}
    if columns is not None:
        record["columns"] = list(columns)
    return record


def _lineage(info: VersionInfo, export: dict[str, Any]) -> Lineage:
    lin = info.lineage
    return Lineage(params=lin.params, metrics=lin.metrics, run=lin.run, git=lin.git,
                   data=lin.data, data_version=lin.data_version, derived_from=info.ref,
                   export=export)


def export_onnx(reg: Registry, ref: str, *, actor: str, as_name: str | None = None,
                opset: int | None = None, sample: Path | None = None,
                rtol: float | None = None, atol: float | None = None,
                dynamic_batch: bool = True, allow_pickle: bool = False) -> ExportResult:
    """Convert ``ref`` to ONNX, prove parity, and register it as a derived version.

    Args:
        reg: The registry.
        ref: The source version (scikit-learn pickle/joblib, or a torch model file).
        actor: Who exports.
        as_name: Register under this model name (default: the source's).
        opset: The ONNX opset to target (default: the converter's choice).
        sample: Sample inputs (else the version's stored example, else generated).
        rtol: Relative tolerance of the parity check.
        atol: Absolute tolerance of the parity check.
        dynamic_batch: Make the batch dimension dynamic.
        allow_pickle: Allow loading pickle-based models (runs code from the file).

    Returns:
        The new version and the parity figures.

    Raises:
        PolicyDenied: The model is a pickle and pickles are not allowed.
        ModelError: Conversion, the checker, or parity failed (nothing is registered).
    """
    info = reg.show(ref)
    source_sig = info.signature
    rtol = DEFAULT_RTOL if rtol is None else rtol
    atol = DEFAULT_ATOL if atol is None else atol
    sample_bytes, sample_name = None, None
    if sample is not None:
        if not sample.is_file():
            raise NotFound(f"sample file {sample} does not exist")
        sample_bytes, sample_name = sample.read_bytes(), sample.name
    elif info.example is not None:
        sample_bytes = reg.objects.get_bytes(info.example.digest.split(":")[1])
        sample_name = info.example.path
    with tempfile.TemporaryDirectory(dir=reg.scratch(), prefix="tmp-export-") as tmp:
        work = Path(tmp)
        pulling.pull(reg, info.ref, work / "source")
        try:
            source = load_source(work / "source", allow_pickle=allow_pickle)
        except UsageError as exc:
            # The files were pulled into a temporary directory of the store's; the user
            # knows them as the version's files, not by that path.
            raise UsageError(exc.message.replace(f"{work / 'source'}/", "").replace(
                str(work / "source"), f"{info.ref}'s files")) from exc
        samples = sample_inputs(source, sample=sample_bytes, sample_name=sample_name,
                                signature=source_sig)
        conversion = _named_outputs(
            convert(source, samples, opset=opset, dynamic_batch=dynamic_batch),
            source_sig, info.ref)
        checked = onnxfile.check_and_infer(conversion.onnx_bytes)
        report = check_parity(source, conversion, samples, rtol=rtol, atol=atol)
        if not report.ok:
            raise ModelError(
                f"parity failed for {info.ref}: max abs error {report.max_abs_err:.3g}, max "
                f"rel error {report.max_rel_err:.3g} (rtol {rtol:g}, atol {atol:g}), "
                f"{report.label_mismatches} label mismatch(es) over {report.samples} "
                f"samples; nothing registered. " + "; ".join(report.details[:3]))
        name = as_name or info.name
        onnx_path = work / f"{name}.onnx"
        onnx_path.write_bytes(checked)
        onnx_sig = onnxfile.infer_signature(onnx_path)
        binding = _binding(source_sig, onnx_sig, column_order(source, source_sig))
        columns = None if binding is None else [c["name"] for c in binding["columns"]]
        if binding is not None and columns is not None:
            onnx_sig = Signature(onnx_sig.inputs, onnx_sig.outputs,
                                 {**onnx_sig.extra, "binding": binding})
            onnx_path.write_bytes(onnxfile.check_and_infer(
                onnxfile.describe_columns(checked, binding["input"], columns)))
        export = {**export_record(source, conversion, report, columns=columns),
                  "source": info.ref, "source_manifest": info.manifest}
        example = None
        if sample_bytes is not None:
            example = work / (sample_name or "sample")
            example.write_bytes(sample_bytes)
        result = registering.register(reg, name, [onnx_path], actor=actor,
                                      lineage=_lineage(info, export),
                                      description=info.description, tags=info.tags,
                                      signature=onnx_sig.to_dict(), example=example)
    return ExportResult(info.ref, result, report.to_dict())
