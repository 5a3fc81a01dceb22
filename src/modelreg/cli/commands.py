"""The store's commands: each parses its arguments, makes one library call, and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelreg import api
from modelreg.cli import render
from modelreg.cli.application import app, command, state
from modelreg.cli.options import (
    REFERENCE_FORMS,
    JsonOpt,
    RefArg,
    metrics_from,
    params_from,
    parse_duration,
    tags_from,
)
from modelreg.errors import EXIT_CONFLICT, EXIT_INTEGRITY, EXIT_OK

__all__ = ["diff", "fsck", "gc", "history", "init", "list_", "pull", "register", "show",
           "versions"]


@app.command()
@command
def init(
    directory: Annotated[
        str | None,
        typer.Argument(help="Project directory to hold .modelreg (default: -R, else '.'), or "
                       "s3://BUCKET/PREFIX.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a store (DIR/.modelreg, or in S3); safe to run again on an existing one."""
    reg, created = api.init(api.init_directory(directory, state.registry))
    path = reg.location
    if as_json:
        render.emit_json({"path": str(path), "created": created})
    else:
        render.render_init(path, created)


@app.command()
@command
def register(
    name: Annotated[str, typer.Argument(help="Model name (letters, digits, '.', '_', '-').",
                                        show_default=False)],
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to register.",
                                                show_default=False)],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p",
        metavar="K=V", help="Hyperparameter K=V (repeatable; numbers and booleans typed).")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m",
        metavar="K=V", help="Metric K=V (repeatable; a number or boolean).")] = None,
    params_file: Annotated[Path | None, typer.Option(
        "--params-file",
        metavar="FILE", help="JSON or TOML file of hyperparameters (--param overrides).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", metavar="K=V",
                                                  help="Tag K=V (repeatable).")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d",
                                                    help="Free-text description.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Training run id.")] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Training run name.")
                        ] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data",
        metavar="PATH",
        help="Training data file or directory, recorded by digest (repeatable).")
    ] = None,
    data_version: Annotated[str | None, typer.Option("--data-version",
                                                     help="Data version string.")] = None,
    derived_from: Annotated[str | None, typer.Option(
        "--derived-from", metavar="REF", help="The version this one was made from: "
        f"{REFERENCE_FORMS}.")] = None,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not record git lineage.")
                      ] = False,
    stage: Annotated[str | None, typer.Option(
        "--stage", help="Also move the new version to this stage (the policy applies).")
    ] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why; recorded with the --stage transition.")] = None,
    signature: Annotated[Path | None, typer.Option(
        "--signature",
        metavar="FILE", help="Signature file (JSON or TOML, compact or full form).")] = None,
    infer_signature: Annotated[bool, typer.Option(
        "--infer-signature", help="Infer the signature from --sample (ONNX files always "
        "get theirs inferred).")] = False,
    sample: Annotated[Path | None, typer.Option(
        "--sample",
        metavar="FILE", help="An input example (CSV, JSON, JSONL, npy, npz), stored with the "
        "version.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Make a new version even if an identical one exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register files as the next version of NAME, with lineage."""
    params = params_from(param, params_file)
    result = api.register(
        name,
        paths,
        registry=state.registry,
        params=params,
        metrics=metrics_from(metric),
        tags=tags_from(tag),
        description=description,
        run_id=run_id,
        run_name=run_name,
        data=data or [],
        data_version=data_version,
        git=not no_git,
        derived_from=derived_from,
        force=force,
        stage=stage,
        reason=reason,
        signature=signature,
        infer_signature=infer_signature,
        sample=sample,
        progress=render.progress_for_stderr(f"register {name}"),
    )
    if as_json:
        render.emit_json(result)
    else:
        render.render_register(result)
    render.warn_failed_hooks(result.hooks)


@app.command("list")
@command
def list_(as_json: JsonOpt = False) -> None:
    """List the models in the store."""
    models = api.list_models(registry=state.registry)
    if as_json:
        render.emit_json({"models": models})
    else:
        render.render_models(models)


@app.command()
@command
def versions(
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """List the versions of a model, oldest first."""
    rows = api.versions(name, registry=state.registry)
    if as_json:
        render.emit_json({"name": rows[0].name if rows else name, "versions": rows})
    else:
        render.render_versions(rows)


@app.command()
@command
def show(ref: RefArg, as_json: JsonOpt = False) -> None:
    """Show one version: files, lineage, stage."""
    info = api.show(ref, registry=state.registry)
    if as_json:
        render.emit_json(info)
    else:
        render.render_version(info)


@app.command()
@command
def diff(
    a: Annotated[str, typer.Argument(help=f"The first version: {REFERENCE_FORMS}.",
                                     metavar="A", show_default=False)],
    b: Annotated[str, typer.Argument(help="The second version, in the same forms.",
                                     metavar="B", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: params, metrics, lineage and files."""
    result = api.diff(a, b, registry=state.registry)
    if as_json:
        render.emit_json(result)
    else:
        render.render_diff(result)


@app.command()
@command
def pull(
    ref: RefArg,
    dest: Annotated[Path, typer.Argument(help="Directory to write the files into.",
                                         show_default=False)],
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite existing files whose content differs.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a version's files into DEST, verifying every digest."""
    result = api.pull(ref, dest, registry=state.registry, force=force,
                      progress=render.progress_for_stderr(f"pull {ref}"))
    if as_json:
        render.emit_json(result)
    else:
        render.render_pull(result)


@app.command()
@command
def history(
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", show_default=False,
                     help="Show only the newest N events (N >= 1)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the recorded events of a model, newest first (a hash chain fsck verifies)."""
    model, events = api.history(name, registry=state.registry, limit=limit)
    if as_json:
        render.emit_json({"name": model, "events": events})
    else:
        render.render_history(model, events)


@app.command()
@command
def fsck(as_json: JsonOpt = False) -> int:
    """Verify every object, ref, history and manifest; exit 6 on any problem."""
    report = api.fsck(registry=state.registry)
    if as_json:
        render.emit_json(report)
    else:
        render.render_fsck(report)
    return EXIT_OK if report.ok else EXIT_INTEGRITY


@app.command()
@command
def migrate(as_json: JsonOpt = False) -> None:
    """Turn a format-1 store into format 2, in place (safe to run again if interrupted)."""
    report = api.migrate(registry=state.registry)
    if as_json:
        render.emit_json(report)
    elif report.status == "current":
        render.message(f"{report.store} is already format 2; nothing to do")
    elif report.status == "finished":
        render.message(f"finished the interrupted migration of {report.store}")
    else:
        render.message(f"migrated {report.store} to format 2: {report.models} model(s), "
                       f"{report.versions} version(s), {report.events} event(s), "
                       f"{report.objects} object(s) copied")


@app.command()
@command
def copy(
    source: Annotated[str, typer.Argument(help="The registry to copy: a directory or "
                                          "s3://BUCKET/PREFIX.", show_default=False)],
    dest: Annotated[str, typer.Argument(help="Where to: a directory or s3://BUCKET/PREFIX "
                                        "(created if missing).", show_default=False)],
    as_json: JsonOpt = False,
) -> int:
    """Copy a whole registry between backends; every object verified, refs last; rerunnable."""
    report = api.copy(source, dest)
    if as_json:
        render.emit_json(report)
    else:
        render.message(f"copied {report.objects} object(s) ({report.present} already there) "
                       f"and {len(report.models)} model(s) ({len(report.same)} already the "
                       f"same) from {report.source} to {report.dest}")
        for model in report.conflicts:
            render.message(f"  not copied: {model}: {report.dest} holds it in another "
                           "state (nothing was overwritten)")
    return EXIT_CONFLICT if report.conflicts else EXIT_OK


@app.command()
@command
def search(
    filter_text: Annotated[str, typer.Argument(
        metavar="FILTER", help="Conditions joined by 'and', e.g. \"metrics.mae < 40 and "
        "stage = 'staging'\" (docs/cli.md lists the keys).", show_default=False)] = "",
    model: Annotated[str | None, typer.Option("--model", help="Only this model's versions.")
                     ] = None,
    order_by: Annotated[str | None, typer.Option("--order-by", help="KEY [ASC|DESC], e.g. "
                                                 "'metrics.mae ASC'.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most N versions.",
                                              min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find versions across models by metrics, params, tags, stage, creator or date."""
    hits = api.search(filter_text, registry=state.registry, model=model, order_by=order_by,
                      limit=limit)
    if as_json:
        render.emit_json([h.to_dict() for h in hits])
    else:
        render.render_search(hits)


@app.command()
@command
def gc(
    grace: Annotated[str, typer.Option(
        "--grace", help="Spare unreferenced objects and temp files younger than this.")] = "1h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")
                       ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove temp files, stale locks and unreferenced objects older than the grace period."""
    report = api.gc(registry=state.registry, grace=parse_duration(grace), dry_run=dry_run)
    if as_json:
        render.emit_json(report)
    else:
        render.render_gc(report)
