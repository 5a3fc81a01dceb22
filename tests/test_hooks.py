"""Hooks: a command sees the event, a webhook gets it signed, a pre- hook can veto."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import PolicyDenied
from modelreg.registry import Registry
from tests.helpers import run_cli, snapshot


def configure(reg: Registry, text: str) -> Registry:
    reg.layout.config_file.write_text(text)
    return Registry.open(reg.layout.root)


def register(reg: Registry, tmp_path: Path, i: int = 1) -> None:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(b"w" * i)
    modelreg.register("eta", [f], registry=reg, git=False, actor="sci@example.com")


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = status


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_command_hook_sees_the_event(registry: Registry, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    env_out = tmp_path / "env.txt"
    reg = configure(registry, f"""
[[hooks]]
on = ["promote"]
stages = ["staging"]
command = "cat > {out}; echo $MODELREG_MODEL $MODELREG_VERSION $MODELREG_TO > {env_out}"
""")
    register(reg, tmp_path)
    result = modelreg.promote("eta@1", "staging", registry=reg, actor="sci@example.com",
                              reason="ci please")
    assert [h.ok for h in result.hooks] == [True]
    event = json.loads(out.read_text())
    assert (event["model"], event["version"], event["action"]) == ("eta", 1, "promote")
    assert (event["from"], event["to"], event["actor"], event["reason"]) == (
        "development", "staging", "sci@example.com", "ci please")
    assert env_out.read_text().split() == ["eta", "1", "staging"]
    # The stage filter: an archive is not a transition into staging.
    out.unlink()
    modelreg.archive("eta@1", registry=reg, actor="sci@example.com")
    assert not out.exists()


def test_failing_post_hook_keeps_the_transition(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, '[[hooks]]\non = ["promote"]\ncommand = "echo nope >&2; exit 3"\n')
    register(reg, tmp_path)
    result = modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    assert result.version.stage == "staging"
    assert [(h.ok, h.status, h.detail) for h in result.hooks] == [(False, 3, "nope")]
    cli = run_cli("promote", "eta@1", "--to", "development", registry=reg.layout.root)
    assert cli.returncode == 0
    assert "warning: post hook" in cli.stderr and "nope" in cli.stderr


def test_pre_hook_vetoes(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, """
[[hooks]]
on = ["pre-promote"]
stages = ["production"]
command = "echo 'freeze week' >&2; exit 1"
""")
    register(reg, tmp_path)
    modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    before = snapshot(reg.layout.root / "refs")
    with pytest.raises(PolicyDenied, match="freeze week"):
        modelreg.promote("eta@1", "production", registry=reg, actor="a")
    assert snapshot(reg.layout.root / "refs") == before
    cli = run_cli("promote", "eta@1", "--to", "production", registry=reg.layout.root)
    assert cli.returncode == 5
    assert "vetoed" in cli.stderr


def test_webhook_is_signed_and_delivery_recorded(registry: Registry, tmp_path: Path,
                                                 receiver, monkeypatch) -> None:
    state, url = receiver
    monkeypatch.setenv("MODELREG_WEBHOOK_SECRET", "s3cret")
    reg = configure(registry, f"""
[[hooks]]
on = ["promote"]
url = "{url}"
secret_env = "MODELREG_WEBHOOK_SECRET"
""")
    register(reg, tmp_path)
    result = modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    assert [(h.ok, h.status) for h in result.hooks] == [(True, 200)]
    (headers, body), = state.requests
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Modelreg-Signature-256"], expected)
    event = json.loads(body)
    assert (event["model"], event["version"], event["to"]) == ("eta", 1, "staging")
    _, events = modelreg.history("eta", registry=reg)
    assert events[0].action == "hook"
    assert events[0].details["ok"] is True
    assert events[0].details["event"] == event["id"]


def test_webhook_failure_is_retried_and_recorded(registry: Registry, tmp_path: Path,
                                                 receiver, monkeypatch) -> None:
    state, url = receiver
    state.status = 503
    monkeypatch.setattr("modelreg.registry.hooks.RETRY_DELAY", 0.01)
    reg = configure(registry, f'[[hooks]]\non = ["promote"]\nurl = "{url}"\n')
    register(reg, tmp_path)
    result = modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    assert result.version.stage == "staging"
    assert [(h.ok, h.status, h.attempts) for h in result.hooks] == [(False, 503, 2)]
    assert len(state.requests) == 2
    assert "X-Modelreg-Signature-256" not in state.requests[0][0]
    _, events = modelreg.history("eta", registry=reg)
    assert (events[0].action, events[0].details["ok"]) == ("hook", False)
    assert modelreg.fsck(registry=reg).ok


def test_hook_model_filter_ignores_case(registry: Registry, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    reg = configure(registry, f'[[hooks]]\non = ["promote"]\nmodels = ["ETA"]\n'
                              f'command = "touch {out}"\n')
    register(reg, tmp_path)
    modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    assert out.exists()


def test_webhook_with_unset_secret_is_not_sent(registry: Registry, tmp_path: Path, receiver,
                                               monkeypatch) -> None:
    state, url = receiver
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    reg = configure(registry, f'[[hooks]]\non = ["promote"]\nurl = "{url}"\n'
                              'secret_env = "MISSING_SECRET"\n')
    register(reg, tmp_path)
    result = modelreg.promote("eta@1", "staging", registry=reg, actor="a")
    assert state.requests == []
    assert [(h.ok, h.attempts) for h in result.hooks] == [(False, 0)]
    assert "MISSING_SECRET" in result.hooks[0].detail


HOOK_PROBE = """
import json, sys
import modelreg
result = modelreg.register("eta", [sys.argv[2]], registry=sys.argv[1], git=False,
                           actor="sci@example.com")
print(json.dumps({"hooks": [h.ok for h in result.hooks],
                  "loaded": "modelreg.registry.hooks" in sys.modules}))
"""


def test_hook_code_is_loaded_only_by_a_store_with_hooks(registry: Registry,
                                                        tmp_path: Path) -> None:
    import subprocess
    import sys

    def probe(name: str) -> dict[str, object]:
        f = tmp_path / name
        f.write_bytes(name.encode())
        out = subprocess.run([sys.executable, "-c", HOOK_PROBE, str(registry.layout.root), f],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    assert probe("a.bin") == {"hooks": [], "loaded": False}
    marker = tmp_path / "ran"
    configure(registry, f'[[hooks]]\non = ["register"]\ncommand = "touch {marker}"\n')
    assert probe("b.bin") == {"hooks": [True], "loaded": True}
    assert marker.exists()


def test_webhook_credentials_are_never_printed_or_recorded(registry: Registry, tmp_path: Path,
                                                           receiver) -> None:
    state, url = receiver
    secret_url = url.replace("http://", "http://alice:hunter2@") + "?token=tok3n&x=1#frag"
    reg = configure(registry, f'[[hooks]]\non = ["promote"]\nurl = "{secret_url}"\n')
    register(reg, tmp_path)
    cli = run_cli("promote", "eta@1", "--to", "staging", "--json", registry=reg.layout.root)
    assert cli.returncode == 0, cli.stderr
    events = run_cli("events", "--json", registry=reg.layout.root)
    history = run_cli("history", "eta", registry=reg.layout.root)
    for text in (cli.stdout, cli.stderr, events.stdout, history.stdout):
        assert "hunter2" not in text and "tok3n" not in text and "frag" not in text
    hook_events = [e for e in json.loads(events.stdout)["events"] if e["action"] == "hook"]
    redacted = hook_events[0]["details"]["url"]
    assert redacted.startswith("http://REDACTED@127.0.0.1:")
    assert redacted.endswith("/hook?token=REDACTED&x=REDACTED#REDACTED")
    assert json.loads(cli.stdout)["hooks"][0]["target"] == redacted
    assert all(b"hunter2" not in obj.read_bytes()
               for obj in (reg.layout.root / "objects").rglob("*") if obj.is_file())


@pytest.mark.parametrize(("line", "key"), [
    ('command = "true"\ntimeout = nan', "timeout"),
    ('command = "true"\ntimeout = inf', "timeout"),
    ('command = "true"\ntimeout = 1e308', "timeout"),
    ('url = "http://127.0.0.1:9/x"\ntimeout = -inf', "timeout"),
    ('url = "file:///etc/passwd"', "url"),
    ('url = "not a url"', "url"),
    ('url = "http://"', "url"),
    ('url = "http://host:port/x"', "url"),
    ('url = "http://host/a b"', "url"),
    ('command = "true\\u0000rm"', "command"),
])
def test_hooks_that_cannot_be_delivered_are_refused_when_config_is_read(
        registry: Registry, tmp_path: Path, line: str, key: str) -> None:
    registry.layout.config_file.write_text(f'[[hooks]]\non = ["promote"]\n{line}\n')
    f = tmp_path / "m.bin"
    f.write_bytes(b"w")
    before = snapshot(registry.layout.root / "refs")
    cli = run_cli("register", "eta", f, "--no-git", registry=registry.layout.root)
    assert cli.returncode == 2, cli.stderr
    assert f"hooks[0].{key}" in cli.stderr
    assert snapshot(registry.layout.root / "refs") == before
