"""Signature subcommands: signature show/infer/diff, validate, contract check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelreg import api
from modelreg.cli import render
from modelreg.cli.application import app, command, state
from modelreg.cli.options import JsonOpt, RefArg, open_payload
from modelreg.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_OK,
    UsageError,
)

if TYPE_CHECKING:
    from modelreg.api import ContractReport

__all__ = ["contract_app", "signature_app", "validate"]

signature_app = typer.Typer(help="Show, infer and compare model signatures.",
                            no_args_is_help=True)
app.add_typer(signature_app, name="signature")


@signature_app.command("show")
@command
def signature_show(
    ref: RefArg,
    fmt: Annotated[str, typer.Option("--format", help="json (the stored form) or jsonschema "
                                     "(draft 2020-12).")] = "json",
) -> None:
    """Print the signature of a version."""
    sig = api.signature(ref, registry=state.registry)
    if fmt == "json":
        render.emit_json(sig.to_dict())
    elif fmt == "jsonschema":
        render.emit_json(api.signature_jsonschema(sig))
    else:
        raise UsageError(f"unknown --format {fmt!r}: use json or jsonschema")


@signature_app.command("infer")
@command
def signature_infer(
    path: Annotated[Path, typer.Argument(help="An ONNX model, or sample data (CSV, JSON, "
                                               "JSONL).", show_default=False)],
    fmt: Annotated[str | None, typer.Option("--format", help="The sample's format when its "
                                            "name does not tell (csv, json, jsonl).")] = None,
) -> None:
    """Infer a signature and print it as JSON (feed it to register --signature)."""
    render.emit_json(api.infer_signature(path, fmt=fmt).to_dict())


@signature_app.command("diff")
@command
def signature_diff(
    a: Annotated[str, typer.Argument(help="The version callers use now.", show_default=False)],
    b: Annotated[str, typer.Argument(help="The candidate version.", show_default=False)],
    as_json: JsonOpt = False,
) -> int:
    """Classify signature changes from A to B as breaking or compatible (exit 1: breaking)."""
    changes = api.signature_diff(a, b, registry=state.registry)
    breaking = any(c.breaking for c in changes)
    if as_json:
        render.emit_json({"a": a, "b": b, "breaking": breaking,
                          "changes": [c.to_dict() for c in changes]})
    else:
        render.render_signature_changes(a, b, changes)
    return EXIT_CHECK_FAILED if breaking else EXIT_OK


@app.command()
@command
def validate(
    ref: RefArg,
    path: Annotated[str, typer.Argument(help="The payload file, or - for stdin.")] = "-",
    outputs: Annotated[bool, typer.Option("--outputs", help="Check against the outputs "
                                          "instead of the inputs.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="Payload format when the file "
                                            "name does not tell (json, jsonl, csv, npy, npz, "
                                            "...).")] = None,
    allow_extra: Annotated[bool, typer.Option("--allow-extra", help="Accept columns the "
                                              "signature does not name.")] = False,
    max_errors: Annotated[int, typer.Option("--max-errors", help="Report at most this many "
                                            "problems.", min=1)] = 20,
    as_json: JsonOpt = False,
) -> int:
    """Check a payload against a version's signature: exit 0 if valid, 1 if not."""
    # The file is streamed, not read whole: a JSON Lines or CSV payload of any size is
    # checked in constant memory.
    with open_payload(path) as (fh, name):
        report = api.validate(ref, fh, registry=state.registry, filename=name, fmt=fmt,
                              outputs=outputs, allow_extra=allow_extra,
                              max_errors=max_errors)
    if as_json:
        render.emit_json(report.to_dict())
    else:
        render.render_validation(report)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


contract_app = typer.Typer(help="Check a repository's pinned model references and example "
                           "payloads (for pre-commit hooks and CI).", no_args_is_help=True)
app.add_typer(contract_app, name="contract")


@contract_app.command("check")
@command
def contract_check(
    file: Annotated[Path, typer.Option("--file", "-f", help="The contract file.")] = Path(
        "modelreg-contract.toml"),
    as_json: JsonOpt = False,
) -> int:
    """Verify that each pinned reference resolves and each example payload validates."""
    report = api.check_contract(file, registry=state.registry)
    if as_json:
        render.emit_json(report.to_dict())
    else:
        render.render_contract(report)
    return contract_status(report)


_SEVERITY = (EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_CHECK_FAILED)


def contract_status(report: ContractReport) -> int:
    """The exit status of a contract check: that of the worst failure.

    A corrupt store (6) comes first, then a reference or file that is not found (3), then an
    example that does not behave as expected (1); any other failure (a payload that does
    not parse: 2) by its own code. 0 when every result is ok.
    """
    codes = {e.exit_code for e in report.errors}
    if not codes:
        return EXIT_OK
    return next((c for c in _SEVERITY if c in codes), max(codes))


