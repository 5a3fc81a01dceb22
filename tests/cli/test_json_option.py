"""Every command that has --json honours it: one JSON document on stdout, unlike its text.

One store goes through every such command, each run once without --json and once with it.
The table of runs must name every command that has the option (found in the click tree), so
a new command with --json is tested here or this test fails.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

SEED = {"inputs": {"distance": "float", "is_hazardous": "bool"},
        "outputs": {"estimated_time_minutes": "float"}}


def commands_with_json() -> set[str]:
    import typer.main

    from modelreg.cli import app

    found: set[str] = set()

    def walk(cmd, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        elif any("--json" in getattr(p, "opts", []) for p in cmd.params):
            found.add(path)

    walk(typer.main.get_command(app), "")
    return found


def _path(args: list[str]) -> str:
    """The command path of an invocation (``alias rm``), without options and arguments."""
    groups = {"alias", "signature", "contract"}
    return " ".join(args[:2]) if args[0] in groups else args[0]


def test_every_json_option_is_honoured(cli, project: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    def run(*args: str | Path, code: int = 0):
        result = cli(*args)
        assert result.exit_code == code, (args, result.output)
        return result

    human: dict[str, str] = {}
    as_json: dict[str, object] = {}

    def both(*args: str | Path, again: tuple[tuple[str | Path, ...], ...] = ()) -> None:
        """Run ARGS without and then with --json (the AGAIN runs between, to set it up anew)."""
        words = [str(a) for a in args]
        human[_path(words)] = run(*args).stdout
        for step in again:
            run(*step)
        out = run(*args, "--json").stdout
        as_json[_path(words)] = json.loads(out)  # exactly one JSON document

    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(SEED))
    files = []
    for i in range(3):
        files.append(tmp_path / f"w{i}.bin")
        files[-1].write_bytes(bytes([i]) * 64)

    both("init", tmp_path / "other")
    both("register", "m", files[0], "--no-git", "--signature", sig)
    run("register", "m", files[1], "--no-git", "--signature", sig)
    run("register", "m", files[2], "--no-git", "--signature", sig)
    both("list")
    both("versions", "m")
    both("show", "m@1")
    both("diff", "m@1", "m@2")
    both("pull", "m@1", tmp_path / "pulled")
    both("history", "m")
    both("fsck")
    both("gc")
    both("promote", "m@1", "--to", "staging")
    both("check", "m@1", "latency", "--pass", "--value", "3")
    both("approve", "m@1")
    both("edit", "m@1", "-d", "first")
    run("promote", "m@1", "--to", "production")
    run("promote", "m@2", "--to", "staging")
    run("promote", "m@2", "--to", "production")
    both("rollback", "m", again=(("promote", "m@2", "--to", "staging"),
                                 ("promote", "m@2", "--to", "production")))
    both("archive", "m@3")
    both("events")
    both("alias", "set", "m", "champion", "1")
    both("alias", "list", "m")
    both("alias", "rm", "m", "champion", again=(("alias", "set", "m", "champion", "1"),))

    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"distance": 2.5, "is_hazardous": True}))
    both("validate", "m@1", payload)
    both("signature", "diff", "m@1", "m@2")
    contract = tmp_path / "modelreg-contract.toml"
    contract.write_text(f'registry = "{project}"\n[models]\nm = "1"\n\n'
                        f'[[examples]]\nmodel = "m"\npayload = "{payload.name}"\n')
    both("contract", "check", "--file", contract)

    data = load_diabetes()
    cols = list(data.feature_names)
    pkl = tmp_path / "ridge.pkl"
    pkl.write_bytes(pickle.dumps(Ridge().fit(data.data, data.target)))
    run("register", "diabetes", pkl, "--no-git", "--signature",
        _write(tmp_path / "dsig.json", {"inputs": {c: "float" for c in cols}}))
    both("export", "diabetes@1", "--allow-pickle")
    both("export", "diabetes@2", "--to", "bundle", "-o", tmp_path / "b.zip",
         "--force")  # the same command path as the ONNX export: both were checked
    both("import", tmp_path / "b.zip", "--as", "copy")
    rows = _write(tmp_path / "rows.json",
                  [dict(zip(cols, map(float, r), strict=True)) for r in data.data[:2]])
    both("predict", "diabetes@2", rows)
    both("bench", "diabetes@2", "--duration", "0.05")
    both("search", "name = 'diabetes'")
    both("migrate")  # on a format-2 store: nothing to do, said both ways
    copy_to = tmp_path / "copy"
    both("copy", project, copy_to)

    assert set(as_json) == commands_with_json()
    for path, doc in as_json.items():
        assert _parsed(human[path]) != doc, f"{path}: --json changes nothing"

    # predict: the outputs alone, or with --json the whole result.
    assert json.loads(human["predict"]).keys() == {"outputs"}
    assert as_json["predict"] == {"ref": "diabetes@2", "rows": 2,
                                  "outputs": json.loads(human["predict"])["outputs"]}
    out = tmp_path / "out" / "pred.json"
    run("predict", "diabetes@2", rows, "-o", out, "--json")
    assert json.loads(out.read_text()) == as_json["predict"]
    assert out.read_text().count("\n") == 1


def _parsed(text: str) -> object:
    """A JSON document as data; text for people as it is."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path
