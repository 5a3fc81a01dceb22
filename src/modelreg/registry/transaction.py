"""Transactions: a change to one model, planned on its state and committed in one step.

:func:`mutate` reads the model's ref (its head commit, its state and the ref's version
token), runs a *plan* (a function that records events on a
:class:`~modelreg.registry.builder.StateBuilder`) on that state, stores the objects the
plan made, makes them durable, and gives the ref its new body with one compare-and-swap on
the token. A lost race changes nothing: the plan runs again on the new state (so the policy
is checked again), a bounded number of times. Hooks from ``config.toml`` are asked before
(``pre-``) and told after (``post-``). Every verb that changes a model (register, promote,
approve, check, edit, alias, rollback) goes through here, so state and history always move
together.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelreg.errors import ConflictError, Denial, ModelregError, PolicyDenied, UsageError
from modelreg.registry.builder import StateBuilder
from modelreg.registry.core import Current, Registry
from modelreg.registry.events import event_record
from modelreg.registry.state import no_such_version, now_iso
from modelreg.storage.backend import MAX_REF_BODY
from modelreg.types import EventRecord, VersionInfo

if TYPE_CHECKING:
    from modelreg.registry.policy import StoreConfig
    from modelreg.results import HookResult

__all__ = ["MAX_ATTEMPTS", "Outcome", "mutate", "run_hooks", "version_after"]

T = TypeVar("T")

MAX_ATTEMPTS = 50
"""How many times a change is planned and swapped before a lost race is a conflict."""
_DEFAULT_TIMEOUT = 30.0


def _timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("MODELREG_LOCK_TIMEOUT") or _DEFAULT_TIMEOUT))
    except ValueError:
        return _DEFAULT_TIMEOUT


@dataclass
class Outcome(Generic[T]):
    """What a committed change produced: the plan's value, its events, hook results."""

    value: T
    builder: StateBuilder
    hooks: list[HookResult] = field(default_factory=list)

    def event_records(self) -> list[EventRecord]:
        """The committed events in the shape of ``modelreg events --json``."""
        return [event_record(self.builder.name, oid, c) for oid, c in self.builder.commits]


_UNREAD: Any = object()


def mutate(reg: Registry, name: str, plan: Callable[[StateBuilder], T], *,
           start: Current | None = _UNREAD) -> Outcome[T]:
    """Apply ``plan`` to model ``name`` and commit the events it records, atomically.

    ``plan`` runs on a working copy of the model's current state; its objects are stored
    and made durable (``Objects.sync``), and the ref moves by compare-and-swap on the token
    read with the state. If another writer moved the ref meanwhile, nothing was changed:
    the plan runs again on the new state, up to :data:`MAX_ATTEMPTS` times or the lock
    timeout (``MODELREG_LOCK_TIMEOUT``), with a short random pause between. The backend's
    :meth:`~modelreg.storage.backend.Refs.locked` is held around the whole loop: on the
    file system it queues the writers of one store (so they rarely re-plan); elsewhere it
    does nothing. When config.toml has ``pre-`` hooks, ``plan`` first runs on its own, the
    hooks are asked about its events, and the committed plan must record the same
    transitions (else the state moved while the hook ran: exit 4). Post hooks run after
    the commit.

    Args:
        reg: The registry.
        name: The model.
        plan: Records events on the builder and returns a value.
        start: The model as the caller read it a moment ago (None: it did not exist), to
            plan the first attempt on without reading the ref again, where writers do not
            queue (``Refs.queues``: object storage, memory). Where they queue, the ref is
            read under the lock whatever is given.

    Returns:
        The plan's value, the events committed and the hook results.

    Raises:
        ConflictError: The lock stayed held too long, the race was lost every time, or the
            state moved while a pre- hook ran.
        PolicyDenied: A pre- hook vetoed the change (or the plan refused it), or the store
            is owned by someone else and the user config does not list it as safe.
    """
    # Before config.toml's hooks or anything else: a store owned by someone else is
    # changed only when the user has said they trust it (docs/layout.md, ownership).
    reg.check_owner()
    config = reg.config
    ref_name = reg.ref_name(name)
    planned: list[tuple[str, int | None, str | None, str | None]] | None = None
    if any(h.when == "pre" for h in config.hooks):
        b = StateBuilder(reg, name, reg.current(name))
        plan(b)
        if b.events:
            run_hooks(reg, config, b, "pre")
        planned = b.signature()
    deadline = time.monotonic() + _timeout()
    with reg.refs.locked(ref_name):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt == 1 and start is not _UNREAD and not reg.refs.queues:
                current = start
            else:
                current = reg.current(name)
            b = StateBuilder(reg, name, current)
            value = plan(b)
            if planned is not None and b.signature() != planned:
                raise ConflictError(
                    f"the state of {b.name} changed while a pre- hook ran; nothing was "
                    "changed, run the command again"
                )
            if b.flush() is None:
                break
            token = None if current is None else current.token
            body = b.ref_body()
            if len(body) > MAX_REF_BODY:
                raise UsageError(
                    f"the state of {b.name} would take {len(body):,} bytes, more than a ref "
                    f"holds ({MAX_REF_BODY:,}): the newest versions' checks, approvals or "
                    "edited metadata are too large; nothing was changed")
            if reg.refs.compare_and_swap(ref_name, token, body):
                b.committed()
                break
            if attempt == MAX_ATTEMPTS or time.monotonic() >= deadline:
                raise ConflictError(
                    f"{b.name} was changed by other writers each of the {attempt} times this "
                    "change was planned; nothing was changed, run the command again")
            time.sleep(random.uniform(0.001, min(0.2, 0.005 * attempt)))  # noqa: S311 - jitter
    hooks = run_hooks(reg, config, b, "post") if b.events else []
    return Outcome(value, b, hooks)


def version_after(reg: Registry, outcome: Outcome[Any], version: int) -> VersionInfo:
    """Describe ``version`` as a committed change left it.

    The builder still holds the state it committed, the leaves and the commits it wrote,
    so nothing is read again (later hook-delivery events do not change a version).
    """
    b = outcome.builder
    if not b.commits:
        state = reg.require_state(b.name)
        return reg.describe(state, version, reg.entry(state, version).manifest)
    made = b.state
    if made is None:
        raise no_such_version(b.name, version, 0)
    entry = reg.entry(made, version, b.load_leaf)
    state = made
    return reg.describe(state, version, entry.manifest,
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
    reg.check_owner()  # hooks of a store owned by someone else would run as the user
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
