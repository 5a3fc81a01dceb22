"""Inputs that are the user's mistake: a clear message and the right exit code, never 70.

Each case runs ``modelreg`` in a real process (file names with bytes that are not UTF-8
reach it as the operating system gives them) and checks that the store did not change.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.helpers import run_cli, snapshot

XFF = os.fsdecode(b"f\xff.bin")  # a file name that is not UTF-8, as Python carries it
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    assert run_cli("init", root).returncode == 0
    (root / "model.bin").write_bytes(b"weights")
    return root


def cli(store: Path, *args: str | Path, code: int, words: str) -> str:
    """Run a command that must fail with ``code``, say ``words``, and change nothing."""
    before = snapshot(store / ".modelreg")
    result = run_cli(*args, cwd=store)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert words in result.stderr, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert snapshot(store / ".modelreg") == before
    return result.stderr


def test_file_names_that_are_not_utf8_are_refused(store: Path) -> None:
    (store / XFF).write_bytes(b"x")
    (store / "d").mkdir()
    (store / "d" / XFF).write_bytes(b"x")
    err = cli(store, "register", "m", XFF, "--no-git", code=2, words="not valid UTF-8")
    assert "f\\xff.bin" in err  # shown as the bytes on disk
    cli(store, "register", "m", "d", "--no-git", code=2, words="not valid UTF-8")
    cli(store, "register", "m", "model.bin", "--no-git", "--data", XFF, code=2,
        words="data path")
    cli(store, "register", "m", "model.bin", "--no-git", "--sample", XFF, code=2,
        words="not valid UTF-8")


def test_text_arguments_that_are_not_utf8_are_refused(store: Path) -> None:
    cli(store, "register", "m", "model.bin", "--no-git", "--description", XFF, code=2,
        words="not valid UTF-8")
    cli(store, "register", "m", "model.bin", "--no-git", "--tag", f"t={XFF}", code=2,
        words="not valid UTF-8")
    cli(store, "register", "m", "model.bin", "--no-git", "--param", f"p={XFF}", code=2,
        words="not valid UTF-8")
    assert run_cli("register", "m", "model.bin", "--no-git", cwd=store).returncode == 0
    cli(store, "promote", "m@1", "--to", "staging", "--reason", XFF, code=2,
        words="not valid UTF-8")


def test_a_backslash_in_a_file_name_is_a_usage_error(store: Path) -> None:
    (store / "a\\b").write_bytes(b"x")
    (store / "d").mkdir()
    (store / "d" / "a\\b").write_bytes(b"x")
    cli(store, "register", "m", "a\\b", "--no-git", code=2, words="backslash")
    cli(store, "register", "m", "d", "--no-git", code=2, words="backslash")


def test_deeply_nested_json_is_a_usage_error(store: Path) -> None:
    (store / "deep.json").write_text(DEEP)
    (store / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (store / "huge.json").write_text('{"a": ' + "1" * 5000 + "}")
    (store / "nested.json").write_text('{"a": ' + "[" * 40 + "]" * 40 + "}")
    for name in ("deep.json", "deep.toml", "huge.json"):
        cli(store, "register", "m", "model.bin", "--no-git", "--params-file", name, code=2,
            words="params file")
        cli(store, "register", "m", "model.bin", "--no-git", "--signature", name, code=2,
            words="does not parse")
    cli(store, "register", "m", "model.bin", "--no-git", "--params-file", "nested.json",
        code=2, words="more than 32 deep")
    sig = store / "sig.json"
    sig.write_text(json.dumps({"inputs": {"a": "float"}}))
    assert run_cli("register", "m", "model.bin", "--no-git", "--signature", sig,
                   cwd=store).returncode == 0
    for payload in ("deep.json", "huge.json"):
        cli(store, "validate", "m", payload, code=2, words="not valid JSON")
    (store / "deep.jsonl").write_text('{"a": 1}\n' + DEEP + "\n")
    cli(store, "validate", "m", "deep.jsonl", code=2, words="JSONL line 2")


@pytest.mark.parametrize("positions", [
    {"m": 1e999}, {"m": 1.5}, {"m": True}, {"m": -1}, ["m"], "deep"])
def test_bad_cursors_are_usage_errors(store: Path, positions: object) -> None:
    raw = (b"[" * 5000 + b"]" * 5000) if positions == "deep" else json.dumps(positions).encode()
    cursor = "c1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    cli(store, "events", "--since", cursor, code=2, words="bad cursor")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "not-utf8", "deep", "huge", "directory"])
def test_a_config_that_cannot_be_read_is_refused(store: Path, kind: str) -> None:
    config = store / ".modelreg" / "config.toml"
    config.unlink()
    if kind == "dev-zero":
        config.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "not-utf8":
        config.write_bytes(b'actor = "\xff"\n')
    elif kind == "deep":
        config.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "huge":
        config.write_text("# " + "x" * (2 << 20) + "\n")
    else:
        config.mkdir()
    words = {"dev-zero": "not a regular file", "fifo": "not a regular file",
             "not-utf8": "not UTF-8", "deep": "nested too deeply", "huge": "larger than",
             "directory": "not a regular file"}[kind]
    # A timeout would mean it hangs; run_cli's own timeout stops it.
    result = run_cli("register", "m", "model.bin", "--no-git", cwd=store, timeout=30)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr


def test_a_user_config_that_cannot_be_read_is_ignored(store: Path, tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.symlink_to("/dev/zero")
    result = run_cli("register", "m", "model.bin", "--no-git", cwd=store, timeout=30,
                     env={"MODELREG_USER_CONFIG": str(user), "MODELREG_ACTOR": ""})
    assert result.returncode == 0, result.stderr
