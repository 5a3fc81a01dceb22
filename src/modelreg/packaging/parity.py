"""Prove a conversion faithful: run the source model and ONNX Runtime on the same inputs.

Float outputs are compared with the numpy ``allclose`` rule, ``|onnx - source| <= atol +
rtol * |source|``; labels (and any integer, boolean or string output) must be equal. The
figures (largest absolute and relative error, label mismatches, samples compared) go into
the exported version's lineage, or into the refusal when parity fails.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelError
from modelreg.packaging.runtime import InferenceRunner
from modelreg.packaging.sources import SourceModel, run_torch

if TYPE_CHECKING:
    import numpy as np

    from modelreg.packaging.converters import Conversion

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "ParityReport", "check_parity"]

# Sources are float64 (scikit-learn) or float32 (torch); ONNX graphs compute partly in
# float32 (torch graphs, tree leaf values) with a different operation order. float32
# carries ~7 significant digits, and a sum over F features loses about sqrt(F) ulps:
# rtol=1e-3 leaves two orders of magnitude above that
# for models with hundreds of features, and atol=1e-4 covers values near zero (logits,
# probabilities close to 0) where a relative bound means nothing. A real conversion bug
# (a dropped scaler, a wrong class order) is off by far more than either.
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX model reproduced the source model on the same samples.

    ``max_rel_err`` is ``|onnx - source| / |source|`` over elements where the source is
    non-zero. ``label_mismatches`` counts exact-compared values (class labels, integer,
    boolean or string outputs) that differ.
    """

    ok: bool
    samples: int
    max_abs_err: float
    max_rel_err: float
    rtol: float
    atol: float
    label_mismatches: int
    outputs: list[str]
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready: a non-finite error figure (a NaN mismatch) is None."""
        def fig(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"ok": self.ok, "samples": self.samples,
                "max_abs_err": fig(self.max_abs_err), "max_rel_err": fig(self.max_rel_err),
                "rtol": self.rtol, "atol": self.atol,
                "label_mismatches": self.label_mismatches, "outputs": list(self.outputs),
                "details": list(self.details)}


def _source_outputs(source: SourceModel, sample: dict[str, np.ndarray]) -> list[Any]:
    """The source's answers in the converted graph's output order."""
    if source.framework == "torch":
        return [v for _, v in run_torch(source, sample)]
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    model, x = source.model, sample["X"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "X does not have valid feature names", ...
            if is_classifier(model):
                proba = [model.predict_proba(x)] if hasattr(model, "predict_proba") else []
                return [model.predict(x), *proba]
            return [model.predict(x) if hasattr(model, "predict") else model.transform(x)]
    except Exception as exc:  # whatever the estimator raises
        raise ModelError(f"running {source.path.name} on the sample failed: {exc}") from exc


def _compare(name: str, got: Any, want: Any, rtol: float,
             atol: float) -> tuple[float, float, int, bool, str]:
    """(max abs, max rel, exact mismatches, ok, detail) for one output."""
    import numpy as np

    if isinstance(got, list) and got and isinstance(got[0], dict):
        got = [[row[k] for k in sorted(row)] for row in got]  # ZipMap rows, class order
    a, b = np.asarray(got), np.asarray(want)
    if a.size != b.size:
        return (math.inf, math.inf, 0, False, f"{name}: ONNX gave shape {list(a.shape)}, the "
                f"source {list(b.shape)}")
    a = a.reshape(b.shape)
    if b.dtype.kind not in "fc" and a.dtype.kind not in "fc":
        differ = a.astype(str) != b.astype(str) if "OUS" in a.dtype.kind + b.dtype.kind \
            else a != b
        bad = int(np.count_nonzero(differ))
        first = "" if not bad else (f" (first at {np.argwhere(differ)[0].tolist()}: source "
                                    f"{b[differ][0]!r}, ONNX {a[differ][0]!r})")
        return 0.0, 0.0, bad, not bad, f"{name}: {bad} of {b.size} values differ{first}"
    wide = np.complex128 if "c" in a.dtype.kind + b.dtype.kind else np.float64
    a64, b64 = a.astype(wide), b.astype(wide)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        diff = np.where(same, 0.0, np.abs(a64 - b64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = np.where(np.isfinite(b64), np.abs(b64), 0.0)
        outside = int(np.count_nonzero(diff > atol + rtol * scale))
        nonzero = scale > 0
        rel = float(np.max(diff[nonzero] / scale[nonzero])) if nonzero.any() else 0.0
    max_abs = float(np.max(diff)) if diff.size else 0.0
    return (max_abs, rel, 0, not outside, f"{name}: max abs err {max_abs:.3g}, max rel err "
            f"{rel:.3g}; {outside} of {b.size} values outside atol + rtol*|source|")


def check_parity(source: SourceModel, conversion: Conversion, sample: dict[str, np.ndarray],
                 *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> ParityReport:
    """Run the source model and ONNX Runtime on the same samples and compare the answers.

    Float outputs pass when ``|onnx - source| <= atol + rtol * |source|`` everywhere (NaN
    matches only NaN); labels and other integer, boolean or string outputs must be equal.
    For a scikit-learn classifier the label output is compared with ``predict`` and the
    probability output with ``predict_proba``.

    Args:
        source: The loaded model.
        conversion: Its conversion.
        sample: The inputs, as :func:`~modelreg.packaging.samples.sample_inputs` built them.
        rtol: Relative tolerance.
        atol: Absolute tolerance.

    Returns:
        The report; ``ok`` is false when any value is outside tolerance or any label
        differs (then nothing should be registered).

    Raises:
        ModelError: The source model or ONNX Runtime fails to run on the sample.
    """
    runner = InferenceRunner(conversion.onnx_bytes)
    fed = runner.as_fed({k: v for k, v in sample.items() if k in runner.input_names})
    got = runner.run(fed)
    # The source answers for the values the graph is given: float64 for a float64 graph,
    # float32 where the graph itself takes float32.
    wanted = _source_outputs(source, {**sample, **fed})
    names = conversion.output_names[:len(wanted)]
    first = next(iter(sample.values()), None)
    report = ParityReport(True, int(first.shape[0]) if first is not None and first.ndim else 1,
                          0.0, 0.0, rtol, atol, 0, list(names))
    if len(names) < len(wanted):
        report = replace(report, ok=False, details=[
            f"the source gives {len(wanted)} outputs, the ONNX graph {len(names)}"])
    for name, want in zip(names, wanted, strict=False):
        max_abs, rel, bad, ok, line = _compare(name, got[name], want, rtol, atol)
        report = replace(report, ok=report.ok and ok,
                         max_abs_err=max(report.max_abs_err, max_abs),
                         max_rel_err=max(report.max_rel_err, rel),
                         label_mismatches=report.label_mismatches + bad,
                         details=[*report.details, line])
    return report
