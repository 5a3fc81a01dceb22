"""The peers: MLflow, GTO and DVC, each in its own virtual environment under bench/.peers/.

`Peers.install()` creates bench/.peers/{mlflow,gto,dvc} with `python -m venv` and installs the
package with pip (once; a stamp file records the versions). A peer that cannot be installed
is reported with pip's last words and left out; the rest of the run goes on.

What each peer does per workload (timed the same way as modelreg, see bench/common.py):

- W1 MLflow: a fresh Python process resolving `NAME@production` (a registered-model alias)
  against a SQLite store holding the same models and versions (bench/mlflow_peer.py).
- W1 GTO: `gto show NAME#production` (GTO's spelling of "the version in production") in a
  git repository holding the same versions as tags, made with one `git fast-import`.
- W2 GTO: the same shell loop as modelreg's, one `gto register NAME COMMIT` per line; fewer
  calls by default (MODELREG_BENCH_W2_GTO_CALLS), compared per call. GTO's calls get slower
  as tags accumulate, so a shorter loop flatters GTO, never modelreg.
- W4 DVC: `dvc add` of the same file in a `dvc init --no-scm` directory, then `sync -f`.
- W7 MLflow: `create_model_version` in a loop on one model, SQLite store (bench/mlflow_peer.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    PEERS_DIR,
    PY,
    REPO,
    BenchError,
    child_env,
    interleave,
    ms,
    run,
    timed,
    timed_rss,
)

if TYPE_CHECKING:
    from bench.workloads import Context

MLFLOW_SCRIPT = REPO / "bench" / "mlflow_peer.py"
PIP_TIMEOUT = 1800  # seconds per peer; a first install of mlflow takes about a minute here
PEER_PACKAGES = {"mlflow": ["mlflow"], "gto": ["gto"], "dvc": ["dvc"]}


def install(name: str) -> tuple[Path | None, str]:
    """Create (or reuse) bench/.peers/NAME; return its bin directory and versions, or why not."""
    venv = PEERS_DIR / name
    stamp = venv / ".installed"
    bin_dir = venv / "bin"
    if stamp.exists() and (bin_dir / "python").exists():
        return bin_dir, stamp.read_text().strip()
    print(f"  installing {name} into {venv.relative_to(REPO)} (pip; once) ...", flush=True)
    start = time.perf_counter()
    try:
        if not (bin_dir / "python").exists():
            run([PY, "-m", "venv", venv])
        proc = subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", *PEER_PACKAGES[name]],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not be installed: {str(exc).strip()[-400:]}"
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        return None, f"pip install {name} failed (exit {proc.returncode}):\n    {tail}"
    freeze = run([bin_dir / "python", "-m", "pip", "list", "--format=json",
                  "--disable-pip-version-check"], capture=True)
    wanted = {"mlflow", "gto", "dvc", "sqlalchemy", "scmrepo", "dulwich", "pygit2"}
    versions = ", ".join(f"{p['name']} {p['version']}" for p in json.loads(freeze)
                         if p["name"].lower() in wanted)
    stamp.write_text(versions + "\n")
    print(f"  installed {name} in {time.perf_counter() - start:.0f} s: {versions}", flush=True)
    return bin_dir, versions


class Peers:
    """The installed peers, and their side of each workload."""

    def __init__(self) -> None:
        self.mlflow: Path | None = None  # the venv's python
        self.gto: Path | None = None  # the gto executable
        self.dvc: Path | None = None  # the dvc executable
        self.versions: dict[str, str] = {}

    @classmethod
    def install(cls) -> Peers:
        peers = cls()
        print("\nPeers (bench/.peers/)")
        for name in PEER_PACKAGES:
            bin_dir, info = install(name)
            if bin_dir is None:
                print(f"  {name}: left out; {info}", flush=True)
                continue
            peers.versions[name] = info
            print(f"  {name}: {info}", flush=True)
            if name == "mlflow":
                peers.mlflow = bin_dir / "python"
            elif name == "gto":
                peers.gto = bin_dir / "gto"
            else:
                peers.dvc = bin_dir / "dvc"
        return peers

    # -- W1 ------------------------------------------------------------------------------

    def w1(self, ctx: Context, show: float, names: list[str], per_model: int,
           target: str) -> None:
        r = ctx.report
        if self.mlflow is None:
            r.unmeasured("W1", "MLflow alias lookup >= 10x show", "MLflow could not be installed")
        else:
            d = ctx.workdir("w1-mlflow")
            db = d / "mlflow.db"
            env = child_env()
            start = time.perf_counter()
            run([self.mlflow, MLFLOW_SCRIPT, "setup", db, len(names), per_model, "production"],
                env=env)
            r.note(f"(MLflow setup: {len(names) * per_model:,} versions in SQLite, "
                   f"{time.perf_counter() - start:.0f} s, not timed)")
            runs = max(3, ctx.settings.slow_runs + 2)
            sample = interleave({"mlflow": [self.mlflow, MLFLOW_SCRIPT, "alias", db, target,
                                            "production"]}, env=env, runs=runs)["mlflow"]
            t = sample.median
            r.line("w1.mlflow", f"MLflow fresh process, alias {target}@production", t,
                   f"{ms(t)}  ({sample.spread()}, median of {runs})")
            r.budget("W1", "MLflow alias lookup >= 10x show", t / show, 10.0, at_most=False)
        if self.gto is None:
            r.note("GTO could not be installed: no `gto show` figure")
            return
        d = ctx.workdir("w1-gto")
        fast_import_registry(d, names, per_model, stage="production")
        cmd = [self.gto, "show", f"{target}#production"]
        out = run(cmd, env=child_env(), cwd=d, capture=True)
        if f"v0.0.{per_model}" not in out:
            r.note(f"warning: `gto show` did not name v0.0.{per_model}: {out.strip()[:200]}")
        sample = interleave({"gto": cmd}, env=child_env(), cwd=d,
                            runs=ctx.settings.runs)["gto"]
        t = sample.median
        r.line("w1.gto", f"gto show {target}#production", t,
               f"{ms(t)}  ({sample.spread()}; {t / show:.1f}x modelreg; no budget)")

    # -- W2 ------------------------------------------------------------------------------

    def w2(self, ctx: Context, per_call: float, models: int) -> None:
        r = ctx.report
        if self.gto is None:
            r.unmeasured("W2", "GTO loop >= 4x slower per call", "GTO could not be installed")
            return
        n = ctx.settings.w2_gto_calls
        d = ctx.workdir("w2-gto")
        commits = -(-n // models)
        fast_import_registry(d, [], commits, stage=None)
        shas = run(["git", "rev-list", "--reverse", "HEAD"], cwd=d, capture=True).split()
        (d / "pairs.txt").write_text("".join(
            f"model-{i % models} {shas[i // models]}\n" for i in range(n)))
        from bench.workloads import register_loop_script

        elapsed = timed(["bash", "-c", register_loop_script(str(self.gto))],
                        env=child_env(EXTRA=""), cwd=d)
        tags = run(["git", "tag", "--list", "*@v*"], cwd=d, capture=True).split()
        gto_call = elapsed / n
        r.line("w2.gto_total", f"{n:,} `gto register` calls, whole loop", elapsed,
               f"{elapsed:.1f} s ({len(tags):,} tags made)")
        r.line("w2.gto_per_call", "gto register per call", gto_call, ms(gto_call))
        if len(tags) != n:
            raise BenchError(f"W2: gto made {len(tags)} tags for {n} calls")
        r.budget("W2", "GTO loop >= 4x slower per call", gto_call / per_call, 4.0,
                 at_most=False, note=f"{n} GTO calls against modelreg's loop")

    # -- W4 ------------------------------------------------------------------------------

    def dvc_prepare(self, d: Path) -> None:
        assert self.dvc is not None
        run([self.dvc, "init", "--no-scm", "-q"], env=child_env(), cwd=d)

    def dvc_add(self, d: Path, big: Path) -> tuple[float, float]:
        """One timed `dvc add` (then `sync -f`) of a file whose content is new."""
        assert self.dvc is not None
        shutil.rmtree(d / ".dvc" / "cache", ignore_errors=True)
        (d / f"{big.name}.dvc").unlink(missing_ok=True)
        env = child_env()
        start = time.perf_counter()
        _, peak = timed_rss([self.dvc, "add", "-q", big.name], env=env, cwd=d)
        run(["sync", "-f", big], env=env)
        return time.perf_counter() - start, peak

    # -- W7 ------------------------------------------------------------------------------

    def w7_run(self, ctx: Context, i: int, n: int) -> dict[str, Any]:
        """One run of W7 for MLflow: ``n`` versions through create_model_version."""
        assert self.mlflow is not None
        d = ctx.workdir(f"w7-mlflow-{i}")
        out = run([self.mlflow, MLFLOW_SCRIPT, "loop", d / "mlflow.db", n], env=child_env(),
                  capture=True)
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def w7(self, ctx: Context, rate: float, n: int, results: list[dict[str, Any]]) -> None:
        results = sorted(results, key=lambda x: x["rate"])
        mid = results[len(results) // 2]
        r = ctx.report
        r.line("w7.mlflow_rate", "MLflow create_model_version (SQLite)", mid["rate"],
               f"{mid['rate']:,.0f} versions/s (runs "
               f"{', '.join(str(round(x['rate'])) for x in results)}; SQLite journal "
               f"{mid['journal_mode']}, synchronous={mid['synchronous']})")
        if mid["landed"] != n:
            raise BenchError(f"W7: MLflow landed {mid['landed']} of {n}")
        r.budget("W7", "rate >= MLflow's", rate / mid["rate"], 1.0, at_most=False,
                 note=f"{rate:,.0f} against {mid['rate']:,.0f} versions/s")


    # -- W9 ------------------------------------------------------------------------------

    def w9(self, ctx: Context, model: Path, body: bytes, ours_rps: float, secs: int) -> None:
        """`mlflow models serve` of the same model (exported by modelreg), 8 clients."""
        import socket

        from bench.workloads import _load, _wait_serving

        assert self.mlflow is not None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        mlflow = self.mlflow.parent / "mlflow"
        # MLflow starts uvicorn by name from a shell: its environment's bin goes on PATH.
        path = f"{self.mlflow.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        proc = subprocess.Popen([mlflow, "models", "serve", "-m", model, "--env-manager",
                                 "local", "--host", "127.0.0.1", "--port", str(port)],
                                env=child_env(PATH=path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        r = ctx.report
        try:
            _wait_serving(port, proc, body)
            theirs = _load(port, 8, secs, body)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        r.line("w9.mlflow", "mlflow models serve, 8 client(s)", theirs,
               f"{theirs['rps']:,.0f} req/s, p50 {theirs['p50'] * 1000:.2f} ms, "
               f"p99 {theirs['p99'] * 1000:.2f} ms")
        r.budget("W9", "throughput >= 3x mlflow models serve", ours_rps / theirs["rps"], 3.0,
                 at_most=False, note=f"{ours_rps:,.0f} against {theirs['rps']:,.0f} req/s")

    # -- W10 -----------------------------------------------------------------------------

    def w10(self, ctx: Context, ours: float, models: int, per_model: int,
            text: str) -> None:
        assert self.mlflow is not None
        d = ctx.workdir("w10-mlflow")
        db = d / "mlflow.db"
        env = child_env()
        start = time.perf_counter()
        run([self.mlflow, MLFLOW_SCRIPT, "tagged", db, models, per_model], env=env)
        r = ctx.report
        r.note(f"(MLflow set-up: {models * per_model:,} tagged versions in SQLite, "
               f"{time.perf_counter() - start:.0f} s, not timed)")
        sample = interleave({"mlflow": [self.mlflow, MLFLOW_SCRIPT, "search", db, text]},
                            env=env, runs=max(3, ctx.settings.slow_runs))["mlflow"]
        r.line("w10.mlflow", f"MLflow search_model_versions({text!r})", sample.median,
               f"{sample.median:.2f} s ({sample.spread()})")
        r.budget("W10", "search faster than MLflow's", sample.median / ours, 1.0,
                 at_most=False, note=f"{ours:.2f} s against {sample.median:.2f} s")


def fast_import_registry(d: Path, names: list[str], per_model: int,
                         stage: str | None) -> None:
    """Make a git repository of ``per_model`` commits; tag each as a version of each name.

    The tags are GTO's own: ``NAME@v0.0.N`` (annotated, as `gto register` makes them) on
    commit N, and ``NAME#STAGE#1`` on the last commit when ``stage`` is given (as
    `gto assign` makes it). One `git fast-import` writes everything.
    """
    env = child_env()
    run(["git", "init", "-q", "-b", "main", d], env=env)
    parts: list[str] = []
    when = 1_700_000_000

    def data(text: str) -> str:
        return f"data {len(text.encode())}\n{text}\n"

    for c in range(1, per_model + 1):
        parts.append(f"commit refs/heads/main\nmark :{c}\n"
                     f"committer bench <bench@example.invalid> {when + c} +0000\n"
                     + data(f"training run {c}"))
    for i, name in enumerate(names):
        for v in range(1, per_model + 1):
            parts.append(f"tag {name}@v0.0.{v}\nfrom :{v}\n"
                         f"tagger bench <bench@example.invalid> {when + 10_000 + i * 100 + v} "
                         "+0000\n" + data(f"Registering artifact {name} version v0.0.{v}"))
        if stage:
            parts.append(f"tag {name}#{stage}#1\nfrom :{per_model}\n"
                         f"tagger bench <bench@example.invalid> {when + 20_000_000 + i} +0000\n"
                         + data(f"Assigning stage {stage} to artifact {name} version "
                                f"v0.0.{per_model}"))
    proc = subprocess.run(["git", "fast-import", "--quiet"], input="".join(parts), text=True,
                          cwd=d, env=env, capture_output=True)
    if proc.returncode:
        raise BenchError(f"git fast-import failed: {proc.stderr.strip()[-500:]}")
    run(["git", "checkout", "-q", "main"], env=env, cwd=d)
