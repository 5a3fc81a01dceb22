"""The whole tour, end to end, through the Python API (what `make demo` runs).

Train a small scikit-learn model on a data set that ships with scikit-learn; register it
with params, metrics, the training data's digest and the git commit; export it to ONNX with
a parity proof; validate a good payload and a bad one; bench it and record the latency
check; move it through staging and an approval to production; show history and lineage.
"""

from __future__ import annotations

import csv
import json
import pickle
import tempfile
from pathlib import Path

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error

import modelreg

HERE = Path(__file__).resolve().parent
POLICY = """
[stages.production]
exclusive = true
require_approvals = 1
four_eyes = true
require_checks = ["latency"]
"""
SCIENTIST, ENGINEER = "scientist@example.com", "engineer@example.com"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelreg-demo-") as tmp:
        project = Path(tmp)
        reg, _ = modelreg.init(project)
        reg.layout.config_file.write_text(POLICY)
        reg = modelreg.open_registry(reg.layout.root)
        print(f"1. store: {reg.layout.root}")

        data = load_diabetes()
        names = list(data.feature_names)
        x, y = data.data, data.target
        train_csv = project / "train.csv"
        with open(train_csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*names, "target"])
            writer.writerows([*row, t] for row, t in zip(x[:350], y[:350], strict=True))
        model = Ridge(alpha=0.5).fit(x[:350], y[:350])
        mae = float(mean_absolute_error(y[350:], model.predict(x[350:])))
        model_file = project / "ridge.pkl"
        model_file.write_bytes(pickle.dumps(model))
        signature = {"inputs": {n: "float" for n in names}, "outputs": {"target": "float"}}
        sample = project / "sample.json"
        sample.write_text(json.dumps([dict(zip(names, row, strict=True)) for row in x[350:360]]))

        v = modelreg.register(
            "diabetes", [model_file], registry=reg, actor=SCIENTIST, params={"alpha": 0.5},
            metrics={"mae": round(mae, 3)}, data=[train_csv], run_name="ridge-baseline",
            signature=signature, sample=sample, git_cwd=HERE).version
        git = v.lineage.git.commit[:12] if v.lineage.git and v.lineage.git.commit else "none"
        print(f"2. registered {v.ref}: mae {mae:.1f}, data {v.lineage.data[0].digest[:19]}…, "
              f"git {git}")

        # The demo trusts the pickle it just wrote; for anyone else's, think twice.
        exported = modelreg.export_onnx(v.ref, registry=reg, allow_pickle=True, actor=SCIENTIST)
        onnx_v = exported.result.version
        p = exported.parity
        print(f"3. exported to {onnx_v.ref} (derived from {onnx_v.lineage.derived_from}); "
              f"parity over {p['samples']} samples, max abs error {p['max_abs_err']:.2g}")

        good = json.dumps([dict(zip(names, row, strict=True)) for row in x[400:403]]).encode()
        report = modelreg.validate(onnx_v.ref, good, registry=reg, filename="good.json")
        print(f"4. a good payload: valid={report.ok}")
        bad_rows = [dict(zip(names, row, strict=True)) for row in x[400:403]]
        bad_rows[1]["bmi"] = str(bad_rows[1]["bmi"])
        report = modelreg.validate(onnx_v.ref, json.dumps(bad_rows).encode(), registry=reg,
                                   filename="bad.json")
        print(f"   a bad one: valid={report.ok}: {report.problems[0].message}")
        outputs = modelreg.predict(onnx_v.ref, good, registry=reg, filename="good.json")
        print(f"   predict: {[round(o[0], 1) for o in next(iter(outputs.outputs.values()))]} "
              f"(scikit-learn says {[round(float(t), 1) for t in model.predict(x[400:403])]})")

        bench = modelreg.bench(onnx_v.ref, registry=reg, batch_sizes=[1, 64], duration=0.5,
                               record="latency", max_p95_ms=50, actor="ci@example.com")
        for r in bench.results:
            print(f"5. bench batch {r.batch_size}: p95 {r.p95_ms:.3f} ms, "
                  f"{r.throughput_rows_per_s:.0f} rows/s")

        modelreg.promote(onnx_v.ref, "staging", registry=reg, actor=SCIENTIST)
        modelreg.approve(onnx_v.ref, registry=reg, actor=ENGINEER, comment="parity and p95 ok")
        live = modelreg.promote(onnx_v.ref, "production", registry=reg, actor=SCIENTIST,
                                reason="first release")
        print(f"6. {live.version.ref} is in {live.version.stage}")

        _, events = modelreg.history("diabetes", registry=reg)
        print("7. history:")
        for e in reversed(events):
            move = f" {e.from_stage or '-'} -> {e.to_stage}" if e.to_stage else ""
            print(f"   {e.seq:>2} {e.actor:<22} {e.action:<8} v{e.version}{move}")
        shown = modelreg.show("diabetes@production", registry=reg)
        print(f"   lineage of {shown.ref}: derived from {shown.lineage.derived_from}, "
              f"converter {shown.lineage.export['converter'] if shown.lineage.export else '-'}")
        report = modelreg.fsck(registry=reg)
        print(f"8. fsck ok={report.ok}: {report.objects} objects, {report.events} events")
        if not report.ok:
            raise SystemExit(6)


if __name__ == "__main__":
    main()
