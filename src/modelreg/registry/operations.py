"""Lifecycle operations on a registry: each resolves, plans and commits one change.

Every function here runs its change as a transaction
(:func:`modelreg.registry.transaction.mutate`): the reference is resolved under the model's
lock, policy is checked on the state the change commits onto, and state and history move
together. Registering and pulling are verbs of the same kind, in
:mod:`modelreg.registry.registering` and :mod:`modelreg.registry.pulling`.
"""

from __future__ import annotations

from typing import Any

from modelreg.errors import NotFound, UsageError
from modelreg.registry.builder import StateBuilder
from modelreg.registry.core import Registry
from modelreg.registry.lifecycle import (
    add_approval,
    check_alias_name,
    edit_metadata,
    last_holder,
    move,
    previous_holder,
    record_check,
    remove_alias,
    set_alias,
)
from modelreg.registry.names import Ref, parse_ref
from modelreg.registry.state import now_iso
from modelreg.registry.transaction import Outcome, mutate, version_after
from modelreg.results import ChangeResult

__all__ = ["alias_list", "alias_remove", "alias_set", "approve", "archive", "check", "edit",
           "promote", "rollback"]


def _model_name(name: str, command: str, does: str) -> str:
    """Refuse a reference where a model name is due, saying what the command takes."""
    if "@" in name:
        model = name.split("@", 1)[0]
        raise UsageError(f"{command} takes a model name, not a version: {name!r} names one. "
                         f"{command} {does} (`modelreg {command} {model or 'NAME'} ...`)")
    return name


def _result(reg: Registry, outcome: Outcome[Any], version: int, changed: bool) -> ChangeResult:
    return ChangeResult(version_after(reg, outcome, version), changed,
                        outcome.event_records(), outcome.hooks)


def promote(reg: Registry, ref: str, to_stage: str, *, actor: str,
            reason: str | None = None, allow_breaking: bool = False) -> ChangeResult:
    """Move the version ``ref`` names into ``to_stage``, under the store's policy.

    Args:
        reg: The registry.
        ref: The version.
        to_stage: The stage to enter (the archive stage archives).
        actor: Who does it.
        reason: Why (recorded).
        allow_breaking: Into a stage whose policy has ``check_signature`` (production by
            default), allow a signature that breaks the current holder's; the override is
            recorded with the event.

    Returns:
        The version's resulting state and the recorded events.

    Raises:
        PolicyDenied: The transition is not allowed, a requirement is unmet, or the
            signature breaks the stage holder's.
    """
    parsed = parse_ref(ref)
    config = reg.config

    def plan(b: StateBuilder) -> tuple[int, bool]:
        version = b.resolve(parsed)
        return version, move(b, config, version, to_stage, actor=actor, time=now_iso(),
                             reason=reason, allow_breaking=allow_breaking)

    outcome = mutate(reg, parsed.name, plan)
    return _result(reg, outcome, *outcome.value)


def archive(reg: Registry, ref: str, *, actor: str, reason: str | None = None) -> ChangeResult:
    """Move the version ``ref`` names into the archive stage."""
    return promote(reg, ref, reg.config.archive, actor=actor, reason=reason)


def approve(reg: Registry, ref: str, *, actor: str, stage: str | None = None,
            comment: str | None = None) -> ChangeResult:
    """Record ``actor``'s approval of a version for ``stage`` (default: the approval stage)."""
    parsed = parse_ref(ref)
    config = reg.config
    target = stage or config.default_approval_stage()

    def plan(b: StateBuilder) -> tuple[int, bool]:
        version = b.resolve(parsed)
        return version, add_approval(b, config, version, target, actor=actor, time=now_iso(),
                                     comment=comment)

    outcome = mutate(reg, parsed.name, plan)
    return _result(reg, outcome, *outcome.value)


def check(reg: Registry, ref: str, name: str, *, passed: bool, actor: str, value: Any = None,
          details: str | None = None) -> ChangeResult:
    """Record the result of check ``name`` (a CI gate) on a version."""
    parsed = parse_ref(ref)

    def plan(b: StateBuilder) -> int:
        version = b.resolve(parsed)
        record_check(b, version, name, passed=passed, value=value, details=details,
                     actor=actor, time=now_iso())
        return version

    outcome = mutate(reg, parsed.name, plan)
    return _result(reg, outcome, outcome.value, True)


def rollback(reg: Registry, name: str, *, actor: str, stage: str = "production",
             reason: str | None = None) -> ChangeResult:
    """Put back the version that held ``stage`` before the current one.

    The current holder goes to the archive stage; the previous holder comes back, as new
    recorded transitions. When ``stage`` is empty (its holder was archived), the version
    that left it last comes back, as one ``rollback`` event whose details name what it
    restores. Transition rules and approvals are not re-checked (a rollback restores a
    state that was approved once), but ``allowed_actors`` is.

    Args:
        reg: The registry.
        name: The model name (not a reference: the stage says which version goes).
        actor: Who does it.
        stage: The exclusive stage to roll back.
        reason: Why (recorded; a default names the versions).

    Returns:
        The restored version's state and the recorded events.

    Raises:
        UsageError: ``name`` is a reference, or the stage is not exclusive.
        NotFound: No such stage or model, or no version to put back.
    """
    _model_name(name, "rollback", f"puts back the version that held {stage} before the "
                "current one, or the one archived from it if it is empty now; the stage is "
                "given with --stage")
    config = reg.config
    if stage not in config.stages:
        raise NotFound(f"no stage {stage!r} (stages: {', '.join(config.stages)})")
    if not config.policy(stage).exclusive:
        raise UsageError(f"rollback works on stages that hold one version at a time; "
                         f"{stage} is not exclusive (use promote to move versions there)")

    def plan(b: StateBuilder) -> int:
        b.resolve(Ref(name))
        when = now_iso()
        current = b.stages.get(stage)
        if current is None:
            left = last_holder(b, stage)
            if left is None:
                raise NotFound(f"no version of {b.name} is in {stage} or ever left it; "
                               "nothing to roll back")
            version, how, at = left
            why = reason or (f"rollback of {stage}: restore v{version}, which left it "
                             f"({how}) at {at}")
            move(b, config, version, stage, actor=actor, time=when, reason=why, enforce=False,
                 action="rollback", extra={"restored": {"action": how, "time": at}})
            return version
        previous = previous_holder(b, stage, current.version)
        if previous is None:
            raise NotFound(f"no version of {b.name} held {stage} before v{current.version}")
        why = reason or f"rollback of {stage} from v{current.version} to v{previous}"
        if stage != config.archive:
            move(b, config, current.version, config.archive, actor=actor, time=when,
                 reason=why, enforce=False, action="archive")
        move(b, config, previous, stage, actor=actor, time=when, reason=why, enforce=False,
             action="rollback", extra={"rolled_back": current.version})
        return previous

    outcome = mutate(reg, name, plan)
    return _result(reg, outcome, outcome.value, True)


def edit(reg: Registry, ref: str, *, actor: str, description: str | None = None,
         set_tags: dict[str, str] | None = None,
         remove_tags: list[str] | None = None) -> ChangeResult:
    """Change a version's description and tags, as a recorded ``edit`` event."""
    parsed = parse_ref(ref)
    both = sorted(set(set_tags or {}) & set(remove_tags or []))
    if both:
        raise UsageError(f"tag {both[0]!r} is both set and removed; say one")

    def plan(b: StateBuilder) -> tuple[int, bool]:
        version = b.resolve(parsed)
        m = b.load_manifest(b.entry(version).manifest)
        return version, edit_metadata(b, version, (m.description, m.tags),
                                      description=description, set_tags=set_tags or {},
                                      remove_tags=remove_tags or [], actor=actor,
                                      time=now_iso())

    outcome = mutate(reg, parsed.name, plan)
    return _result(reg, outcome, *outcome.value)


def alias_set(reg: Registry, name: str, alias: str, version: int, *,
              actor: str) -> ChangeResult:
    """Point ``alias`` at ``version`` of model ``name`` (moving it if it pointed elsewhere)."""
    _model_name(name, "alias set", "points an alias of a model at one of its versions")
    check_alias_name(reg.config, alias)
    if version < 1:
        raise UsageError("versions start at 1")

    def plan(b: StateBuilder) -> bool:
        b.resolve(Ref(name))
        return set_alias(b, reg.config, alias, version, actor=actor, time=now_iso())

    outcome = mutate(reg, name, plan)
    return _result(reg, outcome, version, outcome.value)


def alias_remove(reg: Registry, name: str, alias: str, *, actor: str) -> ChangeResult:
    """Remove ``alias`` from model ``name``."""
    _model_name(name, "alias rm", "removes an alias of a model")

    def plan(b: StateBuilder) -> int:
        b.resolve(Ref(name))
        return remove_alias(b, alias, actor=actor, time=now_iso())

    outcome = mutate(reg, name, plan)
    return _result(reg, outcome, outcome.value, True)


def alias_list(reg: Registry, name: str) -> tuple[str, dict[str, int]]:
    """Return the model's canonical name and its aliases with their versions."""
    _model_name(name, "alias list", "lists the aliases of a model")
    state = reg.require_state(name)
    return state.model, {a: h.version for a, h in sorted(state.aliases.items())}
