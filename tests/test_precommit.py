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

    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env.pop("MODELREG_DIR", None)
    cmd = [str(PRE_COMMIT), "try-repo", str(PROJECT), "modelreg-contract", "--all-files"]
    ok = subprocess.run(cmd, cwd=consumer, env=env, capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "modelreg contract check" in ok.stdout

    good.write_text(json.dumps([{"distance": "12.5", "is_hazardous": False}]))
    bad = subprocess.run(cmd, cwd=consumer, env=env, capture_output=True, text=True,
                         timeout=900)
    assert bad.returncode != 0
    assert 'row 1, column "distance": expected float, got string "12.5"' in bad.stdout
    shutil.rmtree(tmp_path / "pre-commit-home", ignore_errors=True)
