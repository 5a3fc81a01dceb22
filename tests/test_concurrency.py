"""Many real processes registering at once: every call lands, versions are 1..N, fsck clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import modelreg
from modelreg.registry import Registry
from tests.helpers import run_cli


def test_sixteen_parallel_cli_registers(registry: Registry, tmp_path: Path) -> None:
    store = registry.layout.root
    files = []
    for i in range(16):
        f = tmp_path / f"model-{i}.bin"
        f.write_bytes(f"model {i}".encode() * 100)
        files.append(f)
    env = {"MODELREG_DIR": str(store), "MODELREG_ACTOR": "ci@example.com"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelreg", "register", "shared", str(f), "--no-git",
             "--param", f"i={i}", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**__import__("os").environ, **env},
        )
        for i, f in enumerate(files)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    versions = sorted(json.loads(out)["version"] for out, _ in outputs)
    assert versions == list(range(1, 17))
    by_param = {json.loads(out)["lineage"]["params"]["i"]: json.loads(out)["version"]
                for out, _ in outputs}
    assert sorted(by_param) == list(range(16))
    rows = modelreg.versions("shared", registry=registry)
    assert [r.version for r in rows] == list(range(1, 17))
    for i, v in by_param.items():
        assert modelreg.show(f"shared@{v}", registry=registry).lineage.params == {"i": i}
    assert len(modelreg.history("shared", registry=registry)[1]) == 16
    result = run_cli("fsck", registry=store)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(store.rglob("*.lock"))


def test_parallel_identical_registers_make_one_version(registry: Registry,
                                                       model_file: Path) -> None:
    store = registry.layout.root
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelreg", "register", "same", str(model_file), "--no-git",
             "--param", "a=1", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**__import__("os").environ, "MODELREG_DIR": str(store)},
        )
        for _ in range(6)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {r["version"] for r in results} == {1}
    assert sum(r["created"] for r in results) == 1


_LOOP = """
import json, sys
from pathlib import Path
import modelreg
reg = modelreg.api.open_registry(sys.argv[1])
got = []
for j in range(int(sys.argv[3])):
    f = Path(sys.argv[2]) / f"w{sys.argv[4]}-{j}.bin"
    f.write_bytes(f"writer {sys.argv[4]} model {j}".encode())
    got.append(modelreg.register("busy", [f], registry=reg, git=False).version.version)
print(json.dumps(got))
"""


def test_sixteen_processes_times_twenty_five_registers_land_as_1_to_400(
        registry: Registry, tmp_path: Path) -> None:
    store = registry.layout.root
    procs = [
        subprocess.Popen([sys.executable, "-c", _LOOP, str(store), str(tmp_path), "25", str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(16)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    got = [v for out, _ in outputs for v in json.loads(out)]
    assert sorted(got) == list(range(1, 401))
    for out, _ in outputs:  # each writer's versions rise: none was numbered twice
        mine = json.loads(out)
        assert mine == sorted(mine)
    assert [r.version for r in modelreg.versions("busy", registry=registry)] == list(
        range(1, 401))
    report = modelreg.fsck(registry=registry)
    assert report.ok, report.problems
    assert report.events == 400
