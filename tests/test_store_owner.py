"""A store owned by someone else runs no hooks and is not changed until the user trusts it.

The scenario: user ``nobody`` makes a store in a shared parent directory with a hook that
writes a file; the test (running as another user, root here) works in a sub-directory, so
discovery walks up into that store. Reading works; register, promote and gc are refused
with exit 5 and a message that gives the user-config line; the hook never runs. Once the
user config lists the store (or trusts its group), the same commands work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import run_cli, snapshot

NOBODY = 65534

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == NOBODY,
                                reason="needs POSIX owners and a user other than nobody")


def _shared_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """shared/.modelreg owned by nobody, with a post-register hook; shared/mine to work in."""
    shared = tmp_path / "shared"
    mine = shared / "mine"
    mine.mkdir(parents=True)
    assert run_cli("init", shared).returncode == 0
    store = shared / ".modelreg"
    pwned = tmp_path / "pwned.txt"
    (store / "config.toml").write_text(
        f'[[hooks]]\non = ["register"]\ncommand = "id > {pwned}"\n')
    (mine / "m.bin").write_bytes(b"weights")
    return store, mine, pwned


def _give_to_nobody(store: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a store's owner needs root")
    os.chown(store, NOBODY, NOBODY)
    os.chown(store / "config.toml", NOBODY, NOBODY)


def test_a_store_owned_by_someone_else_is_read_but_not_changed(tmp_path: Path) -> None:
    store, mine, pwned = _shared_store(tmp_path)
    # Registered by its owner before it was handed over: something to read.
    first = run_cli("register", "eta", mine / "m.bin", "--no-git", cwd=mine)
    assert first.returncode == 0, first.stderr
    pwned.unlink()
    _give_to_nobody(store)
    user_config = tmp_path / "user.toml"
    env = {"MODELREG_USER_CONFIG": str(user_config)}
    before = snapshot(store)

    (mine / "m2.bin").write_bytes(b"other weights")
    r = run_cli("register", "eta", mine / "m2.bin", "--no-git", cwd=mine, env=env)
    assert r.returncode == 5, r.stderr
    assert not pwned.exists()  # the hook did not run
    assert "owned by uid 65534" in r.stderr
    assert str(user_config) in r.stderr
    assert f'safe_stores = ["{store.resolve()}"]' in r.stderr
    r = run_cli("promote", "eta@1", "--to", "staging", cwd=mine, env=env)
    assert r.returncode == 5 and "safe_stores" in r.stderr
    r = run_cli("gc", "--grace", "0", cwd=mine, env=env)
    assert r.returncode == 5 and "safe_stores" in r.stderr
    assert snapshot(store) == before and not pwned.exists()

    # Reads still work.
    shown = run_cli("show", "eta@1", "--json", cwd=mine, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["version"] == 1
    assert run_cli("list", cwd=mine, env=env).returncode == 0

    # The line the message gives, added to the user config, makes the store trusted.
    user_config.write_text(f'safe_stores = ["{store.resolve()}"]\n')
    r = run_cli("register", "eta", mine / "m2.bin", "--no-git", cwd=mine, env=env)
    assert r.returncode == 0, r.stderr
    assert pwned.exists()  # now the hook ran: the user said they trust it


def test_a_trusted_group_makes_the_store_ones_own(tmp_path: Path) -> None:
    store, mine, pwned = _shared_store(tmp_path)
    _give_to_nobody(store)
    user_config = tmp_path / "user.toml"
    user_config.write_text(f'trusted_groups = ["{NOBODY}"]\n')
    r = run_cli("register", "eta", mine / "m.bin", "--no-git", cwd=mine,
                env={"MODELREG_USER_CONFIG": str(user_config)})
    assert r.returncode == 0, r.stderr
    assert pwned.exists()


def test_a_config_toml_owned_by_someone_else_makes_the_store_foreign(tmp_path: Path) -> None:
    store, mine, pwned = _shared_store(tmp_path)
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(store / "config.toml", NOBODY, NOBODY)
    r = run_cli("register", "eta", mine / "m.bin", "--no-git", cwd=mine)
    assert r.returncode == 5 and "config.toml is owned by uid 65534" in r.stderr
    assert not pwned.exists()
