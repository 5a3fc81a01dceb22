"""The subcommands: each parses its arguments, makes one library call, and renders."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelreg import api
from modelreg.cli import render
from modelreg.cli.application import app, command, state
from modelreg.errors import EXIT_INTEGRITY, NotFound, UsageError

__all__ = ["JsonOpt", "RefArg", "diff", "fsck", "gc", "history", "init", "list_", "pull",
           "read_payload",
           "register", "show", "versions"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]
RefArg = Annotated[str, typer.Argument(help="NAME, NAME@N, NAME@vN, NAME@latest or NAME@STAGE.",
                                       show_default=False)]


@app.command()
@command
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Project directory to hold .modelreg (default: -R, else '.').",
                       show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a store (DIR/.modelreg); safe to run again on an existing one."""
    reg, created = api.init(init_directory(directory, state.registry))
    if as_json:
        render.emit_json({"path": str(reg.layout.root), "created": created})
    else:
        verb = "Created" if created else "Found existing"
        print(f"{verb} modelreg store in {reg.layout.root}")


def init_directory(directory: Path | None, registry: str | None) -> Path:
    """The project directory ``init`` creates its store in.

    ``-R PATH`` names the store as every other command takes it (a project directory or its
    ``.modelreg``); a DIRECTORY argument naming another place is a usage error rather than
    a silent choice between the two.
    """
    from modelreg.storage.layout import project_dir

    if registry is None:
        return Path(".") if directory is None else directory
    wanted = project_dir(Path(registry))
    if directory is not None and project_dir(directory).resolve() != wanted.resolve():
        raise UsageError(
            f"init got two places for the store: -R {registry} and DIRECTORY {directory}; "
            "give one of them"
        )
    return wanted


def tags_from(items: list[str]) -> dict[str, str]:
    """Parse repeated ``--tag K=V`` options (values stay text)."""
    from modelreg.registry.lineage import parse_assignments

    parse_assignments(items, "--tag")  # the same key rules as --param; values stay text
    return {k.strip(): v for k, _, v in (i.partition("=") for i in items)}


@app.command()
@command
def register(
    name: Annotated[str, typer.Argument(help="Model name (letters, digits, '.', '_', '-').",
                                        show_default=False)],
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to register.",
                                                show_default=False)],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Hyperparameter K=V (repeatable; numbers and booleans typed).")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="Metric K=V (repeatable; a number or boolean).")] = None,
    params_file: Annotated[Path | None, typer.Option(
        "--params-file", help="JSON or TOML file of hyperparameters (--param overrides).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag K=V (repeatable).")
                   ] = None,
    description: Annotated[str | None, typer.Option("--description", "-d",
                                                    help="Free-text description.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Training run id.")] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Training run name.")
                        ] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Training data file or directory, recorded by digest (repeatable).")
    ] = None,
    data_version: Annotated[str | None, typer.Option("--data-version",
                                                     help="Data version string.")] = None,
    derived_from: Annotated[str | None, typer.Option(
        "--derived-from", help="Reference of the version this one was made from.")] = None,
    no_git: Annotated[bool, typer.Option("--no-git", help="Do not record git lineage.")
                      ] = False,
    stage: Annotated[str | None, typer.Option(
        "--stage", help="Also move the new version to this stage (the policy applies).")
    ] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why; recorded with the --stage transition.")] = None,
    signature: Annotated[Path | None, typer.Option(
        "--signature", help="Signature file (JSON or TOML, compact or full form).")] = None,
    infer_signature: Annotated[bool, typer.Option(
        "--infer-signature", help="Infer the signature from --sample (ONNX files always "
        "get theirs inferred).")] = False,
    sample: Annotated[Path | None, typer.Option(
        "--sample", help="An input example (CSV, JSON, JSONL, npy, npz), stored with the "
        "version.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Make a new version even if an identical one exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register files as the next version of NAME, with lineage."""
    from modelreg.registry.lineage import load_params_file, parse_assignments

    params = load_params_file(params_file) if params_file else {}
    params.update(parse_assignments(param or [], "--param"))
    result = api.register(
        name,
        paths,
        registry=state.registry,
        params=params,
        metrics=parse_assignments(metric or [], "--metric", numeric=True),
        tags=tags_from(tag or []),
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
    a: Annotated[str, typer.Argument(help="First version reference.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second version reference.", show_default=False)],
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
def fsck(as_json: JsonOpt = False) -> None:
    """Verify every object, ref, history and manifest; exit 6 on any problem."""
    report = api.fsck(registry=state.registry)
    if as_json:
        render.emit_json(report)
    else:
        render.render_fsck(report)
    if not report.ok:
        raise typer.Exit(EXIT_INTEGRITY)


_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)\Z")


def read_payload(path: str) -> tuple[bytes, str | None]:
    """Read a payload argument: a file, or ``-`` for stdin.

    Returns:
        The bytes and the file name (None for stdin), which tells the payload's format.

    Raises:
        NotFound: The file does not exist.
    """
    if path == "-":
        return sys.stdin.buffer.read(), None
    p = Path(path)
    try:
        return p.read_bytes(), p.name
    except FileNotFoundError as exc:
        raise NotFound(f"{p} does not exist") from exc


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``2d`` into seconds.

    Args:
        text: The duration.

    Returns:
        Seconds.

    Raises:
        UsageError: The text is not a duration.
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h, 2d")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


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
