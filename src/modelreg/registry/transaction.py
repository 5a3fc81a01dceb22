"""Transactions: a change to one model, planned on its state and committed in one step.

:func:`mutate` runs a *plan* (a function that records events on a
:class:`~modelreg.registry.builder.StateBuilder`) while the model's ref lock is held, stores
the objects the plan made, and moves the ref from the old head to the new one with one
compare-and-swap. Hooks from ``config.toml`` are asked before (``pre-``) and told after
(``post-``). Every verb that changes a model (register, promote, approve, check, edit,
alias, rollback) goes through here, so state and history always move together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelreg.errors import ConflictError, Denial, ModelregError, PolicyDenied
from modelreg.registry.builder import StateBuilder
from modelreg.registry.core import Registry
from modelreg.registry.events import event_record
from modelreg.registry.state import bucket_of, no_such_version, now_iso
from modelreg.storage.layout import check_owner
from modelreg.types import EventRecord, VersionInfo

if TYPE_CHECKING:
    from modelreg.registry.policy import StoreConfig
    from modelreg.results import HookResult

__all__ = ["Outcome", "mutate", "run_hooks", "version_after"]

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What a committed change produced: the plan's value, its events, hook results."""

    value: T
    builder: StateBuilder
    hooks: list[HookResult] = field(default_factory=list)

    def event_records(self) -> list[EventRecord]:
        """The committed events in the shape of ``modelreg events --json``."""
        return [event_record(self.builder.name, oid, c) for oid, c in self.builder.commits]


def mutate(reg: Registry, name: str, plan: Callable[[StateBuilder], T]) -> Outcome[T]:
    """Apply ``plan`` to model ``name`` and commit the events it records, atomically.

    ``plan`` runs on a working copy of the model's state while the model's lock is held,
    so it sees the latest state and no one else changes it meanwhile. When config.toml
    has ``pre-`` hooks, ``plan`` first runs without the lock, the hooks are asked about
    its events, and the plan must record the same transitions again under the lock (else
    the state moved while the hook ran: exit 4). Post hooks run after the commit.

    Args:
        reg: The registry.
        name: The model.
        plan: Records events on the builder and returns a value.

    Returns:
        The plan's value, the events committed and the hook results.

    Raises:
        ConflictError: The lock stayed held too long, or the state moved while a pre-
            hook ran.
        PolicyDenied: A pre- hook vetoed the change (or the plan refused it), or the store
            is owned by someone else and the user config does not list it as safe.
    """
    # Before config.toml's hooks or anything else: a store owned by someone else is
    # changed only when the user has said they trust it (docs/layout.md, ownership).
    check_owner(reg.layout)
    config = reg.config
    ref_name = reg.ref_name(name)
    planned: list[tuple[str, int | None, str | None, str | None]] | None = None
    if any(h.when == "pre" for h in config.hooks):
        found = reg.head(name)
        b = StateBuilder(reg, name, *(found or (None, None)))
        plan(b)
        if b.events:
            run_hooks(reg, config, b, "pre")
        planned = b.signature()
    with reg.refs.transaction(ref_name) as txn:
        head = None if txn.old is None else reg.load_commit(txn.old)
        b = StateBuilder(reg, name, txn.old, head)
        value = plan(b)
        if planned is not None and b.signature() != planned:
            raise ConflictError(
                f"the state of {b.name} changed while a pre- hook ran; nothing was "
                "changed, run the command again"
            )
        tip = b.flush()
        if tip is not None:
            txn.commit(tip)
    hooks = run_hooks(reg, config, b, "post") if b.events else []
    return Outcome(value, b, hooks)


def version_after(reg: Registry, outcome: Outcome[Any], version: int) -> VersionInfo:
    """Describe ``version`` as a committed change left it.

    The change's last commit is the state it committed, and its builder still holds the
    index buckets and manifests it wrote, so nothing is read again (later hook-delivery
    events do not change a version).
    """
    b = outcome.builder
    if not b.commits:
        commit = reg.require_head(b.name)
        return reg.describe(commit, version, reg.entry(commit, version).manifest)
    commit = b.commits[-1][1]
    bucket = commit.index.get(bucket_of(version))
    entry = b.load_bucket(bucket).get(version) if bucket else None
    if entry is None:
        raise no_such_version(commit.model, version, commit.latest.version)
    return reg.describe(commit, version, entry.manifest,
                        manifest=b.load_manifest(entry.manifest), entry=entry)


def run_hooks(reg: Registry, config: StoreConfig, b: StateBuilder,
              when: str) -> list[HookResult]:
    """Deliver the builder's events to the matching hooks.

    A failing ``pre`` hook raises ``PolicyDenied`` (the change is vetoed). ``post`` results
    are returned; the outcome of each URL delivery is also recorded in the model's history
    as a ``hook`` event.
    """
    if not config.hooks:
        return []
    check_owner(reg.layout)  # hooks of a store owned by someone else would run as the user
    from modelreg.registry.hooks import run_hook  # loaded only by a store that has hooks

    results: list[HookResult] = []
    url_results: list[tuple[EventRecord, HookResult]] = []
    for oid, commit in b.commits:
        record = event_record(b.name, oid, commit)
        stage = commit.event.to_stage or commit.event.extra.get("stage")
        for hook in config.hooks:
            if hook.when != when or not hook.matches(commit.event.action, b.name, stage):
                continue
            result = run_hook(hook, record.to_dict(), reg.layout.root)
            if when == "pre" and not result.ok:
                message = (f"pre- hook {hook.target} vetoed {commit.event.action} of "
                           f"{b.name}@{commit.event.version}: {result.detail}")
                raise PolicyDenied(message, (Denial("hook", message),))
            results.append(result)
            if hook.url is not None:
                url_results.append((record, result))
    if when == "post" and url_results:
        _record_deliveries(reg, b.name, url_results)
    return results


def _record_deliveries(reg: Registry, name: str,
                       deliveries: list[tuple[EventRecord, HookResult]]) -> None:
    def plan(b: StateBuilder) -> None:
        for record, result in deliveries:
            b.record(action="hook", actor="modelreg", time=now_iso(), version=record.version,
                     reason=result.detail,
                     extra={"event": record.id, "url": result.target, "ok": result.ok,
                            "status": result.status, "attempts": result.attempts})

    # The transition itself is committed; failing to log its delivery must not undo it.
    with contextlib.suppress(ModelregError):
        mutate(reg, name, plan)
