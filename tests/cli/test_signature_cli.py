"""Signature commands from the command line: validate, signature show/infer/diff, contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SEED = {"inputs": {"distance": "float", "is_hazardous": "bool"},
        "outputs": {"estimated_time_minutes": "float"}}


@pytest.fixture
def eta(cli, project: Path, tmp_path: Path) -> Path:
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(SEED))
    model = tmp_path / "eta.bin"
    model.write_bytes(b"weights")
    result = cli("register", "eta", model, "--no-git", "--signature", sig)
    assert result.exit_code == 0, result.stderr
    return project


def test_seed_example(cli, eta: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"distance": 3.0, "is_hazardous": True},
                               {"distance": 1, "is_hazardous": False},
                               {"distance": "12.5", "is_hazardous": False}]))
    result = cli("validate", "eta", bad)
    assert result.exit_code == 1
    assert 'row 3, column "distance": expected float, got string "12.5"' in result.stdout
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"distance": 12.5, "is_hazardous": False}))
    ok = cli("validate", "eta@1", good)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == ""
    report = json.loads(cli("validate", "eta", bad, "--json").stdout)
    assert report["ok"] is False
    assert report["problems"][0]["row"] == 3
    assert report["problems"][0]["column"] == "distance"


def test_validate_stdin_formats_and_cap(cli, eta: Path) -> None:
    lines = "\n".join(json.dumps({"distance": "x", "is_hazardous": True}) for _ in range(30))
    result = cli("validate", "eta", "-", "--format", "jsonl", "--max-errors", "5",
                 input=lines + "\n")
    assert result.exit_code == 1
    assert result.stdout.count("expected float") == 5
    assert "and 25 more problem(s)" in result.stdout
    csv = "distance,is_hazardous\n1.5,true\n2,false\n"
    assert cli("validate", "eta", "-", "--format", "csv", input=csv).exit_code == 0
    assert cli("validate", "eta", "-", "--format", "json", input="{").exit_code == 2
    assert cli("validate", "eta", "nope.json").exit_code == 3
    extra = json.dumps({"distance": 1.0, "is_hazardous": True, "note": "x"})
    assert cli("validate", "eta", "-", input=extra).exit_code == 1
    assert cli("validate", "eta", "-", "--allow-extra", input=extra).exit_code == 0


def test_signature_show_and_jsonschema(cli, eta: Path) -> None:
    shown = json.loads(cli("signature", "show", "eta").stdout)
    assert [c["name"] for c in shown["inputs"]["columns"]] == ["distance", "is_hazardous"]
    schema = json.loads(cli("signature", "show", "eta", "--format", "jsonschema").stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert cli("signature", "show", "eta", "--format", "xml").exit_code == 2


def test_signature_infer_and_diff(cli, eta: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("distance,is_hazardous\n1.5,true\n")
    inferred = json.loads(cli("signature", "infer", sample).stdout)
    assert [c["name"] for c in inferred["inputs"]["columns"]] == ["distance", "is_hazardous"]
    new_sig = tmp_path / "new.json"
    new_sig.write_text(json.dumps({"inputs": {"distance": "string", "is_hazardous": "bool"},
                                   "outputs": SEED["outputs"]}))
    model = tmp_path / "eta2.bin"
    model.write_bytes(b"weights 2")
    assert cli("register", "eta", model, "--no-git", "--signature", new_sig).exit_code == 0
    diff = cli("signature", "diff", "eta@1", "eta@2", "--json")
    assert diff.exit_code == 1
    assert json.loads(diff.stdout)["breaking"] is True
    assert cli("signature", "diff", "eta@1", "eta@1").exit_code == 0


def test_breaking_promotion_via_cli(cli, eta: Path, tmp_path: Path) -> None:
    assert cli("promote", "eta@1", "--to", "staging").exit_code == 0
    assert cli("promote", "eta@1", "--to", "production").exit_code == 0
    new_sig = tmp_path / "new.json"
    new_sig.write_text(json.dumps({"inputs": {"distance": "float"}}))
    model = tmp_path / "eta2.bin"
    model.write_bytes(b"weights 2")
    assert cli("register", "eta", model, "--no-git", "--signature", new_sig,
               "--stage", "staging").exit_code == 0
    denied = cli("promote", "eta@2", "--to", "production")
    assert denied.exit_code == 5
    assert "--allow-breaking" in denied.stderr
    ok = cli("promote", "eta@2", "--to", "production", "--allow-breaking", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["events"][-1]["details"]["allow_breaking"] is True


def test_contract_check(cli, eta: Path, tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"distance": 2.5, "is_hazardous": True}))
    contract = tmp_path / "modelreg-contract.toml"
    contract.write_text(f'registry = "{eta}"\n[models]\neta = "1"\n\n'
                        f'[[examples]]\nmodel = "eta"\npayload = "{payload.name}"\n')
    ok = cli("contract", "check", "--file", contract)
    assert ok.exit_code == 0, ok.output
    assert "resolves to eta@1" in ok.stdout
    payload.write_text(json.dumps({"distance": "2.5", "is_hazardous": True}))
    assert cli("contract", "check", "--file", contract).exit_code == 1
    contract.write_text(f'registry = "{eta}"\n[models]\neta = "production"\n')
    missing = cli("contract", "check", "--file", contract, "--json")
    assert missing.exit_code == 3
    assert json.loads(missing.stdout)["ok"] is False
    assert cli("contract", "check", "--file", tmp_path / "none.toml").exit_code == 3


def test_contract_exit_status_is_the_worst_failure(cli, eta: Path, tmp_path: Path) -> None:
    import modelreg
    from modelreg.errors import NotFound, UsageError, VerdictNo

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"distance": 2.5, "is_hazardous": True}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"distance": "2.5", "is_hazardous": True}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    contract = tmp_path / "modelreg-contract.toml"

    def check(pins: str, *payloads: Path) -> tuple[int, str]:
        examples = "".join(f'\n[[examples]]\nmodel = "eta"\npayload = "{p.name}"\n'
                           for p in payloads)
        contract.write_text(f'registry = "{eta}"\n[models]\n{pins}\n{examples}')
        result = cli("contract", "check", "--file", contract)
        assert result.stderr == ""  # the verdict is on stdout, as lines
        return result.exit_code, result.stdout

    assert check('eta = "1"', good)[0] == 0
    assert check('eta = "1"', broken)[0] == 2
    assert check('eta = "1"', broken, bad)[0] == 1
    code, out = check('eta = "9"', good)
    assert code == 3
    assert out.splitlines()[0].startswith("FAIL model eta (eta@9): ")
    assert check('eta = "1"', broken, bad, tmp_path / "missing.json", good)[0] == 3
    report = modelreg.api.check_contract(contract)
    assert [type(r.error) for r in report.results] == [
        type(None), UsageError, VerdictNo, NotFound, type(None)]
    assert [r.ok for r in report.results] == [True, False, False, False, True]
    assert report.errors == [r.error for r in report.results[1:4]]
    assert report.results[3].message == "payload file does not exist"
