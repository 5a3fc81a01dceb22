"""Lifecycle subcommands: promote, archive, approve, check, rollback, alias, events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelreg import api
from modelreg.cli import render
from modelreg.cli.application import app, command, state
from modelreg.cli.options import (
    AliasArg,
    JsonOpt,
    ModelArg,
    ReasonOpt,
    RefArg,
    tags_from,
    value_from,
)
from modelreg.errors import UsageError

if TYPE_CHECKING:
    from modelreg.results import ChangeResult

__all__ = ["alias_app", "approve", "archive", "check", "edit", "events", "promote", "rollback"]


def _show(result: ChangeResult, as_json: bool, done: str, unchanged: str) -> None:
    if as_json:
        render.emit_json(result)
    else:
        render.render_change(result, done if result.changed else unchanged)
    render.warn_failed_hooks(result.hooks)


@app.command()
@command
def promote(
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="The stage to move the version into.",
                                    show_default=False)],
    reason: ReasonOpt = None,
    allow_breaking: Annotated[bool, typer.Option(
        "--allow-breaking", help="Promote even if its signature breaks the current holder's "
        "(recorded).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move a version into a stage, under the store's policy (exit 5 if denied)."""
    result = api.promote(ref, to, registry=state.registry, reason=reason,
                         allow_breaking=allow_breaking)
    v = result.version
    _show(result, as_json, f"{v.ref} is now in {v.stage}", f"{v.ref} already is in {v.stage}")


@app.command()
@command
def archive(ref: RefArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Move a version into the archive stage."""
    result = api.archive(ref, registry=state.registry, reason=reason)
    v = result.version
    _show(result, as_json, f"{v.ref} is now in {v.stage}", f"{v.ref} already is in {v.stage}")


@app.command()
@command
def approve(
    ref: RefArg,
    stage: Annotated[str | None, typer.Option(
        "--stage", help="The stage the approval is for (default: the one requiring "
        "approvals, else production).")] = None,
    comment: Annotated[str | None, typer.Option("--comment", "-c", help="A note (recorded).")
                       ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a version for a stage (four_eyes: not by its registrant)."""
    result = api.approve(ref, registry=state.registry, stage=stage, comment=comment)
    v = result.version
    _show(result, as_json, f"approved {v.ref}", f"{v.ref} was already approved by you")


@app.command()
@command
def check(
    ref: RefArg,
    name: Annotated[str, typer.Argument(help="Check name, e.g. latency.", show_default=False)],
    passed: Annotated[bool, typer.Option(
        "--pass", help="The check passed (give --pass or --fail).")] = False,
    failed: Annotated[bool, typer.Option(
        "--fail", help="The check failed.")] = False,
    value: Annotated[str | None, typer.Option(
        "--value", help="A measured value (numbers typed), e.g. 12.5.")] = None,
    details: Annotated[str | None, typer.Option("--details", help="Free text (recorded).")
                       ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a CI check result on a version (the latest result per name counts)."""
    # Two flags, not one --pass/--fail switch: with a switch the last one given wins, so
    # `--pass --fail` would record a verdict the caller contradicted.
    if passed == failed:
        raise UsageError("say --pass or --fail, not both" if passed else "say --pass or --fail")
    result = api.check(ref, name, passed=passed, registry=state.registry,
                       value=value_from(value), details=details)
    verdict = "passed" if passed else "failed"
    _show(result, as_json, f"recorded check {name} {verdict} on {result.version.ref}", "")


@app.command()
@command
def edit(
    ref: RefArg,
    description: Annotated[str | None, typer.Option(
        "--description", "-d", help="The new description.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Set tag K=V (repeatable).")
                   ] = None,
    untag: Annotated[list[str] | None, typer.Option("--untag", help="Remove tag K (repeatable).")
                     ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a version's description or tags (recorded; the manifest keeps the originals)."""
    if description is None and not tag and not untag:
        raise UsageError("say what to change: --description, --tag or --untag")
    result = api.edit(ref, registry=state.registry, description=description,
                      set_tags=tags_from(tag), remove_tags=untag or [])
    _show(result, as_json, f"edited {result.version.ref}", "nothing to change")


@app.command()
@command
def rollback(
    name: Annotated[str, typer.Argument(
        help="Model name (not NAME@N: the stage says which version comes back).",
        show_default=False)],
    stage: Annotated[str, typer.Option("--stage", help="The stage to roll back.")
                     ] = "production",
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put back the version that held a stage before the current one (or the archived one)."""
    result = api.rollback(name, registry=state.registry, stage=stage, reason=reason)
    v = result.version
    _show(result, as_json, f"{v.ref} is back in {v.stage}", "")


@app.command()
@command
def events(
    since: Annotated[str | None, typer.Option(
        "--since", help="Only events after this cursor (printed by the previous call).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print events across all models after a cursor, and the new cursor (for CI polling)."""
    found, cursor = api.events(since, registry=state.registry)
    if as_json:
        render.emit_json({"events": found, "cursor": cursor})
    else:
        render.render_events(found, cursor)


alias_app = typer.Typer(help="Free names (champion, canary) pointing at one version each.",
                        no_args_is_help=True)
app.add_typer(alias_app, name="alias")

@alias_app.command("set")
@command
def alias_set(
    name: ModelArg,
    alias: AliasArg,
    version: Annotated[int, typer.Argument(help="Version number.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS at version N of NAME (moving it if it pointed elsewhere)."""
    result = api.alias_set(name, alias, version, registry=state.registry)
    _show(result, as_json, f"{alias} -> {result.version.ref}",
          f"{alias} already points at {result.version.ref}")


@alias_app.command("rm")
@command
def alias_rm(name: ModelArg, alias: AliasArg, as_json: JsonOpt = False) -> None:
    """Remove ALIAS from NAME."""
    result = api.alias_remove(name, alias, registry=state.registry)
    _show(result, as_json, f"removed {alias} (was {result.version.ref})", "")


@alias_app.command("list")
@command
def alias_list(name: ModelArg, as_json: JsonOpt = False) -> None:
    """List the aliases of NAME."""
    model, aliases = api.alias_list(name, registry=state.registry)
    if as_json:
        render.emit_json({"name": model, "aliases": aliases})
    else:
        render.render_aliases(model, aliases)
