"""No stored or given text reaches the terminal raw, whatever command shows it.

A store is filled with hostile text in every field a person or a tool can set (actor,
reason, description, tags, params, check details and values, approval comments, data and
file names, hook targets and their output) and every command that shows it is run in a real
process: no escape sequence, bell, C1 control or bidi override may appear in stdout or
stderr, in text or in JSON. Error messages that quote user input are escaped too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

# ESC [2J (clear screen), an OSC title with BEL, CSI as one C1 byte, a bidi override, a
# forged line.
HOSTILE = "x\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\nFAKE: done"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _clean(text: str, where: str, *, lines: bool = True) -> None:
    for c in RAW:
        assert c not in text, f"{where}: raw {c!r} in {text!r}"
    if lines:  # error messages may span lines by design; data lines may not
        assert "\nFAKE: done" not in text, f"{where}: a forged line in {text!r}"


def _strings(doc: object) -> set[str]:
    if isinstance(doc, dict):
        return set().union(*map(_strings, doc.values()), set(doc))
    if isinstance(doc, list):
        return set().union(set(), *map(_strings, doc))
    return {doc} if isinstance(doc, str) else set()


# An actor name with control characters is refused where it enters (tests/test_identity.py);
# the refusal itself must not reach the terminal raw (test below).
ACTOR = "eve@example.com"


def test_a_hostile_actor_is_refused_with_an_escaped_message(tmp_path: Path) -> None:
    assert run_cli("init", tmp_path).returncode == 0
    (tmp_path / "f.bin").write_bytes(b"x")
    r = run_cli("register", "m", tmp_path / "f.bin", "--no-git", registry=tmp_path,
                env={"MODELREG_ACTOR": HOSTILE})
    assert r.returncode == 2
    _clean(r.stdout + r.stderr, "hostile actor", lines=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    assert run_cli("init", root).returncode == 0
    store = root / ".modelreg"
    (store / "config.toml").write_text(
        '[[hooks]]\non = ["promote"]\n'
        f'command = {json.dumps(f"printf %s {json.dumps(HOSTILE)} >&2; exit 1 #{HOSTILE}")}\n')
    d = root / "art"
    d.mkdir()
    (d / "w\x1b[2J.bin").write_bytes(b"one")
    env = {"MODELREG_ACTOR": ACTOR}
    for i, content in enumerate((b"one", b"two"), start=1):
        (d / "w\x1b[2J.bin").write_bytes(content)
        r = run_cli("register", "eta", d, "--no-git", "--description", HOSTILE + str(i),
                    "--tag", f"team={HOSTILE}", "--param", f"alpha={HOSTILE}{i}",
                    "--data-version", HOSTILE, registry=store, env=env)
        assert r.returncode == 0, r.stderr
        _clean(r.stdout + r.stderr, "register")
    return store


COMMANDS = [
    ("show", "eta@1"), ("show", "eta@1", "--json"), ("list",), ("list", "--json"),
    ("versions", "eta"), ("versions", "eta", "--json"), ("diff", "eta@1", "eta@2"),
    ("diff", "eta@1", "eta@2", "--json"), ("history", "eta"), ("history", "eta", "--json"),
    ("events",), ("events", "--json"), ("alias", "list", "eta"), ("fsck",),
    ("show", "eta@" + HOSTILE), ("show", HOSTILE), ("history", HOSTILE),
    ("register", HOSTILE, "nowhere" + HOSTILE), ("validate", "eta@1", "nowhere" + HOSTILE),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a)[:30])
def test_reads_and_errors_escape_hostile_text(store: Path, args: tuple[str, ...]) -> None:
    r = run_cli(*args, registry=store)
    assert r.returncode in (0, 1, 2, 3), r.stderr
    _clean(r.stdout, f"{args} stdout")
    _clean(r.stderr, f"{args} stderr", lines=r.returncode == 0)
    if "--json" in args and r.returncode == 0 and args[0] in ("show", "diff"):
        # (list, versions, history and events hold no user text now the actor is plain)
        assert _strings(json.loads(r.stdout)) & {HOSTILE, HOSTILE + "1"}  # the data, intact


def test_changes_escape_hostile_text(store: Path) -> None:
    env = {"MODELREG_ACTOR": ACTOR}
    runs = [
        run_cli("promote", "eta@1", "--to", "staging", "--reason", HOSTILE, registry=store,
                env=env),
        run_cli("check", "eta@1", "latency", "--pass", "--value", HOSTILE, "--details",
                HOSTILE, registry=store, env=env),
        run_cli("approve", "eta@1", "--comment", HOSTILE, registry=store, env=env),
        run_cli("alias", "set", "eta", "champion", "1", registry=store, env=env),
        run_cli("rollback", "eta", "--stage", "staging", "--reason", HOSTILE, registry=store,
                env=env),
        run_cli("show", "eta@1", registry=store),
        run_cli("events", registry=store),
        run_cli("history", "eta", registry=store),
    ]
    for r in runs:
        _clean(r.stdout, f"{r.args} stdout")
        _clean(r.stderr, f"{r.args} stderr", lines=r.returncode == 0)
    # The failing post hook's target and output were shown, escaped.
    assert "warning: post hook" in runs[0].stderr and "\\x1b[2J" in runs[0].stderr
    assert "\\x1b[2J" in runs[0].stdout  # the move line's reason, escaped
    shown = json.loads(run_cli("show", "eta@1", "--json", registry=store).stdout)
    assert shown["description"] == HOSTILE + "1"  # stored as given; only output is escaped
