"""W11: requests per operation on S3 (issue 13: a small register in at most 6 requests, a
resolve of ``NAME@production`` in at most 3).

moto's S3 is served on loopback by one thread (tests/s3server.py), behind a layer that
records each request it answers: its method (LIST for a ListObjectsV2, a GET of the bucket
itself) and its key. A count is not a timing: it is the same on every machine and run.

- ``MODELREG_BENCH_W11_OPS`` (100) small registers, 64-byte files each making a new version
  of one model, through the Python API in this process on a store opened once: the cost of
  a register in a process that has made one before.
- The first register of a process: ``modelreg register`` as a new process (5 of them),
  which also opens the store (its format and config), checks the state its ref holds
  against the head commit, and, before its first ref write, probes the endpoint's
  conditional writes (docs/s3.md). Reported beside the budgets, not judged: the issue's
  budgets are per operation in a loop.
- As many resolves of ``NAME@production``, each on a store opened afresh (nothing cached),
  the opening counted apart; then the same resolve again on that store.
- ``modelreg show NAME@production`` as a new process (5 of them).
- The time per operation of the register and resolve loops, beside the same loops on a
  store in a local directory (a resolve: opening the store and ``show``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import modelreg
from bench.common import PY, BenchError, Report, child_env, run
from bench.workloads import ACTOR, Context, write_files

MODEL = "w11"
PROCESSES = 5
METHODS = ("GET", "PUT", "HEAD", "LIST", "DELETE")

Request = tuple[str, str]
"""The method and the key (under the store's prefix) of one request."""


class Recorder:
    """The requests the endpoint answered since they were last taken."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.log: list[Request] = []

    def __call__(self, method: str, path: str, status: str) -> None:
        _, _, key = path.lstrip("/").partition("/")  # path-style: /BUCKET/KEY
        self.log.append(("LIST" if method == "GET" and not key else method,
                         key.removeprefix(self.prefix)))

    def take(self) -> list[Request]:
        taken, self.log = self.log, []
        return taken


def _brief(op: list[Request]) -> str:
    """An operation's requests, in order, with object ids cut short."""
    return ", ".join(f"{method} {'/'.join(p[:8] if len(p) == 64 else p for p in key.split('/'))}"
                     for method, key in op)


def _report(r: Report, key: str, label: str, ops: list[list[Request]], limit: int | None,
            budget: str = "", note: str = "") -> None:
    """Print the median and max request count of ``ops``, by method; judge the median."""
    counts = sorted(len(op) for op in ops)
    median, worst = counts[len(counts) // 2], counts[-1]
    by = Counter(method for op in ops for method, _ in op)
    per = ", ".join(f"{m} {by[m] / len(ops):.3g}" for m in METHODS if by[m])
    r.line(key, label, median, f"median {median}, max {worst} of {len(ops)} ({per} each)")
    if limit is not None:
        r.budget("W11", budget, median, limit, at_most=True, unit="requests", note=note)


def _local_loops(d: Path, files: list[Path]) -> dict[str, float]:
    """The same loops on a store in a local directory: seconds per operation."""
    n = len(files) - 1
    modelreg.init(d)
    reg = modelreg.open_registry(d)
    modelreg.register(MODEL, [files[0]], registry=reg, git=False, actor=ACTOR)
    started = time.perf_counter()
    for f in files[1:]:
        modelreg.register(MODEL, [f], registry=reg, git=False, actor=ACTOR)
    times = {"register": (time.perf_counter() - started) / n}
    for stage in ("staging", "production"):
        modelreg.promote(f"{MODEL}@{n}", stage, registry=reg, actor=ACTOR)
    spent = {"resolve": 0.0, "resolve again": 0.0}
    for _ in range(n):
        started = time.perf_counter()
        fresh = modelreg.open_registry(d)
        for what in spent:
            modelreg.show(f"{MODEL}@production", registry=fresh)
            spent[what] += time.perf_counter() - started
            started = time.perf_counter()
    return {**times, **{k: v / n for k, v in spent.items()}}


def w11(ctx: Context) -> None:
    from tests.s3server import Faults, LoopbackServer, client_env, moto_app, new_bucket

    n = ctx.settings.w11_ops
    r = ctx.report
    r.heading(f"W11  requests per operation on S3 (moto on loopback, one thread): {n} small "
              f"registers and {n} resolves in this process, {PROCESSES} of each as new "
              "processes")
    d = ctx.workdir("w11")
    recorder = Recorder("registry/")
    server = LoopbackServer(Faults(moto_app(), answered=recorder))
    env = client_env(server.url, d)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        url = f"s3://{new_bucket(server.url, 'w11')}/registry"
        modelreg.init(url)  # its ref writes probe the endpoint: this process has its verdict
        files = write_files(d / "files", n + 1, "r")
        reg = modelreg.open_registry(url)
        modelreg.register(MODEL, [files[0]], registry=reg, git=False, actor=ACTOR)
        recorder.take()
        registers = []
        started = time.perf_counter()
        for f in files[1:]:
            modelreg.register(MODEL, [f], registry=reg, git=False, actor=ACTOR)
            registers.append(recorder.take())
        times = {"register": (time.perf_counter() - started) / n}
        for stage in ("staging", "production"):
            modelreg.promote(f"{MODEL}@{n}", stage, registry=reg, actor=ACTOR)
        recorder.take()
        opens, cold, warm = [], [], []
        spent = {"resolve": 0.0, "resolve again": 0.0}
        for _ in range(n):
            started = time.perf_counter()
            fresh = modelreg.open_registry(url)
            opens.append(recorder.take())
            for seen, what in ((cold, "resolve"), (warm, "resolve again")):
                if modelreg.show(f"{MODEL}@production", registry=fresh).version != n:
                    raise BenchError(f"W11: {MODEL}@production is not version {n}")
                seen.append(recorder.take())
                spent[what] += time.perf_counter() - started
                started = time.perf_counter()
        times.update({k: v / n for k, v in spent.items()})
        cli_env = child_env(**env)
        first = []
        for f in write_files(d / "cli", PROCESSES, "p"):
            run([PY, "-m", "modelreg", "-R", url, "register", MODEL, f, "--no-git"],
                env=cli_env)
            first.append(recorder.take())
        shows = []
        for _ in range(PROCESSES):
            run([PY, "-m", "modelreg", "-R", url, "show", f"{MODEL}@production"], env=cli_env)
            shows.append(recorder.take())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.close()
    local = _local_loops(d / "local", files)
    r.note(f"  the loops' time per operation, S3 on loopback against a local store "
           f"(this run, {n} each):")
    for what, secs in times.items():
        r.line(f"w11.ms_{what.replace(' ', '_')}", f"{what}: S3 (loopback)", secs * 1000,
               f"{secs * 1000:.1f} ms (local store: {local[what] * 1000:.2f} ms)")
    _report(r, "w11.register", "register, a process's second and later", registers, 6,
            "small register <= 6 requests (median)")
    r.note(f"  e.g. {_brief(registers[-1])}")
    # A new process pays, once, for what a process needs before its first change: no
    # budget of the (its budgets are per operation in a loop), reported beside them.
    _report(r, "w11.register_first", "register, a new process (CLI)", first, None)
    r.note("  = a register (5) + opening the store (format, config) + the ref's head commit "
           "(its state's check) + the conditional-write probe (2)")
    r.note(f"  e.g. {_brief(first[-1])}")
    _report(r, "w11.open", "open the store", opens, None)
    _report(r, "w11.resolve", "resolve NAME@production, store just opened", cold, 3,
            "resolve <= 3 requests (median)")
    r.note(f"  e.g. {_brief(cold[-1])}")
    _report(r, "w11.resolve_again", "resolve again, same store", warm, None)
    _report(r, "w11.show_process", "`show NAME@production`, a new process", shows, None)
    r.note("  = the resolve (3) + opening the store (its format; the config is read only "
           "by a command that needs the policy)")
    r.note(f"  e.g. {_brief(shows[-1])}")
