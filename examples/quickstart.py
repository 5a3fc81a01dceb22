"""End-to-end tour of modelreg through the Python API (what `make demo` runs).

It creates a throw-away project in a temporary directory, registers two versions of a model
with params, metrics and a data digest, then shows, diffs, pulls and verifies them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import modelreg


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelreg-demo-") as tmp:
        project = Path(tmp)
        registry, _ = modelreg.init(project)
        print(f"store: {registry.layout.root}")

        data = project / "train.csv"
        data.write_text("distance,is_hazardous,minutes\n12.5,false,31\n3.0,true,9\n")
        weights = project / "model"
        weights.mkdir()
        (weights / "weights.bin").write_bytes(bytes(range(256)) * 64)
        (weights / "config.json").write_text(json.dumps({"layers": 2}))

        v1 = modelreg.register(
            "eta", [weights], registry=registry, params={"lr": 0.1, "depth": 4},
            metrics={"mae": 3.2}, data=[data], run_name="baseline", git=False,
        )
        print(f"registered {v1.version.ref}: {v1.version.artifact.digest}")

        again = modelreg.register(
            "eta", [weights], registry=registry, params={"lr": 0.1, "depth": 4},
            metrics={"mae": 3.2}, data=[data], run_name="baseline", git=False,
        )
        print(f"registering the same thing again returns {again.version.ref} "
              f"(created={again.created})")

        (weights / "weights.bin").write_bytes(bytes(range(256)) * 80)
        v2 = modelreg.register(
            "eta", [weights], registry=registry, params={"lr": 0.05, "depth": 6},
            metrics={"mae": 2.7}, data=[data], run_name="deeper", git=False,
        )
        print(f"registered {v2.version.ref}")

        latest = modelreg.show("eta@latest", registry=registry)
        print(f"eta@latest is {latest.ref}, params {latest.lineage.params}")

        d = modelreg.diff("eta@1", "eta@2", registry=registry)
        print(f"diff params: {d.params}")
        print(f"diff files changed: {[f['path'] for f in d.files['changed']]}")

        pulled = modelreg.pull("eta@1", project / "checkout", registry=registry)
        print(f"pulled {pulled.ref}: {pulled.written} files into {pulled.dest}")

        report = modelreg.fsck(registry=registry)
        print(f"fsck ok={report.ok}: {report.objects} objects, {report.events} events")
        if not report.ok:
            raise SystemExit(6)


if __name__ == "__main__":
    main()
