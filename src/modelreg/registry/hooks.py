"""Hooks: tell a command or a URL about an event, or (``pre-``) ask it first.

A command hook runs with ``/bin/sh -c`` in the project directory, gets the event as JSON on
stdin and as ``MODELREG_*`` environment variables. A URL hook receives the event as a JSON
POST, signed with HMAC-SHA256 (header ``X-Modelreg-Signature-256: sha256=<hex>``) when its
``secret_env`` names a set environment variable; it is retried once. A URL is reported
(``HookResult.target``, messages, the ``hook`` event) only with its user info and query
values redacted. A ``pre-`` hook that
fails (non-zero exit, non-2xx answer, time-out) vetoes the change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from modelreg.registry.policy import Hook
from modelreg.results import HookResult

__all__ = ["HookResult", "SIGNATURE_HEADER", "run_hook", "sign"]

SIGNATURE_HEADER = "X-Modelreg-Signature-256"
RETRY_DELAY = 1.0


def sign(secret: bytes, body: bytes) -> str:
    """Return the signature header value for ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _env_for(event: dict[str, Any], when: str, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MODELREG_HOOK": when,
        "MODELREG_EVENT": json.dumps(event, sort_keys=True),
        "MODELREG_ACTION": str(event["action"]),
        "MODELREG_MODEL": str(event["model"]),
        "MODELREG_VERSION": "" if event.get("version") is None else str(event["version"]),
        "MODELREG_FROM": event.get("from") or "",
        "MODELREG_TO": event.get("to") or "",
        "MODELREG_EVENT_ACTOR": str(event["actor"]),
        "MODELREG_DIR": str(store),
    })
    return env


def _run_command(hook: Hook, event: dict[str, Any], store: Path) -> HookResult:
    assert hook.command is not None  # noqa: S101 - guaranteed by the config parser
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", hook.command], cwd=store.parent, input=json.dumps(event),
            capture_output=True, text=True, timeout=hook.timeout, env=_env_for(event, hook.when,
                                                                               store),
        )
    except subprocess.TimeoutExpired:
        return HookResult(hook.command, hook.when, False, 1, None,
                          f"timed out after {hook.timeout:g}s")
    except OSError as exc:
        return HookResult(hook.command, hook.when, False, 1, None, str(exc))
    said = (proc.stderr.strip() or proc.stdout.strip())[-500:]
    return HookResult(hook.command, hook.when, proc.returncode == 0, 1, proc.returncode,
                      said or f"exit {proc.returncode}")


def _post(hook: Hook, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    # Imported here: urllib pulls in ssl, which costs every command's start-up otherwise.
    import urllib.error
    import urllib.request

    assert hook.url is not None  # noqa: S101 - guaranteed by the config parser
    try:
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=hook.timeout) as response:  # noqa: S310
            return int(response.status), "delivered"
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        # ValueError: http.client refuses a URL it cannot send (config.toml checks the
        # usual ones). The detail is printed and recorded: never with the URL's secrets.
        return None, str(getattr(exc, "reason", exc)).replace(hook.url, hook.target)


def _run_url(hook: Hook, event: dict[str, Any]) -> HookResult:
    assert hook.url is not None  # noqa: S101 - guaranteed by the config parser
    body = json.dumps(event, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "modelreg",
               "X-Modelreg-Action": str(event["action"]), "X-Modelreg-Hook": hook.when}
    secret = os.environ.get(hook.secret_env) if hook.secret_env else None
    if hook.secret_env and not secret:
        # The receiver expects signed deliveries; sending one unsigned would teach it to
        # accept them. Report the misconfiguration instead.
        return HookResult(hook.target, hook.when, False, 0, None,
                          f"not sent: ${hook.secret_env} (the signing secret) is not set")
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret.encode(), body)
    status, detail = None, ""
    for attempt in (1, 2):
        status, detail = _post(hook, body, headers)
        if status is not None and 200 <= status < 300:
            return HookResult(hook.target, hook.when, True, attempt, status, detail)
        if status is not None and 400 <= status < 500:
            break  # the receiver understood and said no: repeating will not change that
        if attempt == 1:
            time.sleep(RETRY_DELAY)
    return HookResult(hook.target, hook.when, False, attempt, status, detail)


def run_hook(hook: Hook, event: dict[str, Any], store: Path) -> HookResult:
    """Deliver ``event`` to ``hook``.

    Args:
        hook: The hook from config.toml.
        event: The event record (the shape of ``modelreg events --json``).
        store: The ``.modelreg`` directory (commands run in its parent).

    Returns:
        The delivery result; never raises for a failing hook.
    """
    if hook.command is not None:
        return _run_command(hook, event, store)
    return _run_url(hook, event)
