"""Packaging subcommands: export (to ONNX or a bundle), import, predict, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelreg import api
from modelreg.cli import render
from modelreg.cli.application import app, command, state
from modelreg.cli.options import JsonOpt, RefArg, read_payload
from modelreg.errors import UsageError

__all__ = ["bench", "export", "import_", "predict"]


@app.command()
@command
def export(
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="onnx (convert, prove parity, register), "
                                    "bundle (a self-describing zip) or mlflow (an MLflow "
                                    "model directory of an ONNX version).")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The bundle file, or "
                                                "the MLflow model directory (or .zip), to "
                                                "write.")] = None,
    as_name: Annotated[str | None, typer.Option("--as", help="Register the ONNX version under "
                                                "this model name.")] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="Target ONNX opset.")] = None,
    sample: Annotated[Path | None, typer.Option("--sample", help="Sample inputs for the "
                                                "parity check (CSV, JSON, npy, npz).")] = None,
    rtol: Annotated[float | None, typer.Option("--rtol", help="Relative tolerance "
                                               "(default 1e-3).")] = None,
    atol: Annotated[float | None, typer.Option("--atol", help="Absolute tolerance "
                                               "(default 1e-4).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--fixed-batch",
                                                help="Make the batch dimension dynamic.")
                             ] = True,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Allow loading a pickle-based model (this runs code from the "
        "file; only for models you trust).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing bundle or "
                                        "MLflow model.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a version: to ONNX with a parity proof (a new derived version), or a bundle."""
    onnx_only = {"--as": as_name, "--opset": opset, "--sample": sample, "--rtol": rtol,
                 "--atol": atol, "--allow-pickle": allow_pickle or None}
    given = [flag for flag, value in onnx_only.items() if value is not None]
    if to in ("bundle", "mlflow") and given:
        verb = "applies" if len(given) == 1 else "apply"
        what = "a bundle" if to == "bundle" else "MLflow"
        raise UsageError(f"{', '.join(given)} {verb} to --to onnx only, not to {what}")
    if to == "bundle":
        if output is None:
            raise UsageError("--to bundle needs -o FILE.zip")
        bundle = api.export_bundle(ref, output, registry=state.registry, force=force)
        if as_json:
            render.emit_json(bundle)
        else:
            render.render_bundle_written(output)
        return
    if to == "mlflow":
        if output is None:
            raise UsageError("--to mlflow needs -o DIR (or -o FILE.zip)")
        written = api.export_mlflow(ref, output, registry=state.registry, force=force)
        if as_json:
            render.emit_json(written)
        else:
            render.message(f"wrote {written.ref} as an MLflow model to {output} "
                           f"({len(written.files)} files)")
        return
    if to != "onnx":
        raise UsageError(f"unknown --to {to!r}: use onnx, bundle or mlflow")
    result = api.export_onnx(ref, registry=state.registry, as_name=as_name, opset=opset,
                             sample=sample, rtol=rtol, atol=atol, dynamic_batch=dynamic_batch,
                             allow_pickle=True if allow_pickle else None)
    if as_json:
        render.emit_json(result.to_dict())
    else:
        render.render_export(result)


@app.command("import")
@command
def import_(
    file: Annotated[Path | None, typer.Argument(help="A bundle made by modelreg export --to "
                                                "bundle, or an MLflow model directory.",
                                                show_default=False)] = None,
    from_mlflow: Annotated[str | None, typer.Option(
        "--from-mlflow", help="Bring every model and version of this MLflow registry "
        "(a tracking URI: sqlite:///mlflow.db, a file store, a server).")] = None,
    as_name: Annotated[str | None, typer.Option("--as", help="Register under this name "
                                                "(an MLflow model: default its directory's "
                                                "name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a bundle, or an MLflow model directory, as a new version.

    A bundle's digests are verified and entries that would escape are refused; an MLflow
    model brings its files, signature, run id, flavors and input example.
    """
    if from_mlflow is not None:
        if file is not None or as_name is not None:
            raise UsageError("--from-mlflow takes no FILE and no --as: it brings every model")
        moved = api.import_from_mlflow(from_mlflow, registry=state.registry)
        if as_json:
            render.emit_json(moved)
        else:
            render.render_mlflow_migration(moved)
        return
    if file is None:
        raise UsageError("give a bundle, an MLflow model directory, or --from-mlflow URI")
    if file.is_dir():
        result = api.import_mlflow(file, registry=state.registry, name=as_name)
    else:
        result = api.import_bundle(file, registry=state.registry, name=as_name)
    if as_json:
        render.emit_json(result)
    else:
        render.render_register(result)


@app.command()
@command
def predict(
    ref: RefArg,
    path: Annotated[str, typer.Argument(help="The payload file, or - for stdin.")] = "-",
    fmt: Annotated[str | None, typer.Option("--format", help="Payload format when the name "
                                            "does not tell.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the outputs "
                                                "to this file instead of stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result (ref, rows "
                                          "and outputs), not only the outputs.")] = False,
) -> None:
    """Validate a payload against the signature, then run the ONNX model on it."""
    data, name = read_payload(path)
    result = api.predict(ref, data, registry=state.registry, filename=name, fmt=fmt)
    body = result.to_dict() if as_json else {"outputs": result.outputs}
    if output is not None:
        api.write_file(output, render.compact_json(body))
        render.message(f"wrote outputs of {result.ref} to {output}")
    else:
        render.emit_json(body)


@app.command()
@command
def serve(
    ref: RefArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless "
                                      "--allow-remote).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free "
                                      "one).", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Threads running the model at "
                                         "once (0: one per CPU).", min=0)] = 0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between two looks at the "
                                        "stage or alias.")] = 0.5,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body in "
                                          "bytes (larger: 413).", min=1)] = 16 * 2**20,
    drain: Annotated[float, typer.Option("--drain", help="Seconds SIGTERM waits for "
                                         "requests in flight.", min=0)] = 30.0,
    access_log: Annotated[str | None, typer.Option("--access-log", help="Append a JSON "
                                                   "line per request to FILE (- for "
                                                   "stderr).")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other "
                                               "machines can reach.")] = False,
) -> None:
    """Serve a version over HTTP, following its stage or alias without dropping a request.

    The Open Inference Protocol (KServe V2, Triton) and MLflow's /invocations.
    """
    api.serve(ref, registry=state.registry, host=host, port=port, workers=workers, poll=poll,
              max_body=max_body, drain=drain, access_log=access_log,
              allow_remote=allow_remote,
              started=lambda url: render.message(f"serving {ref} at {url}"))


@app.command()
@command
def ui(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless "
                                      "--allow-remote).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free "
                                      "one).", min=0, max=65535)] = 8080,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other "
                                               "machines can reach (needs --token).")] = False,
    token: Annotated[str | None, typer.Option("--token", help="A secret every browser must "
                                              "present once (?token=…); needed with "
                                              "--allow-remote.")] = None,
) -> None:
    """Serve a web UI over the store: models, versions, lineage, and the lifecycle buttons."""
    api.ui(registry=state.registry, host=host, port=port, allow_remote=allow_remote,
           token=token, started=lambda url: render.message(f"modelreg ui at {url}"))


@app.command()
@command
def bench(
    ref: RefArg,
    batch_size: Annotated[list[int] | None, typer.Option(
        "--batch-size", "-b", help="Batch size to measure (repeatable; default 1).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds per batch size.")
                        ] = 2.0,
    record: Annotated[str | None, typer.Option("--record", help="Record the verdict as this "
                                               "check on the version (e.g. latency).")] = None,
    max_p95_ms: Annotated[float | None, typer.Option("--max-p95-ms", help="The p95 latency "
                                                     "limit for --record.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure ONNX Runtime latency (p50/p95/p99) and throughput on generated inputs."""
    result = api.bench(ref, registry=state.registry, batch_sizes=batch_size or [1],
                       duration=duration, record=record, max_p95_ms=max_p95_ms)
    if as_json:
        render.emit_json(result)
    else:
        render.render_bench(result, record, max_p95_ms)
