"""Benchmarks for the storage core (method and figures in docs/performance.md).

Whole-process timings: `time.perf_counter` around `subprocess.run`, one warm-up, then the
median of several runs, reported with a ratio against a floor measured in the same run:

- show:     fresh-process `modelreg show NAME@latest --json` on a store of 500 versions over
            50 models, against a bare Typer app with one command (the floor of any Typer CLI).
- register: `modelreg register` of one large file (default 256 MiB; MODELREG_BENCH_MB), wall
            time and peak RSS of the child, against `cp` of the same file (one read, one write).
- parallel: 16 concurrent `modelreg register` calls on one model, against the same 16 in a row.

Run with `make bench`. Nothing here is asserted; the numbers are printed.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
RUNS = int(os.environ.get("MODELREG_BENCH_RUNS", "7"))
MB = int(os.environ.get("MODELREG_BENCH_MB", "256"))

BARE_TYPER = """
import typer
app = typer.Typer()
@app.command()
def show(name: str) -> None:
    print(name)
app()
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_time(cmd: list[str], env: dict[str, str] | None = None, runs: int = RUNS) -> float:
    timed(cmd, env)
    return statistics.median(timed(cmd, env) for _ in range(runs))


def child_peak_rss_mib(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run cmd as a child and return (wall seconds, peak RSS MiB of the child)."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(before, after) / 1024


def main() -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="modelreg-bench-") as tmp:
        root = Path(tmp)
        import modelreg

        reg, _ = modelreg.init(root)
        env = {**os.environ, "MODELREG_DIR": str(reg.layout.root), "MODELREG_ACTOR": "bench"}
        blob = root / "small.bin"
        for m in range(50):
            for v in range(10):
                blob.write_bytes(f"{m}-{v}".encode())
                modelreg.register(f"model-{m}", [blob], registry=reg, params={"v": v}, git=False)

        bare = root / "bare.py"
        bare.write_text(BARE_TYPER)
        floor = median_time([PY, str(bare), "x"])
        show = median_time([PY, "-m", "modelreg", "show", "model-7@latest", "--json"], env)
        print(f"show (500 versions / 50 models): {show * 1000:.0f} ms; bare Typer floor "
              f"{floor * 1000:.0f} ms; ratio {show / floor:.2f}x")

        big = root / "big.bin"
        with open(big, "wb") as fh:
            chunk = os.urandom(1 << 20)
            for _ in range(MB):
                fh.write(chunk)
        subprocess.run(["sync"], check=False)
        cp_times = []
        for _ in range(3):
            dst = root / "copy.bin"
            start = time.perf_counter()
            subprocess.run(["cp", str(big), str(dst)], check=True)
            os.sync()
            cp_times.append(time.perf_counter() - start)
            dst.unlink()
        cp = statistics.median(cp_times)
        reg_times, rss = [], 0.0
        for i in range(3):
            with open(big, "r+b") as fh:
                fh.write(os.urandom(16))
            wall, peak = child_peak_rss_mib(
                [PY, "-m", "modelreg", "register", "big", str(big), "--no-git",
                 "--param", f"run={i}"], env)
            reg_times.append(wall)
            rss = max(rss, peak)
        register = statistics.median(reg_times)
        print(f"register {MB} MiB file: {register:.2f} s; cp + sync {cp:.2f} s; ratio "
              f"{register / cp:.2f}x; peak RSS {rss:.0f} MiB")

        files = []
        for i in range(16):
            f = root / f"p{i}.bin"
            f.write_bytes(os.urandom(1024))
            files.append(f)

        def reg_cmd(i: int, name: str) -> list[str]:
            return [PY, "-m", "modelreg", "register", name, str(files[i]), "--no-git"]

        start = time.perf_counter()
        for i in range(16):
            subprocess.run(reg_cmd(i, "seq"), check=True, env=env, stdout=subprocess.DEVNULL)
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        procs = [subprocess.Popen(reg_cmd(i, "par"), env=env, stdout=subprocess.DEVNULL)
                 for i in range(16)]
        codes = [p.wait() for p in procs]
        parallel = time.perf_counter() - start
        landed = len(modelreg.versions("par", registry=reg))
        print(f"16 registers: parallel {parallel:.2f} s, sequential {sequential:.2f} s, ratio "
              f"{parallel / sequential:.2f}x; {landed}/16 landed, exit codes {set(codes)}")


if __name__ == "__main__":
    main()
