"""modelreg's benchmark suite (issue 6): workloads W1–W7, their budgets, and the peers.

Run from the repository root:

    make bench              # python -m bench.run: modelreg alone, every workload
    make bench-peers        # python -m bench.run --peers: also MLflow, GTO and DVC, installed
                            # once into bench/.peers/{mlflow,gto,dvc}
    python -m bench.run --only W1,W4     # a subset

Method (details in bench/common.py and docs/performance.md): whole-process timings are
`time.perf_counter()` around `subprocess.run`; commands compared with each other are
interleaved after one warm-up each, and the median is reported; peak RSS is the command's
own `ru_maxrss` (via `/usr/bin/time`); each budget is printed as a ratio with PASS or MISS.
Scratch stores are built through the Python API, untimed. The first line printed names the
machine. Nothing is asserted: a figure is a figure, and tests never time anything.

Sizes (environment variables; defaults are the issue's):

    MODELREG_BENCH_RUNS=11            rounds for sub-second commands (W1, W3)
    MODELREG_BENCH_SLOW_RUNS=3        rounds for multi-second ones (W4, W5, W7)
    MODELREG_BENCH_W1_MODELS=50       MODELREG_BENCH_W1_VERSIONS=500
    MODELREG_BENCH_W2_CALLS=500       MODELREG_BENCH_W2_GTO_CALLS=100
    MODELREG_BENCH_W3_VERSIONS=10000  MODELREG_BENCH_W3_SMALL=10
    MODELREG_BENCH_MB=1024            (W4 file size, MiB)
    MODELREG_BENCH_W5_CALLS=16        MODELREG_BENCH_W6_ROWS=100000
    MODELREG_BENCH_W7_VERSIONS=500    MODELREG_BENCH_W8_VERSIONS=10000
    MODELREG_BENCH_W9_SECONDS=10      (each W9 load run)
    MODELREG_BENCH_W10_VERSIONS=10000 (over 50 models)
    MODELREG_BENCH_W11_OPS=100        (W11: registers and resolves on S3, each)
    MODELREG_BENCH_DIR=/path          where scratch stores go (default: the system temp dir;
                                      W4 needs about 3x MODELREG_BENCH_MB free there)
    MODELREG_BENCH_KEEP=1             keep the scratch stores afterwards

Figures are also written to bench/out/latest.json (or latest-peers.json) by a full run at
the default sizes, else to bench/out/partial.json (partial-peers.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import OUT, BenchError, Report, machine_line
from bench.s3_requests import w11
from bench.workloads import WORKLOADS, Context

WORKLOADS = {**WORKLOADS, "W11": w11}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", action="store_true",
                        help="also install and measure MLflow, GTO and DVC")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W4")
    args = parser.parse_args(argv)
    selected = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(WORKLOADS)}")

    base = os.environ.get("MODELREG_BENCH_DIR") or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="modelreg-bench-", dir=base)).resolve()
    machine = machine_line(root)
    print(machine, flush=True)
    report = Report()
    peers = None
    if args.peers:
        from bench.peers import Peers

        peers = Peers.install()
        report.figures["peers"] = peers.versions
    ctx = Context(root=root, report=report, peers=peers)
    start = time.perf_counter()
    failed = []
    try:
        for name in selected:
            t0 = time.perf_counter()
            try:
                WORKLOADS[name](ctx)
            except BenchError as exc:
                failed.append(name)
                print(f"  {name} FAILED: {exc}", flush=True)
            print(f"  ({name} took {time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        if os.environ.get("MODELREG_BENCH_KEEP") == "1":
            print(f"\nscratch stores kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report.summary()
    print(f"  whole run: {time.perf_counter() - start:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.2f}")
    # Only a full run at the sizes is "latest"; anything else is kept apart.
    resized = any(k.startswith("MODELREG_BENCH_") and k not in ("MODELREG_BENCH_DIR",
                                                                 "MODELREG_BENCH_KEEP")
                  for k in os.environ)
    stem = "latest" if selected == list(WORKLOADS) and not resized else "partial"
    report.save(OUT / f"{stem}{'-peers' if args.peers else ''}.json", machine)
    if failed:
        print(f"workloads that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
