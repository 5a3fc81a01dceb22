"""Lineage capture: typed values, params files, git state and data digests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from modelreg.errors import EXIT_NOT_FOUND, EXIT_USAGE, NotFound, UsageError
from modelreg.registry.lineage import (
    capture_git,
    check_toml_value,
    data_ref,
    load_params_file,
    parse_assignments,
    parse_value,
    strip_credentials,
)

# --- parse_value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-3", -3),
        ("+5", 5),
        ("007", 7),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("0.5", 0.5),
        ("-1.25", -1.25),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("nan", "nan"),
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("Infinity", "Infinity"),
        ("adam", "adam"),
        ("", ""),
        ("yes", "yes"),
        ("0x10", "0x10"),
        ("1.2.3", "1.2.3"),
        ("a=b", "a=b"),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


# --- parse_assignments -----------------------------------------------------------------------


def test_parse_assignments_types_values() -> None:
    got = parse_assignments(
        ["lr=0.01", "epochs=10", "opt=adam", "shuffle=false", "model/depth=3", "a.b-c_d=x=y"],
        "--param",
    )
    assert got == {
        "lr": 0.01,
        "epochs": 10,
        "opt": "adam",
        "shuffle": False,
        "model/depth": 3,
        "a.b-c_d": "x=y",
    }
    assert type(got["epochs"]) is int
    assert type(got["shuffle"]) is bool


def test_parse_assignments_last_value_wins_and_key_is_stripped() -> None:
    assert parse_assignments(["k=1", " k =2"], "--param") == {"k": 2}


def test_parse_assignments_empty() -> None:
    assert parse_assignments([], "--param") == {}


@pytest.mark.parametrize("item", ["novalue", "=5", "a b=1", "-a=1", ".a=1", "a:b=1", "é=1", ""])
def test_parse_assignments_rejects(item: str) -> None:
    with pytest.raises(UsageError, match="--param") as info:
        parse_assignments([item], "--param")
    assert info.value.exit_code == EXIT_USAGE


def test_parse_assignments_numeric_accepts_numbers_and_bools() -> None:
    got = parse_assignments(["acc=0.9", "n=3", "ok=true"], "--metric", numeric=True)
    assert got == {"acc": 0.9, "n": 3, "ok": True}


@pytest.mark.parametrize("item", ["acc=high", "acc=nan", "acc=inf", "acc="])
def test_parse_assignments_numeric_refuses_strings(item: str) -> None:
    with pytest.raises(UsageError, match="--metric") as info:
        parse_assignments([item], "--metric", numeric=True)
    assert info.value.exit_code == EXIT_USAGE


# --- load_params_file ------------------------------------------------------------------------


def test_load_params_json(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    doc = {"lr": 0.01, "epochs": 3, "opt": {"name": "adam", "betas": [0.9, 0.999]}, "x": True}
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert load_params_file(path) == doc


def test_load_params_toml(tmp_path: Path) -> None:
    path = tmp_path / "params.toml"
    path.write_text('lr = 0.01\nepochs = 3\n\n[opt]\nname = "adam"\n', encoding="utf-8")
    assert load_params_file(path) == {"lr": 0.01, "epochs": 3, "opt": {"name": "adam"}}


def test_load_params_uppercase_extension(tmp_path: Path) -> None:
    path = tmp_path / "params.TOML"
    path.write_text("a = 1\n", encoding="utf-8")
    assert load_params_file(path) == {"a": 1}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("params.txt", '{"a": 1, "b": "x"}', {"a": 1, "b": "x"}),
        ("params", 'a = 1\nb = "x"\n', {"a": 1, "b": "x"}),
        ("params.yaml", "[t]\nk = 2.5\n", {"t": {"k": 2.5}}),
        # A .toml name holding JSON still loads, and a .json name holding TOML too.
        ("params.toml", '{"a": 1}', {"a": 1}),
        ("params.json", "a = 1\n", {"a": 1}),
    ],
)
def test_load_params_sniffed(tmp_path: Path, name: str, text: str, expected: dict) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert load_params_file(path) == expected


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"just a string"', "42", "null"])
def test_load_params_refuses_non_tables(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match="top level") as info:
        load_params_file(path)
    assert info.value.exit_code == EXIT_USAGE


def test_load_params_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "params.txt"
    path.write_text("this is {not: json] nor = toml = at all", encoding="utf-8")
    with pytest.raises(UsageError, match="neither JSON nor TOML"):
        load_params_file(path)


def test_load_params_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(UsageError) as info:
        load_params_file(path)
    assert info.value.exit_code == EXIT_USAGE


def test_load_params_null_names_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"ok": 1, "optim": {"sched": {"gamma": None}}}), encoding="utf-8")
    with pytest.raises(UsageError, match=r"optim\.sched\.gamma is null") as info:
        load_params_file(path)
    assert info.value.exit_code == EXIT_USAGE


def test_load_params_null_in_list_names_the_index(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"layers": [1, None]}), encoding="utf-8")
    with pytest.raises(UsageError, match=r"layers\[1\] is null"):
        load_params_file(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_load_params_refuses_non_finite(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "params.json"
    path.write_text(f'{{"a": {{"b": {literal}}}}}', encoding="utf-8")
    with pytest.raises(UsageError, match=r"a\.b is"):
        load_params_file(path)


def test_load_params_refuses_toml_nan(tmp_path: Path) -> None:
    path = tmp_path / "params.toml"
    path.write_text("x = nan\n", encoding="utf-8")
    with pytest.raises(UsageError, match="finite"):
        load_params_file(path)


def test_load_params_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist") as info:
        load_params_file(tmp_path / "nope.json")
    assert info.value.exit_code == EXIT_NOT_FOUND == 3


def test_check_toml_value_odd_types() -> None:
    check_toml_value({"a": [1, "x", {"b": 2.0}], "c": False}, "params")
    with pytest.raises(UsageError, match=r"params\.a has unsupported type bytes"):
        check_toml_value({"a": b"x"}, "params")
    with pytest.raises(UsageError, match=r"params\.a\[0\]"):
        check_toml_value({"a": [float("inf")]}, "params")


# --- strip_credentials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok3n@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://x-access-token:ghp_abc@github.com/org/repo", "https://github.com/org/repo"),
        ("https://oauth2@gitlab.example.com:8443/g/r.git", "https://gitlab.example.com:8443/g/r.git"),
        ("http://u:p@host/r?x=1#f", "http://host/r?x=1#f"),
        ("ssh://git@host.example:22/org/repo.git", "ssh://host.example:22/org/repo.git"),
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("../other", "../other"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_strip_credentials_password_with_at_sign() -> None:
    # An unescaped '@' in a password: everything up to the last '@' goes.
    got = strip_credentials("https://me:p@ss@host.example/r.git")
    assert got == "https://host.example/r.git"
    assert "p@ss" not in got


# --- capture_git -----------------------------------------------------------------------------

_GIT_ENV_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE",
)


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate git from the developer's global config and any outer repository."""
    for var in _GIT_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("", encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")


def _run_git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=T", "-c",
         "commit.gpgsign=false", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def _outside_any_repo(path: Path) -> bool:
    out = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=path,
                         capture_output=True, text=True)
    return out.returncode != 0


@pytest.fixture
def repo(git_env: None, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    if not _outside_any_repo(root):
        pytest.skip(f"{tmp_path} is inside a git repository")
    _run_git(root, "init", "-q", "-b", "trunk")
    (root / "train.py").write_text("print('hi')\n", encoding="utf-8")
    _run_git(root, "add", "train.py")
    _run_git(root, "commit", "-q", "-m", "first")
    return root


def test_capture_git_clean_repo(repo: Path) -> None:
    info = capture_git(repo)
    assert info is not None
    assert info.commit == _run_git(repo, "rev-parse", "HEAD")
    assert len(info.commit) == 40
    assert info.branch == "trunk"
    assert info.dirty is False
    assert info.remote is None


def test_capture_git_from_subdirectory(repo: Path) -> None:
    sub = repo / "pkg" / "deep"
    sub.mkdir(parents=True)
    info = capture_git(sub)
    assert info is not None
    assert info.commit == _run_git(repo, "rev-parse", "HEAD")


def test_capture_git_modified_tracked_file_is_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n", encoding="utf-8")
    info = capture_git(repo)
    assert info is not None
    assert info.dirty is True


def test_capture_git_staged_change_is_dirty(repo: Path) -> None:
    (repo / "new.py").write_text("x = 1\n", encoding="utf-8")
    _run_git(repo, "add", "new.py")
    info = capture_git(repo)
    assert info is not None
    assert info.dirty is True


def test_capture_git_untracked_file_alone_is_clean(repo: Path) -> None:
    (repo / "scratch.txt").write_text("notes\n", encoding="utf-8")
    info = capture_git(repo)
    assert info is not None
    assert info.dirty is False


def test_capture_git_detached_head_has_no_branch(repo: Path) -> None:
    head = _run_git(repo, "rev-parse", "HEAD")
    _run_git(repo, "checkout", "-q", "--detach", head)
    info = capture_git(repo)
    assert info is not None
    assert info.branch is None
    assert info.commit == head


def test_capture_git_no_commits_yet(git_env: None, tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    if not _outside_any_repo(root):
        pytest.skip(f"{tmp_path} is inside a git repository")
    _run_git(root, "init", "-q", "-b", "main")
    info = capture_git(root)
    assert info is not None
    assert info.commit is None
    assert info.branch == "main"
    assert info.dirty is False


def test_capture_git_origin_remote_without_credentials(repo: Path) -> None:
    _run_git(repo, "remote", "add", "origin", "https://bob:s3cret-token@example.com/org/r.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "https://example.com/org/r.git"
    assert "s3cret" not in repr(info)


def test_capture_git_prefers_origin(repo: Path) -> None:
    _run_git(repo, "remote", "add", "aaa", "https://example.com/first.git")
    _run_git(repo, "remote", "add", "origin", "git@example.com:org/origin.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "git@example.com:org/origin.git"


def test_capture_git_falls_back_to_first_remote(repo: Path) -> None:
    _run_git(repo, "remote", "add", "upstream", "https://u:p@example.com/up.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "https://example.com/up.git"


def test_capture_git_remote_as_git_rewrites_it(repo: Path) -> None:
    _run_git(repo, "config", "url.https://example.com/.insteadOf", "ex:")
    _run_git(repo, "remote", "add", "origin", "ex:org/r.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "https://example.com/org/r.git"


def test_capture_git_deleted_tracked_file_on_detached_head(repo: Path) -> None:
    _run_git(repo, "checkout", "-q", "--detach")
    tracked = next(p for p in repo.iterdir() if p.is_file())
    tracked.unlink()
    info = capture_git(repo)
    assert info is not None
    assert info.branch is None and info.dirty is True
    assert info.commit is not None and len(info.commit) == 40


def test_capture_git_outside_a_repo(git_env: None, tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    if not _outside_any_repo(outside):
        pytest.skip(f"{tmp_path} is inside a git repository")
    assert capture_git(outside) is None


def test_capture_git_without_git_binary(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    assert capture_git(repo) is None


# --- data_ref --------------------------------------------------------------------------------


def test_data_ref_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    payload = b"a,b\n1,2\n" * 1000 + os.urandom(17)
    path.write_bytes(payload)
    ref = data_ref(path)
    assert ref.path == str(path)
    assert ref.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert ref.size == len(payload)


def test_data_ref_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    ref = data_ref(path)
    assert ref.digest == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert ref.size == 0


def _make_dataset(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"bravo!")
    (root / "sub" / "c.bin").write_bytes(b"\x00" * 100)


def test_data_ref_of_a_directory_is_stable(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _make_dataset(one)
    _make_dataset(two)
    ref1, ref2 = data_ref(one), data_ref(two)
    assert ref1.digest.startswith("sha256:")
    assert len(ref1.digest) == len("sha256:") + 64
    assert ref1.digest == ref2.digest
    assert ref1.digest == data_ref(one).digest
    assert ref1.size == 5 + 6 + 100
    assert ref1.path == str(one)


@pytest.mark.parametrize("victim", ["a.txt", "sub/b.txt", "sub/c.bin"])
def test_data_ref_of_a_directory_changes_with_any_file(tmp_path: Path, victim: str) -> None:
    root = tmp_path / "data"
    _make_dataset(root)
    before = data_ref(root)
    target = root / victim
    content = target.read_bytes()
    target.write_bytes(bytes([content[0] ^ 1]) + content[1:])  # same size, one bit flipped
    after = data_ref(root)
    assert after.size == before.size
    assert after.digest != before.digest


def test_data_ref_of_a_directory_changes_with_a_rename(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _make_dataset(root)
    before = data_ref(root)
    (root / "a.txt").rename(root / "z.txt")
    assert data_ref(root).digest != before.digest


def test_data_ref_of_a_directory_changes_with_a_new_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _make_dataset(root)
    before = data_ref(root)
    (root / "sub" / "d.txt").write_bytes(b"")
    assert data_ref(root).digest != before.digest


def test_data_ref_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        data_ref(tmp_path / "missing")
