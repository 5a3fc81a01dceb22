"""Shared machinery: settings, the child environment, timing, the machine line, the report.

Timing method (the same for every workload):

- A whole-process timing is `time.perf_counter()` around `subprocess.run` (stdout discarded,
  a non-zero exit is an error, never a figure).
- Commands compared with each other are *interleaved*: one warm-up of each, then `runs`
  rounds in which each command runs once in turn (the order alternating round by round), so
  drift of the machine (another job, the page cache, CPU clocks) hits both sides alike. A
  time is the median of its rounds; a budget ratio is the median of the per-round ratios.
- Peak RSS of a command is the `ru_maxrss` of its own process as `/usr/bin/time -f %M`
  reports it (else a tiny stdlib launcher does the same): not RUSAGE_CHILDREN of this
  process, which only ever grows, nor `os.wait4` on a direct child, whose maxrss starts
  from this (large) process's RSS at fork.
- Children run with bytecode caching on: `PYTHONDONTWRITEBYTECODE` is dropped and
  `PYTHONPYCACHEPREFIX` points into bench/out/pycache, so the warm-up compiles every module
  once (for modelreg, the bare Typer app and the peers alike) and no `__pycache__` lands in
  the source tree. Without it an editable install recompiles modelreg on every start.

Nothing here asserts a timing; budgets are printed as PASS or MISS.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
PEERS_DIR = BENCH_DIR / ".peers"
PY = sys.executable
VENV_BIN = Path(sys.executable).parent


def env_int(name: str, default: int) -> int:
    """Read a positive integer setting from the environment (the sizes are all overridable)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise SystemExit(f"{name} must be a positive integer, not {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Workload sizes and repeat counts; each has an environment variable."""

    runs: int = env_int("MODELREG_BENCH_RUNS", 11)  # rounds for sub-second commands
    slow_runs: int = env_int("MODELREG_BENCH_SLOW_RUNS", 3)  # rounds for multi-second ones
    w1_models: int = env_int("MODELREG_BENCH_W1_MODELS", 50)
    w1_versions: int = env_int("MODELREG_BENCH_W1_VERSIONS", 500)
    w2_calls: int = env_int("MODELREG_BENCH_W2_CALLS", 500)
    w2_gto_calls: int = env_int("MODELREG_BENCH_W2_GTO_CALLS", 100)
    w3_versions: int = env_int("MODELREG_BENCH_W3_VERSIONS", 10_000)
    w3_small: int = env_int("MODELREG_BENCH_W3_SMALL", 10)
    w4_mb: int = env_int("MODELREG_BENCH_MB", 1024)
    w5_calls: int = env_int("MODELREG_BENCH_W5_CALLS", 16)
    w6_rows: int = env_int("MODELREG_BENCH_W6_ROWS", 100_000)
    w7_versions: int = env_int("MODELREG_BENCH_W7_VERSIONS", 500)
    w8_versions: int = env_int("MODELREG_BENCH_W8_VERSIONS", 10_000)
    w9_seconds: int = env_int("MODELREG_BENCH_W9_SECONDS", 10)
    w10_versions: int = env_int("MODELREG_BENCH_W10_VERSIONS", 10_000)
    w11_ops: int = env_int("MODELREG_BENCH_W11_OPS", 100)


SETTINGS = Settings()

# Identities and opt-outs for every child: git needs an author to make commits and tags, and
# no tool under test may try the network (this machine reaches package registries only).
QUIET_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "DO_NOT_TRACK": "1", "ITERATIVE_DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_TERMINAL_PROMPT": "0",
}


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment for measured children (bytecode cached, no network pings)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")
    env.update(QUIET_ENV)
    env.update(extra)
    return env


class BenchError(RuntimeError):
    """A command under measurement failed: its figure would be meaningless."""


def _check(cmd: Sequence[str], code: int, stderr: str) -> None:
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise BenchError(f"{' '.join(map(str, cmd))} exited {code}:\n{tail}")


def run(cmd: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None,
        cwd: Path | None = None, capture: bool = False) -> str:
    """Run an untimed setup command; raise BenchError on failure; return stdout if asked."""
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    _check(proc.args, proc.returncode, proc.stderr)
    return proc.stdout if capture else ""


def timed(cmd: Sequence[str | os.PathLike[str]], *, env: dict[str, str],
          cwd: Path | None = None) -> float:
    """Wall seconds of one run of ``cmd``: `perf_counter` around `subprocess.run`."""
    args = [str(c) for c in cmd]
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    _check(args, proc.returncode, proc.stderr)
    return elapsed


GNU_TIME = Path("/usr/bin/time")
# Without GNU time, a small stdlib-only Python process forks the command and reports it.
RSS_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed_rss(cmd: Sequence[str | os.PathLike[str]], *, env: dict[str, str],
              cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``cmd``.

    The RSS comes from the rusage of the command's process, reported by `/usr/bin/time`
    (or a tiny stdlib launcher): not `os.wait4` on a child of this process, because on Linux
    a child's ``ru_maxrss`` starts from its parent's RSS at fork, and this process is large.
    """
    args = [str(c) for c in cmd]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "maxrss"
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(out), *args]
        else:
            wrapped = [PY, "-S", "-c", RSS_LAUNCHER, str(out), *args]
        elapsed = timed(wrapped, env=env, cwd=cwd)
        kib = int(out.read_text().split()[-1])
    return elapsed, kib / 1024


@dataclass
class Sample:
    """Repeated timings of one thing (seconds)."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        """Return ``min–max`` in milliseconds, to show how noisy a median is."""
        return f"{min(self.values) * 1000:.0f}–{max(self.values) * 1000:.0f} ms"


def interleave(cmds: dict[str, Sequence[str | os.PathLike[str]]], *, env: dict[str, str],
               runs: int, cwd: Path | None = None,
               before: Callable[[str], None] | None = None) -> dict[str, Sample]:
    """Time several commands: one warm-up each, then ``runs`` rounds of each in turn.

    Args:
        cmds: Label to command.
        env: The children's environment.
        runs: Measured rounds.
        cwd: Working directory of the children.
        before: Called with the label before every run (untimed), e.g. to make an input new.

    Returns:
        Label to its measured sample (the warm-up is not in it).
    """
    samples = {label: Sample() for label in cmds}
    labels = list(cmds)
    for round_no in range(runs + 1):
        # Alternate the order (ABC, CBA, ...) so neither side always runs first.
        for label in labels if round_no % 2 == 0 else labels[::-1]:
            cmd = cmds[label]
            if before is not None:
                before(label)
            elapsed = timed(cmd, env=env, cwd=cwd)
            if round_no:
                samples[label].values.append(elapsed)
    return samples


def paired_ratio(a: Sample, b: Sample) -> float:
    """The median of the per-round ratios a/b: each round ran a and b back to back, so a
    slow spell of the machine (another tenant, writeback) cancels out of each ratio."""
    return statistics.median(x / y for x, y in zip(a.values, b.values, strict=True))


def ms(seconds: float) -> str:
    """Format seconds as milliseconds for a report line."""
    return f"{seconds * 1000:,.0f} ms"


# -- the machine line ----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB RAM"
    except OSError:
        pass
    return "RAM unknown"


def filesystem_of(path: Path) -> str:
    """Name the file system holding ``path`` (type and device, from /proc/mounts)."""
    best = ("", "?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) >= len(best[0]):
                best = (mnt, fstype, dev)
    except OSError:
        pass
    return f"{best[1]} on {best[2]}"


def _version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def _code_measured() -> str:
    """Which modelreg is measured: this checkout's src/ (with its commit) or another tree."""
    import modelreg

    where = Path(modelreg.__file__).resolve().parent
    if where != REPO / "src" / "modelreg":
        return f"from {where} (not this checkout's src/)"
    return f"at {_git_state()}"


def _git_state() -> str:
    try:
        head = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture=True).strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src",
                     "pyproject.toml"], cwd=REPO, capture=True).strip()
    except (BenchError, OSError):
        return "not a git checkout"
    return head + (" (src/ or pyproject.toml modified)" if dirty else "")


def machine_line(work_dir: Path) -> str:
    """Describe the machine, the interpreter and the code measured, on one line."""
    blas = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                     if k in os.environ) or "OPENBLAS_* unset"
    return (f"machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()}, "
            f"{platform.system()} {platform.release()} {platform.machine()}; work dir "
            f"{work_dir} ({filesystem_of(work_dir)}); Python {platform.python_version()}, "
            f"typer {_version_of('typer')}, rich {_version_of('rich')}; modelreg "
            f"{_version_of('modelreg')} {_code_measured()}; {blas}; load average "
            f"{os.getloadavg()[0]:.2f} at start; {time.strftime('%Y-%m-%d %H:%M %Z')}")


# -- the report ----------------------------------------------------------------------------


@dataclass
class Budget:
    """One budget of the issue, with what was measured against it."""

    workload: str
    what: str
    measured: str
    verdict: str  # PASS, MISS or n/a
    note: str = ""


class Report:
    """Prints figures as they come and keeps them for the summary and bench/out/*.json."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}
        self.budgets: list[Budget] = []

    @staticmethod
    def heading(text: str) -> None:
        print(f"\n{text}", flush=True)

    def line(self, key: str, label: str, value: Any, text: str) -> None:
        """Record figure ``key`` and print ``label: text``."""
        self.figures[key] = value
        print(f"  {label:<46} {text}", flush=True)

    @staticmethod
    def note(text: str) -> None:
        print(f"  {text}", flush=True)

    def budget(self, workload: str, what: str, value: float, limit: float, *,
               at_most: bool, unit: str = "x", note: str = "") -> None:
        """Judge ``value`` against ``limit`` (``at_most``: value <= limit, else >=)."""
        ok = value <= limit if at_most else value >= limit
        verdict = "PASS" if ok else "MISS"
        if unit == "x":
            measured = f"{value:.2f}{unit}"
        elif value < 100 and value != int(value):
            measured = f"{value:.2f} {unit}"
        else:
            measured = f"{value:,.0f} {unit}"
        self.budgets.append(Budget(workload, what, measured, verdict, note))
        print(f"  budget {what}: {measured} -> {verdict}" + (f" ({note})" if note else ""),
              flush=True)

    def verdict(self, workload: str, what: str, ok: bool, measured: str) -> None:
        """Record a yes/no budget (such as 'every call lands')."""
        self.budgets.append(Budget(workload, what, measured, "PASS" if ok else "MISS"))
        print(f"  budget {what}: {measured} -> {'PASS' if ok else 'MISS'}", flush=True)

    def unmeasured(self, workload: str, what: str, why: str) -> None:
        self.budgets.append(Budget(workload, what, "-", "n/a", why))
        print(f"  budget {what}: not measured ({why})", flush=True)

    def summary(self) -> None:
        print("\nBudgets (issue 6)")
        width = max(len(b.what) for b in self.budgets) if self.budgets else 10
        for b in self.budgets:
            extra = f"  {b.note}" if b.note else ""
            print(f"  {b.workload:<3} {b.what:<{width}}  {b.measured:>12}  {b.verdict}{extra}")
        missed = [b for b in self.budgets if b.verdict == "MISS"]
        print(f"  {len(self.budgets) - len(missed)} of {len(self.budgets)} met or not "
              f"measured; {len(missed)} missed", flush=True)

    def save(self, path: Path, machine: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"machine": machine, "settings": SETTINGS.__dict__, "figures": self.figures,
               "budgets": [b.__dict__ for b in self.budgets]}
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"\nfigures written to {path.relative_to(REPO)}")
