"""The workloads W1–W7 of issue 6, each measured for modelreg and, with peers, for them too.

Every workload builds its own scratch store under the run's work directory. Building a
store is setup and is not timed: it goes through the Python API in one process, with
`os.fsync` stubbed out (the bytes are written; only the waits for the disk are skipped).
Everything timed runs with real fsyncs. Sizes come from `common.SETTINGS` (environment
variables, listed in bench/run.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modelreg
from bench.common import (
    PY,
    REPO,
    SETTINGS,
    VENV_BIN,
    BenchError,
    Report,
    Sample,
    Settings,
    child_env,
    interleave,
    ms,
    paired_ratio,
    run,
    timed,
    timed_rss,
)
from modelreg.registry import registering
from modelreg.types import Lineage

if TYPE_CHECKING:
    from bench.peers import Peers

MODELREG = VENV_BIN / "modelreg"
BARE_TYPER = REPO / "bench" / "bare_typer.py"
ACTOR = "bench"


@dataclass
class Context:
    """What every workload gets: where to work, how to report, and the peers (if any)."""

    root: Path
    report: Report
    peers: Peers | None
    settings: Settings = SETTINGS

    def workdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# -- setup helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    """Skip fsync while building a scratch store (setup only; never around a timing)."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def write_files(directory: Path, count: int, prefix: str, size: int = 64) -> list[Path]:
    """Write ``count`` small files of distinct content (so no two register as one version)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"{prefix}{i}.bin"
        head = f"{prefix}-{i}-".encode()
        path.write_bytes(head + b"." * max(0, size - len(head)))
        paths.append(path)
    return paths


def build_models(reg: modelreg.Registry, names: list[str], per_model: int, scratch: Path,
                 *, stage_last: bool = True, progress: str | None = None) -> None:
    """Register ``per_model`` versions of each model; move each last one to production."""
    blob = scratch / "blob.bin"
    start = time.perf_counter()
    with no_fsync():
        for name in names:
            for v in range(1, per_model + 1):
                blob.write_bytes(f"{name}-{v}".encode())
                registering.register(reg, name, [blob], actor=ACTOR, force=True)
                if progress and v % 2000 == 0:
                    print(f"  ({progress}: {v:,} of {per_model:,} versions, "
                          f"{time.perf_counter() - start:.0f} s)", flush=True)
            if stage_last:
                for stage in ("staging", "production"):
                    modelreg.promote(f"{name}@{per_model}", stage, registry=reg, actor=ACTOR)


def show_cmd(ref: str, *more: str) -> list[str | os.PathLike[str]]:
    return [MODELREG, "show", ref, *more]


def git_repo(path: Path) -> None:
    """Make ``path`` a git work tree with one commit (as a training repository would be)."""
    env = child_env()
    run(["git", "init", "-q", str(path)], env=env)
    run(["git", "commit", "-q", "--allow-empty", "-m", "init"], env=env, cwd=path)


def parallel(cmds: list[list[str | os.PathLike[str]]], *, env: dict[str, str],
             cwd: Path | None = None) -> tuple[float, list[int]]:
    """Start every command at once; return the wall time until the last ends, and exit codes."""
    with contextlib.ExitStack() as stack:
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in cmds]
        start = time.perf_counter()
        procs = [subprocess.Popen([str(c) for c in cmd], env=env, cwd=cwd,
                                  stdout=subprocess.DEVNULL, stderr=err)
                 for cmd, err in zip(cmds, errs, strict=True)]
        codes = [p.wait() for p in procs]
        elapsed = time.perf_counter() - start
        for code, err in zip(codes, errs, strict=True):
            if code:
                err.seek(0)
                print(f"  a parallel call exited {code}: "
                      f"{err.read().decode(errors='replace').strip()[-300:]}")
    return elapsed, codes


def in_fresh_process(code: str) -> Any:
    """Run ``code`` in a new interpreter and return the JSON it prints last.

    The in-process workloads (W6, W7) run apart from this process, whose heap has grown
    with the stores built for the other workloads (the garbage collector's passes grow
    with it).
    """
    out = run([PY, "-c", code], env=child_env(), cwd=REPO, capture=True)
    return json.loads(out.strip().splitlines()[-1])


# -- W1 ------------------------------------------------------------------------------------


def w1(ctx: Context) -> None:
    s = ctx.settings
    per_model = max(1, s.w1_versions // s.w1_models)
    total = per_model * s.w1_models
    ctx.report.heading(f"W1  fresh-process `modelreg show NAME@production`, {total:,} versions "
                       f"over {s.w1_models} models (median of {s.runs}, interleaved)")
    d = ctx.workdir("w1")
    reg, _ = modelreg.init(d)
    names = [f"model-{m}" for m in range(s.w1_models)]
    build_models(reg, names, per_model, d)
    target = names[min(7, len(names) - 1)] + "@production"
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    samples = interleave({
        "python": [PY, "-c", "pass"],
        "import typer": [PY, "-c", "import typer"],
        "floor": [PY, BARE_TYPER, target],
        "show": show_cmd(target),
        "show --json": show_cmd(target, "--json"),
    }, env=env, runs=s.runs)
    r = ctx.report
    r.line("w1.python", "python -c pass", samples["python"].median,
           f"{ms(samples['python'].median)}  ({samples['python'].spread()})")
    r.line("w1.import_typer", "python -c 'import typer'", samples["import typer"].median,
           f"{ms(samples['import typer'].median)}  ({samples['import typer'].spread()})")
    floor, show = samples["floor"].median, samples["show"].median
    r.line("w1.floor", "bare Typer app, one command (floor)", floor,
           f"{ms(floor)}  ({samples['floor'].spread()})")
    r.line("w1.show", f"modelreg show {target}", show,
           f"{ms(show)}  ({samples['show'].spread()})")
    r.line("w1.show_json", f"modelreg show {target} --json", samples["show --json"].median,
           f"{ms(samples['show --json'].median)}  ({samples['show --json'].spread()})")
    r.budget("W1", "show <= 1.3x bare Typer", paired_ratio(samples["show"], samples["floor"]),
             1.3, at_most=True)
    json_ratio = paired_ratio(samples["show --json"], samples["floor"])
    r.line("w1.show_json_ratio", "(--json against the floor)", json_ratio, f"{json_ratio:.2f}x")
    if ctx.peers is None:
        r.unmeasured("W1", "MLflow alias lookup >= 10x show", "make bench-peers")
        return
    ctx.peers.w1(ctx, show, names, per_model, target.split("@")[0])


# -- W2 ------------------------------------------------------------------------------------


def register_loop_script(tool: str) -> str:
    """A POSIX shell loop: one `register` process per line of pairs.txt (name, path or ref)."""
    return (f'while read -r name arg; do "{tool}" register "$name" "$arg" $EXTRA >/dev/null '
            '|| exit 1; done < pairs.txt')


def w2(ctx: Context) -> None:
    s = ctx.settings
    n, models = s.w2_calls, min(s.w1_models, s.w2_calls)
    ctx.report.heading(f"W2  {n:,} `modelreg register` calls from a shell loop, one process "
                       f"each, over {models} models, in a git work tree (default flags)")
    d = ctx.workdir("w2")
    git_repo(d)
    modelreg.init(d)
    files = write_files(d / "files", n, "f")
    (d / "pairs.txt").write_text("".join(
        f"model-{i % models} {files[i].relative_to(d)}\n" for i in range(n)))
    env = child_env(EXTRA="")
    elapsed = timed(["bash", "-c", register_loop_script(str(MODELREG))], env=env, cwd=d)
    landed = sum(len(modelreg.versions(f"model-{m}", registry=d)) for m in range(models))
    r = ctx.report
    per_call = elapsed / n
    r.line("w2.total", f"{n:,} registers, whole loop", elapsed, f"{elapsed:.1f} s "
           f"({n / elapsed:.1f} versions/s, {landed:,} landed)")
    r.line("w2.per_call", "per call", per_call, ms(per_call))
    if landed != n:
        raise BenchError(f"W2: {landed} of {n} versions landed")
    # The same loop without git lineage shows what the five `git` calls per register cost.
    few = min(50, n)
    (d / "pairs.txt").write_text("".join(
        f"nogit-{i % models} {files[i].relative_to(d)}\n" for i in range(few)))
    elapsed_ng = timed(["bash", "-c", register_loop_script(str(MODELREG))],
                       env=child_env(EXTRA="--no-git"), cwd=d)
    r.line("w2.per_call_no_git", f"per call with --no-git ({few} calls)", elapsed_ng / few,
           ms(elapsed_ng / few))
    if ctx.peers is None:
        r.unmeasured("W2", "GTO loop >= 4x slower per call", "make bench-peers")
        return
    ctx.peers.w2(ctx, per_call, models)


# -- W3 ------------------------------------------------------------------------------------


def w3(ctx: Context) -> None:
    s = ctx.settings
    big, small = s.w3_versions, s.w3_small
    ctx.report.heading(f"W3  `modelreg show NAME@production` at {big:,} versions in one model "
                       f"against {small} (median of {s.runs}, interleaved)")
    d = ctx.workdir("w3")
    reg, _ = modelreg.init(d)
    start = time.perf_counter()
    build_models(reg, ["recent"], small, d)
    build_models(reg, ["history"], big, d, progress="setup")
    ctx.report.note(f"(setup: {big + small:,} versions through the Python API in "
                    f"{time.perf_counter() - start:.0f} s, not timed)")
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    samples = interleave({"small": show_cmd("recent@production"),
                          "big": show_cmd("history@production")}, env=env, runs=s.runs)
    r = ctx.report
    r.line("w3.show_small", f"show at {small} versions", samples["small"].median,
           f"{ms(samples['small'].median)}  ({samples['small'].spread()})")
    r.line("w3.show_big", f"show at {big:,} versions", samples["big"].median,
           f"{ms(samples['big'].median)}  ({samples['big'].spread()})")
    r.budget("W3", f"show at {big:,} <= 1.2x at {small}",
             paired_ratio(samples["big"], samples["small"]), 1.2, at_most=True)
    # Not budgeted: registering one more version, where the duplicate check reads the index.
    new = d / "new.bin"
    counter = iter(range(10**9))

    def fresh_input(_label: str) -> None:
        new.write_bytes(f"new-{next(counter)}".encode())

    reg_samples = interleave({
        "small": [MODELREG, "register", "recent", new, "--no-git"],
        "big": [MODELREG, "register", "history", new, "--no-git"],
    }, env=env, runs=max(3, s.runs // 2), before=fresh_input)
    r.line("w3.register_small", f"register one more at {small} versions",
           reg_samples["small"].median, ms(reg_samples["small"].median))
    r.line("w3.register_big", f"register one more at {big:,} versions",
           reg_samples["big"].median, f"{ms(reg_samples['big'].median)} "
           f"({paired_ratio(reg_samples['big'], reg_samples['small']):.2f}x; no budget)")


# -- W4 ------------------------------------------------------------------------------------


def make_big_file(path: Path, mib: int) -> None:
    """Write ``mib`` MiB (a random MiB repeated; hashing and copying cannot tell)."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(chunk)


def w4(ctx: Context) -> None:
    s = ctx.settings
    mib = s.w4_mb
    ctx.report.heading(f"W4  `modelreg register` of a {mib:,} MiB file against `cp` + fsync "
                       f"(median of {s.slow_runs}, interleaved; the file is in the page cache "
                       "and dirty pages are synced between runs, untimed)")
    d = ctx.workdir("w4")
    big = d / "big.bin"
    make_big_file(big, mib)
    copy = d / "copy.bin"
    store_dir = d / "store"
    runs_done = iter(range(10**9))
    labels = ["cp", "modelreg"]
    if ctx.peers is not None and ctx.peers.dvc is not None:
        labels.append("dvc")
        ctx.peers.dvc_prepare(d)
    samples = {label: Sample() for label in labels}
    rss = {label: 0.0 for label in labels}
    for round_no in range(s.slow_runs + 1):
        for label in labels if round_no % 2 == 0 else labels[::-1]:
            # A new head makes new content (a new object, a new version); then sync, untimed.
            with open(big, "r+b") as fh:
                fh.write(f"{next(runs_done):016d}".encode())
            shutil.rmtree(store_dir, ignore_errors=True)
            copy.unlink(missing_ok=True)
            if label == "modelreg":
                modelreg.init(store_dir)
            os.sync()
            env = child_env(MODELREG_DIR=str(store_dir / ".modelreg"))
            if label == "cp":
                wall, peak = timed_rss(["bash", "-c", 'cp "$0" "$1" && sync "$1"', big, copy],
                                       env=env)
            elif label == "modelreg":
                wall, peak = timed_rss([MODELREG, "register", "big", big, "--no-git"], env=env)
            else:
                assert ctx.peers is not None
                wall, peak = ctx.peers.dvc_add(d, big)
            if round_no:
                samples[label].values.append(wall)
                rss[label] = max(rss[label], peak)
    shutil.rmtree(store_dir, ignore_errors=True)
    copy.unlink(missing_ok=True)
    r = ctx.report
    for label, what in (("cp", "cp + sync (floor)"), ("modelreg", "modelreg register"),
                        ("dvc", "dvc add + sync")):
        if label in samples:
            t = samples[label].median
            r.line(f"w4.{label}", what, t, f"{t:.2f} s  ({mib / t:,.0f} MiB/s, "
                   f"peak RSS {rss[label]:.0f} MiB)")
            r.figures[f"w4.{label}_rss_mib"] = rss[label]
    r.budget("W4", "register <= 1.3x cp", paired_ratio(samples["modelreg"], samples["cp"]), 1.3,
             at_most=True)
    r.budget("W4", "register peak RSS <= 100 MiB", rss["modelreg"], 100, at_most=True,
             unit="MiB")
    if "dvc" in samples:
        r.budget("W4", "dvc add / register > 1 (faster than dvc)",
                 paired_ratio(samples["dvc"], samples["modelreg"]), 1.0, at_most=False)
    elif ctx.peers is None:
        r.unmeasured("W4", "faster than dvc add", "make bench-peers")
    else:
        r.unmeasured("W4", "faster than dvc add", "dvc could not be installed")
    big.unlink()


# -- W5 ------------------------------------------------------------------------------------


def in_sequence(cmds: list[list[str | os.PathLike[str]]], *, env: dict[str, str]) -> float:
    """Run the commands one after another; return the wall time of all of them."""
    start = time.perf_counter()
    for cmd in cmds:
        timed(cmd, env=env)
    return time.perf_counter() - start


def w5(ctx: Context) -> None:
    s = ctx.settings
    n = s.w5_calls
    ctx.report.heading(f"W5  {n} `modelreg register` calls on one model started at once, "
                       f"against the same {n} in sequence (median of {s.slow_runs})")
    d = ctx.workdir("w5")
    reg, _ = modelreg.init(d)
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    seq, par = Sample(), Sample()
    all_landed = True
    for round_no in range(s.slow_runs + 1):
        files = write_files(d / f"r{round_no}", 2 * n, "f")
        seq_cmds = [[MODELREG, "register", f"seq-{round_no}", f, "--no-git"] for f in files[:n]]
        par_cmds = [[MODELREG, "register", f"par-{round_no}", f, "--no-git"] for f in files[n:]]
        if round_no % 2:  # alternate which goes first
            par_t, codes = parallel(par_cmds, env=env)
            seq_t = in_sequence(seq_cmds, env=env)
        else:
            seq_t = in_sequence(seq_cmds, env=env)
            par_t, codes = parallel(par_cmds, env=env)
        landed = len(modelreg.versions(f"par-{round_no}", registry=reg))
        all_landed = all_landed and landed == n and not any(codes)
        if round_no:
            seq.values.append(seq_t)
            par.values.append(par_t)
    r = ctx.report
    r.line("w5.sequential", f"{n} in sequence", seq.median, f"{seq.median:.2f} s")
    r.line("w5.parallel", f"{n} at once", par.median, f"{par.median:.2f} s")
    r.budget("W5", f"{n} parallel <= 3x sequential", paired_ratio(par, seq), 3.0, at_most=True)
    r.verdict("W5", "every parallel call lands", all_landed,
              f"{'all' if all_landed else 'NOT all'} of {n} x {s.slow_runs + 1}")


# -- W6 ------------------------------------------------------------------------------------


def w6(ctx: Context) -> None:
    from bench import validate

    rows = ctx.settings.w6_rows
    ctx.report.heading(f"W6  validate {rows:,} JSONL rows of a 10-column signature against "
                       f"`json.loads` of each line (in one fresh process, interleaved, median "
                       f"of {validate.RUNS})")
    floor, measured = in_fresh_process(
        f"import json; from bench import validate; print(json.dumps(validate.measure({rows})))")
    r = ctx.report
    r.line("w6.json_loads", "json.loads of each line (floor)", floor, ms(floor))
    r.line("w6.validate", "validate_payload", measured, ms(measured))
    r.budget("W6", "validate <= 2x json.loads", measured / floor, validate.BUDGET, at_most=True)


# -- W7 ------------------------------------------------------------------------------------

MLFLOW_REFERENCE_RATE = 240.0  # versions/s, the figure for MLflow on this kind of box


def register_rate(d: Path, n: int, register: Callable[[str, Path, modelreg.Registry], object]
                  ) -> float:
    """Versions per second of ``n`` durable registers on one model, in this process."""
    reg, _ = modelreg.init(d)
    files = write_files(d / "files", n + 5, "v")
    for f in files[:5]:  # warm-up: first-call costs (imports, directories) on another model
        register("warm-up", f, reg)
    start = time.perf_counter()
    for f in files[5:]:
        register("w7", f, reg)
    elapsed = time.perf_counter() - start
    if len(modelreg.versions("w7", registry=reg)) != n:
        raise BenchError("W7: not every version landed")
    return n / elapsed


def api_register_rate(d: Path, n: int) -> float:
    """W7 for modelreg: `modelreg.register` as a training script calls it (git=False)."""

    def api_register(name: str, f: Path, reg: modelreg.Registry) -> object:
        return modelreg.register(name, [f], registry=reg, git=False)

    return register_rate(d, n, api_register)


def w7(ctx: Context) -> None:
    s = ctx.settings
    n = s.w7_versions
    with_mlflow = ctx.peers is not None and ctx.peers.mlflow is not None
    ctx.report.heading(f"W7  {n:,} versions of one model registered in one process through "
                       f"`modelreg.register` (each fsynced before it returns; git=False; a "
                       f"fresh process per run; median of {s.slow_runs}"
                       f"{', runs interleaved with MLflow' if with_mlflow else ''})")
    rates: list[float] = []
    peer_runs: list[dict[str, Any]] = []
    for i in range(s.slow_runs):
        # Modelreg's and MLflow's runs alternate, so a slow spell of the disk (fsync times
        # vary by a factor of two or more on a shared machine) falls on both.
        rates.append(float(in_fresh_process(
            "import json; from pathlib import Path; "
            "from bench.workloads import api_register_rate; "
            f"print(json.dumps(api_register_rate(Path({str(ctx.workdir(f'w7-{i}'))!r}), "
            f"{n})))")))
        if with_mlflow:
            assert ctx.peers is not None
            peer_runs.append(ctx.peers.w7_run(ctx, i, n))
    rate = sorted(rates)[len(rates) // 2]
    r = ctx.report
    r.line("w7.rate", "modelreg.register", rate, f"{rate:,.0f} versions/s "
           f"({1000 / rate:.1f} ms each; runs {', '.join(f'{x:.0f}' for x in rates)})")
    if with_mlflow:
        assert ctx.peers is not None
        ctx.peers.w7(ctx, rate, n, peer_runs)
        return
    why = "make bench-peers" if ctx.peers is None else "MLflow could not be installed"
    r.budget("W7", "rate >= MLflow's (issue's 240/s)", rate, MLFLOW_REFERENCE_RATE,
             at_most=False, unit="versions/s", note=f"reference figure; {why} measures it")


# -- W8 ------------------------------------------------------------------------------------


def store_files(root: Path) -> dict[str, int]:
    """Every file under a store's ``.modelreg/`` but its scratch ``tmp/``, with its size."""
    files = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] == "tmp" or not path.is_file():
            continue
        files[str(rel)] = path.stat().st_size
    return files


def one_register_cost(d: Path, registers: int) -> dict[str, list[int]]:
    """Files created and fsyncs made by each of ``registers`` small registers (real fsyncs).

    Counted in this process: ``os.fsync`` is wrapped to count its calls (each still reaches
    the disk), and the store's file list is compared before and after each register.
    """
    reg, _ = modelreg.init(d / "store")
    files = write_files(d / "files", registers + 1, "c")
    modelreg.register("cost", [files[0]], registry=reg, git=False)  # the model's first commit
    real = os.fsync
    calls = 0

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    created: list[int] = []
    fsyncs: list[int] = []
    os.fsync = counting
    try:
        for f in files[1:]:
            before = set(store_files(reg.layout.root))
            calls = 0
            modelreg.register("cost", [f], registry=reg, git=False)
            fsyncs.append(calls)
            created.append(len(set(store_files(reg.layout.root)) - before))
    finally:
        os.fsync = real
    return {"created": created, "fsyncs": fsyncs}


def w8(ctx: Context) -> None:
    s = ctx.settings
    n = s.w8_versions
    ctx.report.heading(f"W8  the storage engine: {n:,} versions of one model (metadata after "
                       f"`gc`, `fsck` in a fresh process, median of {s.slow_runs}), and the "
                       "files and fsyncs of one small register (64 registers)")
    d = ctx.workdir("w8")
    reg, _ = modelreg.init(d)
    build_models(reg, ["big"], n, d, stage_last=False, progress="W8 set-up")
    with no_fsync():
        modelreg.gc(registry=reg, grace=0)
    root = reg.layout.root
    files = store_files(root)
    artifact_bytes = sum(len(f"big-{v}".encode()) for v in range(1, n + 1))
    metadata = sum(files.values()) - artifact_bytes
    per_version = metadata / n
    r = ctx.report
    r.line("w8.bytes_per_version", "metadata per version after gc", per_version,
           f"{per_version:,.0f} bytes ({metadata / 2**20:,.1f} MiB in {len(files):,} files)")
    r.budget("W8", "metadata per version <= 2 KB", per_version, 2048, at_most=True,
             unit="bytes")
    env = child_env(MODELREG_DIR=str(root))
    samples = [timed([MODELREG, "fsck"], env=env) for _ in range(s.slow_runs)]
    fsck_s = sorted(samples)[len(samples) // 2]
    r.line("w8.fsck", "modelreg fsck", fsck_s, f"{fsck_s:.2f} s "
           f"(runs {', '.join(f'{x:.2f}' for x in samples)})")
    r.budget("W8", "fsck of the whole store <= 3 s", fsck_s, 3.0, at_most=True, unit="s")
    cost = in_fresh_process(
        "import json; from pathlib import Path; from bench.workloads import one_register_cost; "
        f"print(json.dumps(one_register_cost(Path({str(ctx.workdir('w8-cost'))!r}), 64)))")
    for key, limit, what in (("created", 3, "new files"), ("fsyncs", 5, "fsyncs")):
        values = sorted(cost[key])
        median, worst = values[len(values) // 2], values[-1]
        r.line(f"w8.{key}", f"{what} per small register", median,
               f"median {median}, max {worst} (of {len(values)})")
        r.budget("W8", f"{what} per small register <= {limit} (median)", median, limit,
                 at_most=True, unit=what)


# -- W9 ------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_serving(port: int, proc: subprocess.Popen[bytes], body: bytes) -> None:
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"W9: a server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError("W9: a server did not start")


def _load(port: int, clients: int, seconds: int, body: bytes) -> dict[str, float]:
    from bench.serving import LOAD

    out = run([PY, "-c", LOAD, str(port), str(clients), str(seconds), body.decode()],
              env=child_env(), capture=True)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    if result["errors"]:
        raise BenchError(f"W9: {result['errors']:.0f} requests failed")
    return result


def w9(ctx: Context) -> None:
    import pickle

    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    s = ctx.settings
    secs = s.w9_seconds
    ctx.report.heading(f"W9  `modelreg serve` against a bare uvicorn app on the same ONNX "
                       f"session (the floor): {secs} s of keep-alive POST /invocations of one "
                       "row per run, 1 and 8 clients; then 8 clients while production moves "
                       "every second")
    d = ctx.workdir("w9")
    reg, _ = modelreg.init(d)
    reg.layout.config_file.write_text('[transitions]\ndevelopment = ["production", "archived"]'
                                      '\narchived = ["production"]\n')
    reg = modelreg.open_registry(reg.layout.root)
    data = load_diabetes()
    names = list(data.feature_names)
    sig = {"inputs": {n: "float" for n in names}, "outputs": {"target": "float"}}
    sample = d / "sample.json"
    sample.write_text(json.dumps([dict(zip(names, r, strict=True)) for r in data.data[:5]]))
    refs = []
    for alpha in (0.5, 5.0):
        path = d / f"ridge-{alpha}.pkl"
        path.write_bytes(pickle.dumps(Ridge(alpha=alpha).fit(data.data, data.target)))
        made = modelreg.register("diabetes", [path], registry=reg, signature=sig, sample=sample,
                                 git=False, actor=ACTOR)
        refs.append(modelreg.export_onnx(made.version.ref, registry=reg, allow_pickle=True,
                                         actor=ACTOR).result.version.ref)
    modelreg.promote(refs[0], "production", registry=reg, actor=ACTOR)
    pulled = d / "pulled"
    modelreg.pull(refs[0], pulled, registry=reg)
    model = next(pulled.glob("*.onnx"))
    body = json.dumps({"dataframe_split": {"columns": names,
                                           "data": data.data[:1].tolist()}}).encode()
    ports = {"floor": _free_port(), "serve": _free_port()}
    env = child_env(MODELREG_DIR=str(reg.layout.root), MODELREG_ACTOR=ACTOR)
    procs = {
        "floor": subprocess.Popen([PY, "-m", "bench.serving", str(model), str(ports["floor"])],
                                  cwd=REPO, env=env),
        "serve": subprocess.Popen([MODELREG, "serve", "diabetes@production", "--port",
                                   str(ports["serve"]), "--poll", "0.5"], env=env,
                                  stderr=subprocess.DEVNULL),
    }
    r = ctx.report
    try:
        for name, proc in procs.items():
            _wait_serving(ports[name], proc, body)
        figures: dict[tuple[str, int], dict[str, float]] = {}
        for clients in (1, 8):
            for name in ("floor", "serve"):
                figures[name, clients] = _load(ports[name], clients, secs, body)
                f = figures[name, clients]
                r.line(f"w9.{name}.{clients}", f"{name}, {clients} client(s)", f,
                       f"{f['rps']:,.0f} req/s, p50 {f['p50'] * 1000:.2f} ms, "
                       f"p99 {f['p99'] * 1000:.2f} ms")
        stop = False

        def mover() -> None:
            i = 0
            while not stop:
                time.sleep(1)
                i += 1
                modelreg.promote(refs[i % 2], "production", registry=reg, actor=ACTOR)

        import threading

        thread = threading.Thread(target=mover)
        thread.start()
        try:
            during = _load(ports["serve"], 8, secs, body)
        finally:
            stop = True
            thread.join()
        r.line("w9.swapping", "serve, 8 clients, production moving", during,
               f"{during['rps']:,.0f} req/s, p50 {during['p50'] * 1000:.2f} ms, "
               f"p99 {during['p99'] * 1000:.2f} ms")
        p50 = figures["serve", 1]["p50"] / figures["floor", 1]["p50"]
        r.budget("W9", "p50 at 1 client <= 1.3x the floor", p50, 1.3, at_most=True)
        swap = during["rps"] / figures["serve", 8]["rps"]
        r.budget("W9", "throughput while swapping >= 0.8x steady", swap, 0.8, at_most=False)
        if ctx.peers is not None and ctx.peers.mlflow is not None:
            exported = d / "mlflow-model"
            modelreg.export_mlflow(refs[0], exported, registry=reg)
            ctx.peers.w9(ctx, exported, body, figures["serve", 8]["rps"], secs)
        else:
            why = "make bench-peers" if ctx.peers is None else "MLflow could not be installed"
            r.unmeasured("W9", "throughput >= 3x mlflow models serve", f"{why} measures it")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=60)


# -- W10 -----------------------------------------------------------------------------------

W10_FILTERS = {
    "index keys": "stage = 'staging' and created_by = 'bench'",
    "metrics and params": "metrics.mae < 40 and params.alpha = '0.5'",
    "a tag": "tags.team = 'forecasting'",  # a filter MLflow's search_model_versions takes
}


def w10(ctx: Context) -> None:
    s = ctx.settings
    models = 50
    per_model = max(1, s.w10_versions // models)
    ctx.report.heading(f"W10  fresh-process `modelreg search` over {per_model * models:,} "
                       f"versions in {models} models (median of {s.slow_runs})")
    d = ctx.workdir("w10")
    reg, _ = modelreg.init(d)
    blob = d / "blob.bin"
    start = time.perf_counter()
    with no_fsync():
        for m in range(models):
            for v in range(1, per_model + 1):
                blob.write_bytes(f"m{m}-{v}".encode())
                registering.register(
                    reg, f"model-{m}", [blob], actor=ACTOR, force=True,
                    lineage=Lineage(params={"alpha": [0.5, 1.0, 2.0][v % 3]},
                                    metrics={"mae": 30 + (v * 7 + m) % 20}),
                    tags={"team": "forecasting" if v % 3 == 0 else "risk"})
            modelreg.promote(f"model-{m}@{per_model}", "staging", registry=reg, actor=ACTOR)
    ctx.report.note(f"(set-up: {time.perf_counter() - start:.0f} s)")
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    r = ctx.report
    medians = {}
    for label, text in W10_FILTERS.items():
        samples = [timed([MODELREG, "search", text, "--json"], env=env)
                   for _ in range(s.slow_runs)]
        medians[label] = median = sorted(samples)[len(samples) // 2]
        r.line(f"w10.{label.replace(' ', '_')}", f"search, {label}", median,
               f"{median:.2f} s (runs {', '.join(f'{x:.2f}' for x in samples)})")
        r.budget("W10", f"search on {label} <= 1 s", median, 1.0, at_most=True, unit="s")
    if ctx.peers is not None and ctx.peers.mlflow is not None:
        ctx.peers.w10(ctx, medians["a tag"], models, per_model, W10_FILTERS["a tag"])
    else:
        why = "make bench-peers" if ctx.peers is None else "MLflow could not be installed"
        r.unmeasured("W10", "search faster than MLflow's", f"{why} measures it")


WORKLOADS: dict[str, Callable[[Context], None]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8, "W9": w9,
    "W10": w10,
}
