"""Profiles behind docs/performance.md: where the time of a missed budget goes.

    python -m bench.profile show        # W1: `modelreg show NAME@production`, fresh process
    python -m bench.profile register    # W2: one `modelreg register`, fresh process
    python -m bench.profile api         # W7: 500 `modelreg.register` calls in one process
    python -m bench.profile all

Each prints a summary of `python -X importtime` (start-up cost by package) for the CLI cases,
and writes a pyinstrument text profile to bench/out/profile-NAME.txt. pyinstrument is not a
dependency of modelreg: it is installed once with `pip install --target
bench/.peers/pyinstrument` and put on PYTHONPATH of the profiled process only. Children run
with the same bytecode cache as the benchmark (bench/common.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import modelreg
from bench.common import OUT, PEERS_DIR, PY, REPO, child_env, run
from bench.workloads import MODELREG, build_models, write_files

PYINSTRUMENT = PEERS_DIR / "pyinstrument"

API_LOOP = """
import sys, tempfile, time
from pathlib import Path
import modelreg
reg, _ = modelreg.init(tempfile.mkdtemp(dir=sys.argv[1]))  # a fresh store for every run
files = sorted(Path(sys.argv[2]).iterdir())
for f in files[:5]:
    modelreg.register("warm-up", [f], registry=reg, git=False)
start = time.perf_counter()
for f in files[5:]:
    modelreg.register("w7", [f], registry=reg, git=False)
print(f"{(len(files) - 5) / (time.perf_counter() - start):.0f} versions/s", file=sys.stderr)
"""


def ensure_pyinstrument() -> bool:
    if (PYINSTRUMENT / "pyinstrument").is_dir():
        return True
    print(f"installing pyinstrument into {PYINSTRUMENT.relative_to(REPO)} (pip --target) ...")
    proc = subprocess.run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(PYINSTRUMENT), "pyinstrument"],
                          capture_output=True, text=True)
    if proc.returncode:
        print(f"pyinstrument could not be installed: {proc.stderr.strip()[-300:]}")
        return False
    return True


def importtime_summary(cmd: list[str], env: dict[str, str]) -> None:
    """Run script ``cmd`` under -X importtime (after a warm-up); sum self time by package."""
    run(cmd, env=env)
    proc = subprocess.run([PY, "-X", "importtime", *cmd], env=env, text=True,
                          capture_output=True)
    by_pkg: dict[str, int] = defaultdict(int)
    heavy: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|")
        mod = name.strip()
        top = mod.split(".")[0]
        if top == "modelreg" and mod.count(".") >= 1:
            top = ".".join(mod.split(".")[:2])
        by_pkg[top] += int(self_us)
        if mod.startswith("modelreg"):
            heavy.append((int(cumulative), mod))
    total = sum(by_pkg.values())
    print(f"  -X importtime: {total / 1000:.0f} ms of imports (self time; importtime itself "
          "inflates it), by package:")
    for pkg, us in sorted(by_pkg.items(), key=lambda kv: -kv[1])[:18]:
        print(f"    {us / 1000:6.1f} ms  {pkg}")
    print("  modelreg modules by cumulative import time:")
    for us, mod in sorted(heavy, reverse=True)[:10]:
        print(f"    {us / 1000:6.1f} ms  {mod}")


def pyinstrument(name: str, args: list[str], env: dict[str, str], cwd: Path | None = None
                 ) -> None:
    if not ensure_pyinstrument():
        return
    out = OUT / f"profile-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    penv = {**env, "PYTHONPATH": os.pathsep.join(
        p for p in (str(PYINSTRUMENT), env.get("PYTHONPATH", "")) if p)}
    run([PY, "-m", "pyinstrument", "-i", "0.0002", "-r", "text", "-o", out, *args],
        env=penv, cwd=cwd)  # warm-up (bytecode cache)
    run([PY, "-m", "pyinstrument", "-i", "0.0002", "-r", "text", "-o", out, *args],
        env=penv, cwd=cwd)
    print(f"  pyinstrument profile: {out.relative_to(REPO)}")


def cli_script(tmp: Path, argv: list[str]) -> Path:
    """A script that runs the console entry point with ``argv`` (pyinstrument needs a file)."""
    script = tmp / f"cli_{argv[0]}.py"
    script.write_text("import sys\nfrom modelreg.cli import main\n"
                      f"sys.argv = ['modelreg', *{argv!r}]\nmain()\n")
    return script


def profile_show(tmp: Path) -> None:
    print("\nshow: `modelreg show model-7@production` on 500 versions over 50 models")
    reg, _ = modelreg.init(tmp / "show")
    build_models(reg, [f"model-{m}" for m in range(50)], 10, tmp)
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    importtime_summary([str(MODELREG), "show", "model-7@production"], env)
    pyinstrument("show", [str(cli_script(tmp, ["show", "model-7@production"]))], env)


def profile_register(tmp: Path) -> None:
    print("\nregister: one `modelreg register` (--no-git) into a model of 10 versions")
    reg, _ = modelreg.init(tmp / "register")
    build_models(reg, ["model"], 10, tmp, stage_last=False)
    env = child_env(MODELREG_DIR=str(reg.layout.root))
    f = tmp / "new.bin"
    f.write_bytes(b"first")
    importtime_summary([str(MODELREG), "register", "model", str(f), "--no-git", "--force"], env)
    pyinstrument("register", [str(cli_script(tmp, ["register", "model", str(f), "--no-git",
                                                   "--force"]))], env)


def profile_api(tmp: Path) -> None:
    print("\napi: 500 `modelreg.register` calls on one model in one process (W7)")
    files = tmp / "api-files"
    write_files(files, 505, "v")
    script = tmp / "api_loop.py"
    script.write_text(API_LOOP)
    (tmp / "api").mkdir()
    pyinstrument("api", [str(script), str(tmp / "api"), str(files)], child_env())


PROFILES = {"show": profile_show, "register": profile_register, "api": profile_api}


def main() -> None:
    names = sys.argv[1:] or ["all"]
    if names == ["all"]:
        names = list(PROFILES)
    with tempfile.TemporaryDirectory(prefix="modelreg-profile-") as tmp:
        for name in names:
            if name not in PROFILES:
                sys.exit(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}, all")
            PROFILES[name](Path(tmp))


if __name__ == "__main__":
    main()
