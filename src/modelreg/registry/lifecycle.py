"""Lifecycle changes on a model's working state: transitions, approvals, checks, aliases.

These functions work on a :class:`~modelreg.registry.builder.StateBuilder` inside
:func:`modelreg.registry.transaction.mutate`, so each runs under the model's lock and commits
atomically with the events it records. Policy comes from
:class:`~modelreg.registry.policy.StoreConfig`; a denied change raises ``PolicyDenied``
carrying one typed :class:`~modelreg.errors.Denial` per unmet rule, and nothing is written.
The rules include the signature rule: into a stage whose policy has ``check_signature``, a
version whose signature breaks the current holder's needs ``allow_breaking`` (recorded).
"""

from __future__ import annotations

import re
from typing import Any

from modelreg.config import actor_key
from modelreg.errors import Denial, NotFound, PolicyDenied, UsageError
from modelreg.registry.builder import StateBuilder
from modelreg.registry.policy import StoreConfig
from modelreg.registry.state import VersionEntry
from modelreg.types import Approval, CheckRecord

__all__ = [
    "add_approval",
    "check_alias_name",
    "edit_metadata",
    "last_holder",
    "missing_requirements",
    "move",
    "previous_holder",
    "record_check",
    "remove_alias",
    "set_alias",
    "signature_breaks",
]

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z")
_VERSIONISH = re.compile(r"^v?[0-9]+\Z")


def missing_requirements(config: StoreConfig, entry: VersionEntry, to_stage: str,
                         actor: str) -> list[Denial]:
    """List what ``actor`` lacks to move a version into ``to_stage`` (empty: allowed).

    Args:
        config: The store's policy.
        entry: The version's index entry (its approvals and checks).
        to_stage: The stage to enter.
        actor: Who moves it.

    Returns:
        One reason per unmet requirement (rule ``actor``, ``check`` or ``approval``).
    """
    policy = config.policy(to_stage)
    missing = []
    if not config.actor_allowed(to_stage, actor):
        missing.append(Denial("actor", f"{actor} may not move versions into {to_stage} "
                                       f"(allowed: {', '.join(policy.allowed_actors)})"))
    for name in policy.require_checks:
        record = entry.checks.get(name)
        if record is None:
            missing.append(Denial("check", f"check {name!r} has no recorded result"))
        elif not record.passed:
            value = "" if record.value is None else f" (value {record.value})"
            missing.append(Denial("check", f"check {name!r} failed{value}"))
    if policy.require_approvals:
        # Identities compared normalised: one person's approvals count once however each
        # was spelled, and a record of an older version, stored un-normalised, matches too.
        approvers = {actor_key(a.actor) for a in entry.approvals if a.stage == to_stage}
        excluded = set()
        if policy.four_eyes:
            excluded = approvers & {actor_key(actor), actor_key(entry.created_by)}
            approvers -= excluded
        if len(approvers) < policy.require_approvals:
            note = ""
            if excluded:
                note = (f"; approvals by {', '.join(sorted(excluded))} do not count under "
                        "four_eyes (the promoter and the registrant cannot approve their own)")
            missing.append(Denial("approval", f"needs {policy.require_approvals} approval(s) "
                                              f"for {to_stage}, has {len(approvers)}{note}"))
    return missing


def signature_breaks(b: StateBuilder, holder: int, candidate: int) -> list[str]:
    """List how ``candidate``'s signature breaks ``holder``'s (empty: compatible).

    Args:
        b: The model's working state.
        holder: The version whose callers must keep working.
        candidate: The version that would replace it.

    Returns:
        One message per breaking change.
    """
    from modelreg.signatures.compat import diff_signatures
    from modelreg.signatures.model import parse_signature

    old = b.load_manifest(b.entry(holder).manifest).signature
    new = b.load_manifest(b.entry(candidate).manifest).signature
    changes = diff_signatures(None if old is None else parse_signature(old),
                              None if new is None else parse_signature(new))
    return [c.message for c in changes if c.breaking]


def _check_signature(b: StateBuilder, holder: int, candidate: int,
                     allow_breaking: bool, subject: str | None = None) -> dict[str, Any]:
    """Apply the signature rule; return the fields to record with the move."""
    breaking = signature_breaks(b, holder, candidate)
    if not breaking:
        return {}
    if not allow_breaking:
        # `register --stage` has no override: the version must be registered first.
        override = ("Register it without --stage, then promote it with --allow-breaking"
                    if subject is not None else "Pass --allow-breaking to promote anyway")
        message = (f"{subject or f'{b.name}@{candidate}'} breaks the signature of "
                   f"{b.name}@{holder}, which callers use now: {'; '.join(breaking)}. "
                   f"{override} (the override is recorded)")
        raise PolicyDenied(message, (Denial("signature", message),))
    return {"allow_breaking": True, "breaking_changes": breaking}


def move(b: StateBuilder, config: StoreConfig, version: int, to_stage: str, *, actor: str,
         time: str, reason: str | None = None, action: str | None = None,
         enforce: bool = True, extra: dict[str, Any] | None = None,
         allow_breaking: bool = False, subject: str | None = None) -> bool:
    """Move ``version`` into ``to_stage``, displacing the holder of an exclusive stage.

    Args:
        b: The model's working state.
        config: The store's policy.
        version: The version to move.
        to_stage: Where to.
        actor: Who moves it.
        time: When (ISO 8601).
        reason: Why (recorded).
        action: The event's action (default ``promote``, or ``archive`` into the archive
            stage).
        enforce: Check transitions, requirements and signatures (rollback, which
            restores a state that was allowed once, checks only the actor).
        extra: More fields for the event.
        allow_breaking: Into a stage whose policy has ``check_signature``, allow a
            signature that breaks the current holder's (the override is recorded).
        subject: How messages name the version (default ``NAME@N``; ``register --stage``
            names the version it would have made, which does not exist if refused).

    Returns:
        False if the version already was in ``to_stage`` (nothing recorded).

    Raises:
        NotFound: No such stage or version.
        PolicyDenied: The transition is not allowed or a requirement is unmet.
    """
    if to_stage not in config.stages:
        raise NotFound(f"no stage {to_stage!r} (stages: {', '.join(config.stages)})")
    entry = b.entry(version)
    from_stage = entry.stage
    if from_stage == to_stage:
        return False
    ref = f"{b.name}@{version}"
    named = subject or ref
    if enforce and not config.allowed(from_stage, to_stage):
        allowed = ", ".join(config.transitions.get(from_stage, ())) or "nowhere"
        message = (f"cannot move {named} from {from_stage} to {to_stage}: the transition is not "
                   f"allowed (from {from_stage} a version may go to {allowed})")
        raise PolicyDenied(message, (Denial("transition", message),))
    missing = [d for d in missing_requirements(config, entry, to_stage, actor)
               if enforce or d.rule == "actor"]
    if missing:
        raise PolicyDenied(f"cannot move {named} to {to_stage}: "
                           + "; ".join(d.message for d in missing), tuple(missing))
    holder = b.stages.get(to_stage)
    if (enforce and config.policy(to_stage).check_signature
            and holder is not None and holder.version != version):
        recorded = _check_signature(b, holder.version, version, allow_breaking, subject)
        if recorded:
            extra = {**(extra or {}), **recorded}
    if config.policy(to_stage).exclusive and holder is not None and holder.version != version:
        _set_stage(b, holder.version, config.archive)
        b.record(action="archive", actor=actor, time=time, version=holder.version,
                 from_stage=to_stage, to_stage=config.archive,
                 reason=f"displaced from {to_stage} by {ref}",
                 extra={"displaced_by": version})
    _set_stage(b, version, to_stage)
    b.record(action=action or ("archive" if to_stage == config.archive else "promote"),
             actor=actor, time=time, version=version, from_stage=from_stage,
             to_stage=to_stage, reason=reason, extra=extra)
    return True


def _set_stage(b: StateBuilder, version: int, stage: str) -> None:
    entry = b.entry(version)
    old = entry.stage
    b.set_entry(version, entry.evolve(stage=stage))
    current = b.stages.get(stage)
    if current is None or current.version < version:
        b.stages[stage] = b.head_for(version)
    if old in b.stages and b.stages[old].version == version:
        b.refresh_stage_head(old)


def previous_holder(b: StateBuilder, stage: str, current: int) -> int | None:
    """Find the version that held ``stage`` before ``current``, from the history.

    Args:
        b: The model's working state (its history is walked from the base commit).
        stage: The stage.
        current: The version holding it now.

    Returns:
        The version number, or None if no other version ever entered the stage.
    """
    oid = b.base_oid
    while oid is not None:
        commit = b.reg.load_commit(oid)
        e = commit.event
        if e.to_stage == stage and e.version is not None and e.version != current:
            return e.version
        oid = commit.parent
    return None


def last_holder(b: StateBuilder, stage: str) -> tuple[int, str, str] | None:
    """Find the version that left ``stage`` last, from the history.

    For an exclusive stage that is empty now (its holder was archived), that version is
    the one that held it last.

    Args:
        b: The model's working state (its history is walked from the base commit).
        stage: The stage.

    Returns:
        The version, the action that moved it out and when, or None if none ever left.
    """
    oid = b.base_oid
    while oid is not None:
        commit = b.reg.load_commit(oid)
        e = commit.event
        if e.from_stage == stage and e.version is not None and e.to_stage != stage:
            return e.version, e.action, e.time
        oid = commit.parent
    return None


def add_approval(b: StateBuilder, config: StoreConfig, version: int, stage: str, *,
                 actor: str, time: str, comment: str | None) -> bool:
    """Record ``actor``'s approval of ``version`` for ``stage``.

    Returns:
        False if ``actor`` had already approved it for that stage.

    Raises:
        NotFound: No such stage or version.
        PolicyDenied: Under four_eyes, the registrant may not approve.
    """
    if stage not in config.stages:
        raise NotFound(f"no stage {stage!r} (stages: {', '.join(config.stages)})")
    entry = b.entry(version)
    key = actor_key(actor)
    if config.policy(stage).four_eyes and key == actor_key(entry.created_by):
        message = (f"{actor} registered {b.name}@{version} and cannot approve it for {stage}: "
                   "four_eyes requires a second person")
        raise PolicyDenied(message, (Denial("four_eyes", message),))
    if any(actor_key(a.actor) == key and a.stage == stage for a in entry.approvals):
        return False
    approval = Approval(actor=actor, time=time, stage=stage, comment=comment or None)
    b.set_entry(version, entry.evolve(approvals=(*entry.approvals, approval)))
    b.record(action="approve", actor=actor, time=time, version=version, reason=comment,
             extra={"stage": stage})
    return True


def record_check(b: StateBuilder, version: int, name: str, *, passed: bool, value: Any,
                 details: str | None, actor: str, time: str) -> None:
    """Record a check result (the latest result per check name counts)."""
    if not name or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z", name):
        raise UsageError(f"bad check name {name!r}: use letters, digits, '.', '_' and '-'")
    entry = b.entry(version)
    record = CheckRecord(passed=passed, actor=actor, time=time, value=value,
                         details=details or None)
    b.set_entry(version, entry.evolve(checks={**entry.checks, name: record}))
    b.record(action="check", actor=actor, time=time, version=version, reason=details,
             extra={"check": name, "passed": passed, "value": value})


def edit_metadata(b: StateBuilder, version: int, base: tuple[str | None, dict[str, str]], *,
                  description: str | None, set_tags: dict[str, str], remove_tags: list[str],
                  actor: str, time: str) -> bool:
    """Change a version's description and tags (the manifest keeps the originals).

    Args:
        b: The model's working state.
        version: The version.
        base: The manifest's description and tags (used until the first edit).
        description: The new description, or None to keep it.
        set_tags: Tags to add or change.
        remove_tags: Tags to remove.
        actor: Who edits.
        time: When.

    Returns:
        False if nothing would change.

    Raises:
        NotFound: A tag to remove does not exist.
    """
    entry = b.entry(version)
    old_description = entry.meta.get("description", base[0])
    old_tags = dict(entry.meta.get("tags", base[1]))
    tags = dict(old_tags)
    for key in remove_tags:
        if key not in tags:
            raise NotFound(f"{b.name}@{version} has no tag {key!r}")
        del tags[key]
    tags.update(set_tags)
    new_description = old_description if description is None else description
    if tags == old_tags and new_description == old_description:
        return False
    meta = {"description": new_description, "tags": dict(sorted(tags.items()))}
    b.set_entry(version, entry.evolve(meta=meta))
    changes: dict[str, Any] = {}
    if new_description != old_description:
        changes["description"] = {"from": old_description, "to": new_description}
    if tags != old_tags:
        changes["tags"] = {"from": old_tags, "to": meta["tags"]}
    b.record(action="edit", actor=actor, time=time, version=version, extra=changes)
    return True


def check_alias_name(config: StoreConfig, alias: str) -> str:
    """Refuse an alias that could be mistaken for a stage, a version or ``latest``."""
    if not _ALIAS.match(alias) or _VERSIONISH.match(alias) or alias == "latest":
        raise UsageError(f"bad alias {alias!r}: start with a letter; letters, digits, '.', '_', "
                         "'-'; not 'latest' or a version number")
    if alias.lower() in {s.lower() for s in config.stages}:
        raise UsageError(f"alias {alias!r} would clash with the stage of that name")
    return alias


def set_alias(b: StateBuilder, config: StoreConfig, alias: str, version: int, *, actor: str,
              time: str) -> bool:
    """Point ``alias`` at ``version``; returns False if it already pointed there."""
    check_alias_name(config, alias)
    b.entry(version)
    old = b.aliases.get(alias)
    if old is not None and old.version == version:
        return False
    b.aliases[alias] = b.head_for(version)
    b.record(action="alias", actor=actor, time=time, version=version,
             extra={"alias": alias, "op": "set",
                    "previous": None if old is None else old.version})
    return True


def remove_alias(b: StateBuilder, alias: str, *, actor: str, time: str) -> int:
    """Remove ``alias``; returns the version it pointed at."""
    old = b.aliases.pop(alias, None)
    if old is None:
        raise NotFound(f"{b.name} has no alias {alias!r}")
    b.record(action="alias", actor=actor, time=time, version=old.version,
             extra={"alias": alias, "op": "remove"})
    return old.version
