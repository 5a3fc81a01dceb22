"""What the docs say about these behaviours is what the tool does (checked in processes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import run_cli

PROJECT = Path(__file__).resolve().parents[2]


def _store(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    assert run_cli("init", root).returncode == 0
    (root / "model.bin").write_bytes(b"weights")
    (root / "example.json").write_text('[{"a": 1.0}]')
    result = run_cli("register", "m", "model.bin", "--sample", "example.json", "--no-git",
                     "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def test_pull_through_a_symlinked_directory_exits_4(tmp_path: Path) -> None:
    """docs/cli.md, pull: a symlink in DEST's way is a conflict (4), not integrity (6)."""
    root = _store(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.bin").symlink_to(elsewhere / "model.bin")
    result = run_cli("pull", "m@1", dest, cwd=root)
    assert result.returncode == 4, result.stderr
    assert "symlink" in result.stderr
    assert not (elsewhere / "model.bin").exists()
    text = (PROJECT / "docs" / "cli.md").read_text()
    assert "symlinked directory, exits 4" in " ".join(text.split())


def test_gc_keeps_and_fsck_checks_the_example_blob(tmp_path: Path) -> None:
    """docs/layout.md, manifest `example`: gc and fsck follow it like the artifact."""
    root = _store(tmp_path)
    shown = json.loads(run_cli("show", "m@1", "--json", cwd=root).stdout)
    blob_id = shown["example"]["digest"].removeprefix("sha256:")
    blob = root / ".modelreg" / "objects" / blob_id
    assert blob.is_file()
    assert run_cli("gc", "--grace", "0s", cwd=root).returncode == 0
    assert blob.is_file()
    blob.unlink()
    fsck = run_cli("fsck", cwd=root)
    assert fsck.returncode == 6
    assert str(blob) in fsck.stdout and "missing" in fsck.stdout
    layout = " ".join((PROJECT / "docs" / "layout.md").read_text().split())
    assert "do not follow this reference" not in layout
    assert "`gc` and `fsck` follow this reference" in layout


def test_show_doc_says_which_fields_are_always_printed(tmp_path: Path) -> None:
    root = _store(tmp_path)
    text = run_cli("show", "m@1", cwd=root).stdout
    assert re.search(r"^description\s+-$", text, re.M)
    cli_md = " ".join((PROJECT / "docs" / "cli.md").read_text().split())
    assert "`description` (`-` when the version has none)" in cli_md


def test_readme_pre_commit_example_pins_what_pre_commit_accepts() -> None:
    """The README's `rev` is a full commit hash (no release is tagged), and its hook exists."""
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("```yaml", 1)[1].split("```", 1)[0]
    rev = re.search(r"rev:\s*(\S+)", block)
    assert rev is not None and re.fullmatch(r"[0-9a-f]{40}", rev.group(1)), block
    hook_id = re.search(r"- id:\s*(\S+)", block)
    hooks = (PROJECT / ".pre-commit-hooks.yaml").read_text()
    assert hook_id is not None and f"- id: {hook_id.group(1)}\n" in hooks
    assert "entry: modelreg contract check" in hooks


def test_make_demo_installs_what_the_readme_says() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    demo = re.search(r"^demo: (\S+)", makefile, re.M)
    assert demo is not None and demo.group(1) == "$(DEMO_STAMP)"
    assert "pip install --quiet -e '.[sklearn]'" in makefile
    assert "installs modelreg with its scikit-learn converters" in (PROJECT / "README.md"
                                                                      ).read_text()
