"""The store's lifecycle policy, read from ``.modelreg/config.toml``.

Stages, the transitions allowed between them, which stages hold one version at a time, and
per-stage requirements (approvals, four eyes, recorded checks, allowed actors), plus hooks.
Everything here is pure: it parses and answers questions, it writes nothing.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelreg.config import actor_key, normalize_actor
from modelreg.errors import UsageError

__all__ = [
    "DEFAULT_STAGES",
    "DEFAULT_TRANSITIONS",
    "MAX_CONFIG_BYTES",
    "Hook",
    "StagePolicy",
    "StoreConfig",
    "config_from_bytes",
    "load_config",
    "parse_config",
    "redact_url",
]

MAX_CONFIG_BYTES = 1 << 20
"""The largest ``config.toml`` read; a real one is a few KiB."""

DEFAULT_STAGES = ("development", "staging", "production", "archived")
DEFAULT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "development": ("staging", "archived"),
    "staging": ("production", "development", "archived"),
    "production": ("archived",),
    "archived": ("staging",),
}
HOOK_ACTIONS = ("register", "promote", "archive", "rollback", "approve", "check", "alias",
                "edit")
# A hook may wait at most this long: a longer time-out is a typo (1e308, inf) that would
# overflow the timers below, or hang the command.
MAX_HOOK_TIMEOUT = 3600.0
_REDACTED = "REDACTED"
_HOOK_KEYS = {"on", "stages", "models", "command", "url", "secret_env", "timeout"}
_TOP_KEYS = {"lifecycle", "stages", "transitions", "groups", "hooks", "allow_pickle"}
_LIFECYCLE_KEYS = {"stages", "initial", "archive"}
_STAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
_STAGE_KEYS = {"exclusive", "require_approvals", "four_eyes", "require_checks",
               "allowed_actors", "check_signature"}


@dataclass(frozen=True)
class StagePolicy:
    """What it takes for a version to enter one stage."""

    name: str
    exclusive: bool = False
    require_approvals: int = 0
    four_eyes: bool = False
    require_checks: tuple[str, ...] = ()
    allowed_actors: tuple[str, ...] = ()
    check_signature: bool = False


@dataclass(frozen=True)
class Hook:
    """A command or URL told about events (``post``), or asked first (``pre``)."""

    on: tuple[str, ...]
    when: str
    stages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    command: str | None = None
    url: str | None = None
    secret_env: str | None = None
    timeout: float = 30.0

    @property
    def target(self) -> str:
        """The command or URL, for messages and records (a URL's credentials redacted)."""
        if self.url is not None:
            return redact_url(self.url)
        return self.command or "?"

    def matches(self, action: str, model: str, to_stage: str | None) -> bool:
        """Tell whether this hook fires for an event."""
        if action not in self.on:
            return False
        if self.stages and to_stage not in self.stages:
            return False
        return not self.models or model.lower() in self.models


def redact_url(url: str) -> str:
    """``url`` without secrets: user info, every query value and the fragment replaced.

    ``http://alice:hunter2@host/hook?token=abc&x#f`` becomes
    ``http://REDACTED@host/hook?token=REDACTED&x=REDACTED#REDACTED``. A URL that does not parse is
    replaced whole, so nothing of it is shown.

    Args:
        url: The URL as configured.

    Returns:
        The URL fit to print and to record.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return f"<{_REDACTED} URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{_REDACTED}@" if "@" in parts.netloc else "") + host + port

    def values(text: str) -> str:
        if not text:
            return ""
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, _REDACTED) for k, _ in pairs], safe="") if pairs else _REDACTED

    return urlunsplit((parts.scheme, netloc, parts.path, values(parts.query),
                       _REDACTED if parts.fragment else ""))


def _check_url(url: str, where: str) -> None:
    """Refuse a hook URL that could not be delivered (or would be read from disk)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise UsageError(f"config.toml: {where}.url is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"config.toml: {where}.url must be an http:// or https:// URL with a "
                         f"host, not {redact_url(url)!r}")
    if any(not c.isprintable() or c.isspace() for c in url):
        raise UsageError(f"config.toml: {where}.url holds a space or control character")


@dataclass(frozen=True)
class StoreConfig:
    """The parsed ``config.toml``."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    initial: str = "development"
    archive: str = "archived"
    transitions: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_TRANSITIONS))
    policies: dict[str, StagePolicy] = field(
        default_factory=lambda: {"production": StagePolicy("production", exclusive=True,
                                                           check_signature=True)})
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hooks: tuple[Hook, ...] = ()
    allow_pickle: bool = False

    def policy(self, stage: str) -> StagePolicy:
        """Return the policy of ``stage`` (an empty one if none is configured)."""
        return self.policies.get(stage, StagePolicy(stage))

    def allowed(self, from_stage: str, to_stage: str) -> bool:
        """Tell whether the transition is allowed."""
        return to_stage in self.transitions.get(from_stage, ())

    def actor_allowed(self, stage: str, actor: str) -> bool:
        """Tell whether ``actor`` may move versions into ``stage``.

        Names are compared normalised (:func:`modelreg.config.actor_key`), so
        ``Alice@Example.com`` is the ``alice@example.com`` a list names.
        """
        allowed = self.policy(stage).allowed_actors
        if not allowed:
            return True
        key = actor_key(actor)
        for entry in allowed:
            if entry.startswith("group:"):
                members = self.groups.get(entry[len("group:"):], ())
                if key in {actor_key(m) for m in members}:
                    return True
            elif actor_key(entry) == key:
                return True
        return False

    def default_approval_stage(self) -> str:
        """The stage an approval is for when none is named."""
        needing = [s for s in self.stages if self.policy(s).require_approvals > 0]
        if len(needing) == 1:
            return needing[0]
        if "production" in self.stages:
            return "production"
        raise UsageError("say which stage the approval is for with --stage")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"config.toml: {where} must be a list of strings")
    return tuple(value)


def _actors(value: Any, where: str) -> tuple[str, ...]:
    """Read a list of actor names (``group:NAME`` kept as written), normalised."""
    return tuple(entry if entry.startswith("group:") else normalize_actor(entry, where)
                 for entry in _strings(value, where))


def _stage_policy(name: str, table: Any) -> StagePolicy:
    if not isinstance(table, dict):
        raise UsageError(f"config.toml: [stages.{name}] must be a table")
    unknown = set(table) - _STAGE_KEYS
    if unknown:
        raise UsageError(f"config.toml: [stages.{name}] has unknown keys {sorted(unknown)}; "
                         f"known: {sorted(_STAGE_KEYS)}")
    approvals = table.get("require_approvals", 0)
    if not isinstance(approvals, int) or isinstance(approvals, bool) or approvals < 0:
        raise UsageError(f"config.toml: stages.{name}.require_approvals must be an integer ≥ 0")
    for key in ("exclusive", "four_eyes", "check_signature"):
        if not isinstance(table.get(key, False), bool):
            raise UsageError(f"config.toml: stages.{name}.{key} must be true or false")
    return StagePolicy(
        name=name,
        exclusive=table.get("exclusive", False),
        require_approvals=approvals,
        four_eyes=table.get("four_eyes", False),
        require_checks=_strings(table.get("require_checks", []), f"stages.{name}.require_checks"),
        allowed_actors=_actors(table.get("allowed_actors", []), f"stages.{name}.allowed_actors"),
        check_signature=table.get("check_signature", False),
    )


def _hook(i: int, table: Any, stages: tuple[str, ...]) -> Hook:
    where = f"hooks[{i}]"
    if not isinstance(table, dict):
        raise UsageError(f"config.toml: {where} must be a table")
    on = _strings(table.get("on", []), f"{where}.on")
    if not on:
        raise UsageError(f"config.toml: {where}.on must name at least one action")
    whens = {a.startswith("pre-") for a in on}
    if len(whens) > 1:
        raise UsageError(f"config.toml: {where}.on mixes pre- and post- actions; split the hook")
    actions = tuple(a.removeprefix("pre-") for a in on)
    for a in actions:
        if a not in HOOK_ACTIONS:
            raise UsageError(f"config.toml: {where}.on: unknown action {a!r} "
                             f"(known: {', '.join(HOOK_ACTIONS)}, each also as pre-ACTION)")
    unknown = set(table) - _HOOK_KEYS
    if unknown:
        raise UsageError(f"config.toml: {where} has unknown keys {sorted(unknown)}; known: "
                         f"{sorted(_HOOK_KEYS)}")
    command, url = table.get("command"), table.get("url")
    if (command is None) == (url is None):
        raise UsageError(f"config.toml: {where} needs exactly one of command or url")
    for key in ("command", "url", "secret_env"):
        if table.get(key) is not None and not (isinstance(table[key], str) and table[key]):
            raise UsageError(f"config.toml: {where}.{key} must be a non-empty string")
    hook_stages = _strings(table.get("stages", []), f"{where}.stages")
    for s in hook_stages:
        if s not in stages:
            raise UsageError(f"config.toml: {where}.stages names unknown stage {s!r}")
    if isinstance(url, str) and url:
        _check_url(url, where)
    if isinstance(command, str) and "\0" in command:
        raise UsageError(f"config.toml: {where}.command holds a NUL character")
    timeout = table.get("timeout", 30.0 if command else 5.0)
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_HOOK_TIMEOUT):  # also refuses nan (no comparison holds)
        raise UsageError(f"config.toml: {where}.timeout must be a number of seconds above 0 "
                         f"and at most {MAX_HOOK_TIMEOUT:g}")
    return Hook(
        on=actions,
        when="pre" if whens == {True} else "post",
        stages=hook_stages,
        models=tuple(m.lower() for m in _strings(table.get("models", []), f"{where}.models")),
        command=command if isinstance(command, str) else None,
        url=url if isinstance(url, str) else None,
        secret_env=table.get("secret_env"),
        timeout=float(timeout),
    )


def _gates(policy: StagePolicy, table: dict[str, Any]) -> list[str]:
    """Name the settings that make ``policy``'s stage gated, as ``stages.NAME.KEY = value``."""
    found = []
    for key in ("require_approvals", "four_eyes", "require_checks", "allowed_actors",
                "check_signature", "exclusive"):
        value = getattr(policy, key)
        if value:
            written = table.get(key, value)
            shown = ("true" if written is True else
                     "[" + ", ".join(f'"{v}"' for v in written) + "]"
                     if isinstance(written, list | tuple) else str(written))
            default = "" if key in table else f" (the default for {policy.name})"
            found.append(f"stages.{policy.name}.{key} = {shown}{default}")
    return found


def _refuse_gated(policies: dict[str, StagePolicy], tables: dict[str, Any],
                  lifecycle: dict[str, Any], initial: str, archive: str) -> None:
    """Refuse a configuration whose initial or archive stage has requirements.

    A version enters the initial stage by being registered and the archive stage by being
    archived or displaced; neither move checks a stage's requirements, so a gated stage
    there would be entered by anyone, and an exclusive one would hold many versions.

    Raises:
        UsageError: Naming the key that chose the stage and the settings that gate it.
    """
    for role, stage in (("initial", initial), ("archive", archive)):
        policy = policies.get(stage)
        gates = [] if policy is None else _gates(policy, tables.get(stage, {}))
        if not gates:
            continue
        if role in lifecycle:
            key = f"lifecycle.{role} = {stage!r}"
        elif role == "initial":
            key = f"lifecycle.stages (its first stage, {stage!r}, is the initial one)"
        else:
            key = (f"lifecycle.archive (not set: the archive stage is {stage!r}, "
                   f"{'the stage named archived' if stage == 'archived' else 'the last stage'})")
        enters = ("register puts every new version there" if role == "initial"
                  else "archive and displacement move versions there")
        raise UsageError(
            f"config.toml: {key}: the {role} stage cannot have requirements, since {enters} "
            f"without checking them; {stage!r} has {', '.join(gates)}. Make another stage "
            f"the {role} one (lifecycle.{role}, or the order of lifecycle.stages) or drop "
            "these settings")


def parse_config(doc: dict[str, Any]) -> StoreConfig:
    """Build the policy from a parsed ``config.toml``.

    Args:
        doc: The TOML document.

    Returns:
        The configuration, defaults filled in.

    Raises:
        UsageError: The configuration is inconsistent (unknown stage, bad value, an initial
            or archive stage with requirements).
    """
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise UsageError(f"config.toml: unknown keys {sorted(unknown)}; known: "
                         f"{sorted(_TOP_KEYS)}")
    lifecycle = doc.get("lifecycle", {})
    if not isinstance(lifecycle, dict):
        raise UsageError("config.toml: [lifecycle] must be a table")
    unknown = set(lifecycle) - _LIFECYCLE_KEYS
    if unknown:
        raise UsageError(f"config.toml: [lifecycle] has unknown keys {sorted(unknown)}; known: "
                         f"{sorted(_LIFECYCLE_KEYS)}")
    stages = list(_strings(lifecycle.get("stages", list(DEFAULT_STAGES)), "lifecycle.stages"))
    if not stages:
        raise UsageError("config.toml: lifecycle.stages must name at least one stage")
    stage_tables = doc.get("stages", {})
    if not isinstance(stage_tables, dict):
        raise UsageError("config.toml: [stages] must be a table of [stages.NAME] tables")
    for name in stage_tables:
        if name not in stages:
            stages.insert(max(len(stages) - 1, 0), name)
    folded = [s.lower() for s in stages]
    for s in stages:
        if not _STAGE_NAME.match(s) or s.lower() == "latest":
            raise UsageError(f"config.toml: bad stage name {s!r}: start with a letter; letters, "
                             "digits, '_' and '-'; not 'latest'")
        if folded.count(s.lower()) > 1:
            raise UsageError(f"config.toml: stage {s!r} is listed twice")
    initial = lifecycle.get("initial", stages[0] if stages else "")
    archive = lifecycle.get("archive", "archived" if "archived" in stages else stages[-1])
    for label, stage in (("lifecycle.initial", initial), ("lifecycle.archive", archive)):
        if stage not in stages:
            raise UsageError(f"config.toml: {label} = {stage!r} is not a stage")
    transitions = {
        s: tuple(t for t in DEFAULT_TRANSITIONS.get(s, (archive,)) if t in stages)
        for s in stages
    }
    for s in stages:
        if s != archive and archive not in transitions[s]:
            transitions[s] = (*transitions[s], archive)
    raw_transitions = doc.get("transitions", {})
    if not isinstance(raw_transitions, dict):
        raise UsageError("config.toml: [transitions] must map a stage to a list of stages")
    for src, targets in raw_transitions.items():
        dests = _strings(targets, f"transitions.{src}")
        for s in (src, *dests):
            if s not in stages:
                raise UsageError(f"config.toml: [transitions] names unknown stage {s!r}")
        transitions[src] = dests
    policies = {"production": StagePolicy("production", exclusive=True, check_signature=True)
                } if "production" in stages else {}
    for name, table in stage_tables.items():
        if not isinstance(table, dict):
            raise UsageError(f"config.toml: [stages.{name}] must be a table")
        merged = {"exclusive": name == "production", "check_signature": name == "production",
                  **table}
        policies[name] = _stage_policy(name, merged)
    _refuse_gated(policies, stage_tables, lifecycle, initial, archive)
    groups_raw = doc.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise UsageError("config.toml: [groups] must map a group name to a list of actors")
    groups = {g: tuple(normalize_actor(m, f"groups.{g}") for m in _strings(members, f"groups.{g}"))
              for g, members in groups_raw.items()}
    for p in policies.values():
        for entry in p.allowed_actors:
            if entry.startswith("group:") and entry[len("group:"):] not in groups:
                raise UsageError(f"config.toml: stages.{p.name}.allowed_actors names undefined "
                                 f"{entry!r}; define it under [groups]")
    hooks_raw = doc.get("hooks", [])
    if not isinstance(hooks_raw, list):
        raise UsageError("config.toml: hooks must be an array of tables ([[hooks]])")
    hooks = tuple(_hook(i, h, tuple(stages)) for i, h in enumerate(hooks_raw))
    allow_pickle = doc.get("allow_pickle", False)
    if not isinstance(allow_pickle, bool):
        raise UsageError("config.toml: allow_pickle must be true or false")
    return StoreConfig(stages=tuple(stages), initial=initial, archive=archive,
                       transitions=transitions, policies=policies, groups=groups, hooks=hooks,
                       allow_pickle=allow_pickle)


def load_config(path: Path) -> StoreConfig:
    """Read and parse ``config.toml`` (defaults when the file is missing).

    The file must be a regular file (a symlink to one is followed) of at most
    :data:`MAX_CONFIG_BYTES`: a FIFO or a device (``/dev/zero``) would make every command
    hang or read without end, so they are refused instead of read.

    Args:
        path: The file.

    Returns:
        The configuration.

    Raises:
        UsageError: The file is not a regular file, too large, not UTF-8, not valid TOML
            (nesting too deep included) or not a valid configuration.
    """
    try:
        # Looked at before it is opened: opening a FIFO would wait for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{path} is not a regular file; config.toml must be one")
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped in meanwhile
                raise UsageError(f"{path} is not a regular file; config.toml must be one")
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return StoreConfig()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from exc
    return config_from_bytes(data, str(path))


def config_from_bytes(data: bytes, where: str) -> StoreConfig:
    """Parse the bytes of a ``config.toml`` (a file's, or an object store's ``config`` ref).

    Args:
        data: The bytes (more than :data:`MAX_CONFIG_BYTES` is refused).
        where: Where they came from, for messages.

    Raises:
        UsageError: Too large, not UTF-8, not valid TOML (nesting too deep included) or not a
            valid configuration.
    """
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{where} is larger than {MAX_CONFIG_BYTES // 1024} KiB; that is not "
                         "a configuration")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text ({exc})") from exc
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise UsageError(f"{where}: not valid TOML ({exc})") from exc
    except RecursionError as exc:
        raise UsageError(f"{where}: not valid TOML (arrays or tables nested too deeply)"
                         ) from exc
    try:
        return parse_config(doc)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message.removeprefix('config.toml: ')}") from exc
