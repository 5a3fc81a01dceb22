"""The pre-commit hook, used from a separate git repository (as a consumer would)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelreg

PROJECT = Path(__file__).resolve().parents[1]
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")
SEED = {"inputs": {"distance": "float", "is_hazardous": "bool"},
        "outputs": {"estimated_time_minutes": "float"}}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=T", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(not PRE_COMMIT.exists(), reason="pre-commit is a dev dependency")
def test_contract_hook_from_another_repository(tmp_path: Path) -> None:
    models = tmp_path / "models"
    reg, _ = modelreg.init(models)
    weights = tmp_path / "eta.bin"
    weights.write_bytes(b"weights")
    modelreg.register("eta", [weights], registry=reg, git=False, signature=SEED, actor="sci")

    consumer = tmp_path / "consumer"
    (consumer / "payloads").mkdir(parents=True)
    good = consumer / "payloads" / "eta.json"
    good.write_text(json.dumps([{"distance": 12.5, "is_hazardous": False}]))
    (consumer / "modelreg-contract.toml").write_text(
        f'registry = "{models}"\n\n[models]\neta = "1"\n\n'
        '[[examples]]\nmodel = "eta"\npayload = "payloads/eta.json"\n')
    git(consumer, "init", "-q")
    git(consumer, "add", ".")
    git(consumer, "commit", "-qm", "consumer")

    # Each try-repo installs the hook's environment afresh, in a store of its own: no
    # byte-compiling there (PIP_COMPILE=0) saves a good part of each install.
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PIP_COMPILE": "0"}
    env.pop("MODELREG_DIR", None)
    cmd = [str(PRE_COMMIT), "try-repo", str(PROJECT), "modelreg-contract", "--all-files"]
    # The two runs are independent installs, so they run at once: this one on the consumer
    # as committed, the other on a copy whose payload was then edited.
    edited = tmp_path / "consumer-edited"
    shutil.copytree(consumer, edited, symlinks=True)
    (edited / "payloads" / "eta.json").write_text(
        json.dumps([{"distance": "12.5", "is_hazardous": False}]))
    runs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for cwd in (consumer, edited)]
    try:
        outputs = [p.communicate(timeout=900) for p in runs]
    finally:
        for p in runs:
            if p.poll() is None:
                p.kill()
    ok, bad = (subprocess.CompletedProcess(cmd, p.returncode, out, err)
               for p, (out, err) in zip(runs, outputs, strict=True))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "modelreg contract check" in ok.stdout

    assert bad.returncode != 0
    assert 'row 1, column "distance": expected float, got string "12.5"' in bad.stdout
    shutil.rmtree(tmp_path / "pre-commit-home", ignore_errors=True)
