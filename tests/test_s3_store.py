"""A whole store on S3 through the command line: moto's S3 on loopback, real processes.

`modelreg init s3://BUCKET/PREFIX`, then every command with `-R s3://…` (or
`MODELREG_DIR`): register, show, versions, history, promote, approve, alias, pull, fsck;
16 processes registering into one model land as versions 1..16; 8 processes racing to
promote leave exactly one version in production and a whole chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytest.importorskip("boto3")
pytest.importorskip("moto")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from tests.s3server import LoopbackServer, moto_app

    server = LoopbackServer(moto_app())
    yield server.url
    server.close()


@pytest.fixture
def store(endpoint: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    from tests.s3server import client_env, new_bucket

    env = client_env(endpoint, tmp_path)
    url = f"s3://{new_bucket(endpoint)}/team/registry"
    done = run_cli("init", url, env=env)
    assert done.returncode == 0, done.stderr
    assert "Created modelreg store in s3://" in done.stdout + done.stderr
    return url, env


def cli(store: tuple[str, dict[str, str]], *args: str | Path,
        actor: str | None = None) -> subprocess.CompletedProcess[str]:
    url, env = store
    return run_cli("-R", url, *args, env={**env, **({"MODELREG_ACTOR": actor} if actor
                                                      else {})})


def test_a_store_on_s3_does_what_a_store_on_disk_does(store: tuple[str, dict[str, str]],
                                                       tmp_path: Path) -> None:
    url, env = store
    again = run_cli("init", url, env=env)
    assert again.returncode == 0 and "Found existing" in again.stdout + again.stderr
    files = []
    for i in range(3):
        f = tmp_path / f"model-{i}.bin"
        f.write_bytes(os.urandom(1000) + bytes([i]))
        files.append(f)
        done = cli(store, "register", "churn", f, "--no-git", "-m", f"auc={0.8 + i / 100}")
        assert done.returncode == 0, done.stderr
    assert cli(store, "promote", "churn@2", "--to", "staging").returncode == 0
    assert cli(store, "approve", "churn@2", "--stage", "production",
               actor="reviewer@example.com").returncode == 0
    assert cli(store, "promote", "churn@2", "--to", "production").returncode == 0
    assert cli(store, "alias", "set", "churn", "champion", "3").returncode == 0
    shown = json.loads(cli(store, "show", "churn@production", "--json").stdout)
    assert (shown["version"], shown["stage"]) == (2, "production")
    assert json.loads(cli(store, "show", "churn@champion", "--json").stdout)["version"] == 3
    versions = json.loads(cli(store, "versions", "churn", "--json").stdout)
    assert [v["version"] for v in versions["versions"]] == [1, 2, 3]
    history = json.loads(cli(store, "history", "churn", "--json").stdout)["events"]
    assert [e["action"] for e in history][:4] == ["alias", "promote", "approve", "promote"]
    pulled = tmp_path / "pulled"
    assert cli(store, "pull", "churn@2", pulled).returncode == 0
    assert (pulled / "model-1.bin").read_bytes() == files[1].read_bytes()
    found = json.loads(cli(store, "search", "metrics.auc > 0.805", "--json").stdout)
    assert [h["ref"] for h in found] == ["churn@3", "churn@2"]
    fsck = cli(store, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    env_only = run_cli("show", "churn@latest", env={**env, "MODELREG_DIR": url})
    assert env_only.returncode == 0, env_only.stderr


def test_a_missing_store_and_a_missing_bucket(store: tuple[str, dict[str, str]]) -> None:
    url, env = store
    nowhere = run_cli("-R", url + "-elsewhere", "list", env=env)
    assert nowhere.returncode == 3
    assert "modelreg init" in nowhere.stderr
    no_bucket = run_cli("-R", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", "list", env=env)
    assert no_bucket.returncode == 3


def _spawn(store: tuple[str, dict[str, str]], *args: str | Path) -> subprocess.Popen[str]:
    url, env = store
    return subprocess.Popen([sys.executable, "-m", "modelreg", "-R", url, *map(str, args)],
                            env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_racing_writers_on_s3(store: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    procs = []
    for i in range(16):
        f = tmp_path / f"m{i}.bin"
        f.write_bytes(os.urandom(64) + bytes([i]))
        procs.append(_spawn(store, "register", "shared", f, "--no-git", "--json"))
    made = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        made.append(json.loads(out)["version"])
    assert sorted(made) == list(range(1, 17))
    for v in range(1, 9):
        assert cli(store, "promote", f"shared@{v}", "--to", "staging").returncode == 0
    racers = [_spawn(store, "promote", f"shared@{v}", "--to", "production",
                     "--allow-breaking") for v in range(1, 9)]
    for p in racers:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    versions = json.loads(cli(store, "versions", "shared", "--json").stdout)
    assert [v["stage"] for v in versions["versions"]].count("production") == 1
    history = json.loads(cli(store, "history", "shared", "--json").stdout)["events"]
    seqs = [e["seq"] for e in history]
    assert seqs == list(range(len(seqs), 0, -1))  # one chain, nothing lost
    assert sum(e["to"] == "production" for e in history) == 8
    assert cli(store, "fsck").returncode == 0


def test_copy_a_registry_to_s3_and_back(store: tuple[str, dict[str, str]],
                                        tmp_path: Path) -> None:
    url, env = store
    disk = tmp_path / "disk"
    assert run_cli("init", disk, env=env).returncode == 0
    (disk / ".modelreg" / "config.toml").write_text(
        '[stages.production]\nexclusive = true\nrequire_approvals = 1\n')
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20))  # streamed through a file, not held in memory
    for f in (big, tmp_path / "small.bin"):
        if not f.exists():
            f.write_bytes(b"small model\n")
        done = run_cli("register", "fraud", f, "--no-git", registry=disk / ".modelreg",
                       env=env)
        assert done.returncode == 0, done.stderr
    copied = run_cli("copy", disk, url, "--json", env=env)
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["models"] == ["fraud"] and report["objects"] >= 4
    # The destination existed (made by `init`): it keeps its own policy.
    assert report["config"] is False
    on_s3 = json.loads(cli(store, "history", "fraud", "--json").stdout)
    on_disk = json.loads(run_cli("history", "fraud", "--json", registry=disk / ".modelreg",
                                 env=env).stdout)
    assert on_s3 == on_disk
    again = json.loads(run_cli("copy", disk, url, "--json", env=env).stdout)
    assert (again["objects"], again["models"], again["same"]) == (0, [], ["fraud"])
    back = tmp_path / "back"
    home = run_cli("copy", url, back, "--json", env=env)
    assert home.returncode == 0, home.stderr
    assert json.loads(home.stdout)["config"] is True  # made by the copy: the policy too
    pulled = tmp_path / "pulled"
    assert run_cli("pull", "fraud@1", pulled, registry=back / ".modelreg",
                   env=env).returncode == 0
    assert (pulled / "big.bin").read_bytes() == big.read_bytes()
    assert run_cli("fsck", registry=back / ".modelreg", env=env).returncode == 0
    # A model the destination holds in another state is never overwritten.
    assert run_cli("register", "fraud", big, "--no-git", "--force", registry=disk / ".modelreg",
                   env=env).returncode == 0
    clash = run_cli("copy", disk, url, env=env)
    assert clash.returncode == 4
    assert "fraud" in clash.stderr and "nothing was overwritten" in clash.stderr
    assert json.loads(cli(store, "versions", "fraud", "--json").stdout)["versions"][-1][
        "version"] == 2


def test_export_and_bundles_on_s3(store: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """export (ONNX with its parity proof, and a bundle) and a bundle's import work on a
    store with no directory: their scratch files go to the system's temporary directory."""
    import pickle

    import numpy as np
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    model = tmp_path / "ridge.pkl"
    model.write_bytes(pickle.dumps(Ridge().fit(x, x @ [1.0, 2.0, 3.0])))
    assert cli(store, "register", "ridge", model, "--no-git").returncode == 0
    onnx = cli(store, "export", "ridge@1", "--allow-pickle", "--json")
    assert onnx.returncode == 0, onnx.stderr
    assert json.loads(onnx.stdout)["version"] == 2
    bundle = tmp_path / "ridge.zip"
    done = cli(store, "export", "ridge@2", "--to", "bundle", "-o", bundle)
    assert done.returncode == 0, done.stderr
    url, env = store
    other = f"{url}-copy"
    assert run_cli("init", other, env=env).returncode == 0
    imported = run_cli("-R", other, "import", bundle, "--json", env=env)
    assert imported.returncode == 0, imported.stderr
    shown = json.loads(run_cli("-R", other, "show", "ridge@1", "--json", env=env).stdout)
    assert shown["artifact"]["digest"] == json.loads(
        cli(store, "show", "ridge@2", "--json").stdout)["artifact"]["digest"]
    assert run_cli("-R", other, "fsck", env=env).returncode == 0


def test_a_policy_with_hooks_on_s3_refuses_every_change(store: tuple[str, dict[str, str]],
                                                        endpoint: str, tmp_path: Path) -> None:
    # Hooks run as commands beside a store on a file system; a store on S3 would skip them
    # silently, so a change is refused before anything is stored. Reading needs no policy.
    import boto3

    url, env = store
    f = tmp_path / "model.bin"
    f.write_bytes(os.urandom(100))
    assert cli(store, "register", "churn", f, "--no-git").returncode == 0
    bucket, prefix = url[len("s3://"):].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/refs/config",
                  Body=b'[[hooks]]\non = ["promote"]\ncommand = "true"\n')
    shown = cli(store, "show", "churn@1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == 1
    g = tmp_path / "other.bin"
    g.write_bytes(os.urandom(100))
    for args in (("register", "churn", g, "--no-git"), ("promote", "churn@1", "--to", "staging")):
        done = cli(store, *args)
        assert done.returncode == 2, done.stderr
        assert "names hooks" in done.stderr
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/objects/")["KeyCount"]
    assert objects == 2  # version 1's file and commit: nothing of the refused register
    assert [v["version"] for v in json.loads(
        cli(store, "versions", "churn", "--json").stdout)["versions"]] == [1]
