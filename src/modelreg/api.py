"""The library's entry points: one function per operation, returning plain records.

Every function takes the registry as a path (or ``None`` to discover it as the CLI does) or
an opened :class:`~modelreg.registry.Registry`. Reads go to the ``Registry``; every change is
a verb of the registry layer (``registering``, ``operations``, ``pulling``, ``maintenance``)
called the same way, and the policy (the signature rule included) is enforced there, so a
caller of those verbs cannot skip it. Nothing here prints; the CLI renders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from modelreg.config import resolve_actor
from modelreg.errors import NotFound, UsageError
from modelreg.registry.core import Registry

# Everything else is imported inside the functions that need it, so that `modelreg show`
# and friends start fast (docs/performance.md).
if TYPE_CHECKING:
    from modelreg.packaging.bundle import BundleResult
    from modelreg.packaging.exporting import ExportResult
    from modelreg.packaging.mlflow_format import MlflowExport
    from modelreg.packaging.runtime import BenchResult, PredictResult
    from modelreg.registry.migrating import MigrateReport
    from modelreg.results import (
        ChangeResult,
        DiffResult,
        FsckReport,
        GcReport,
        ModelSummary,
        PullResult,
        RegisterResult,
        VersionSummary,
    )
    from modelreg.signatures.compat import Change
    from modelreg.signatures.model import Signature
    from modelreg.signatures.validate import ValidationReport
    from modelreg.types import EventRecord, Progress, VersionInfo

RegistryLike = Registry | str | os.PathLike[str] | None


def open_registry(registry: RegistryLike = None) -> Registry:
    """Open a registry given as a path, an opened registry, or None (discover).

    Args:
        registry: The store, its project directory, or None for ``$MODELREG_DIR`` or the
            nearest ``.modelreg`` above the current directory.

    Returns:
        The opened registry.
    """
    return registry if isinstance(registry, Registry) else Registry.open(registry)


def init(directory: str | os.PathLike[str] = ".") -> tuple[Registry, bool]:
    """Create ``directory/.modelreg`` (or reopen it).

    Args:
        directory: The project directory, or the ``.modelreg`` store itself.

    Returns:
        The registry and whether it was newly created.
    """
    return Registry.init(directory)


def register(
    name: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    registry: RegistryLike = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    data: Sequence[str | os.PathLike[str]] = (),
    data_version: str | None = None,
    git: bool = True,
    git_cwd: str | os.PathLike[str] | None = None,
    derived_from: str | None = None,
    actor: str | None = None,
    force: bool = False,
    stage: str | None = None,
    reason: str | None = None,
    signature: Signature | dict[str, Any] | str | os.PathLike[str] | None = None,
    infer_signature: bool = False,
    sample: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> RegisterResult:
    """Register files as the next version of ``name``, with lineage.

    Args:
        name: The model name.
        paths: Files or directories to store.
        registry: Where the store is.
        params: Hyperparameters.
        metrics: Evaluation results (numbers or booleans).
        tags: String labels.
        description: Free text.
        run_id: The training run's id.
        run_name: The training run's name.
        data: Training data files or directories, recorded by digest.
        data_version: A data version string.
        git: Capture the git state of ``git_cwd``.
        git_cwd: Where to look for a git repository (default: the current directory).
        derived_from: A reference to the version this one was made from.
        actor: Who registers (default: see :func:`modelreg.config.resolve_actor`).
        force: Make a new version even if an identical one exists.
        stage: Move the new version on to this stage in the same step (policy applies).
        reason: Why, recorded with that transition.
        signature: The declared signature: a Signature, its dict form, or a JSON/TOML file.
        infer_signature: Infer the signature from ``sample`` (an ONNX file's signature is
            always inferred, and a declared one must agree with it).
        sample: An input example, stored with the version (and used for inference).
        progress: Receives byte counts while files are copied.

    Returns:
        The version and whether it was newly created.
    """
    from modelreg.registry import registering
    from modelreg.registry.lineage import capture_git, data_ref
    from modelreg.types import Lineage, RunInfo

    reg = open_registry(registry)
    final_signature = _resolve_signature([Path(p) for p in paths], signature, infer_signature,
                                         None if sample is None else Path(sample))
    _check_onnx_data([Path(p) for p in paths])
    derived = reg.show(derived_from).ref if derived_from else None
    lineage = Lineage(
        params=dict(params or {}),
        metrics=dict(metrics or {}),
        run=RunInfo(id=run_id, name=run_name),
        git=capture_git(Path(git_cwd or ".").resolve()) if git else None,
        data=[data_ref(Path(p)) for p in data],
        data_version=data_version,
        derived_from=derived,
    )
    return registering.register(
        reg,
        name,
        [Path(p) for p in paths],
        actor=resolve_actor(actor),
        lineage=lineage,
        description=description,
        tags=tags,
        force=force,
        stage=stage,
        reason=reason,
        signature=None if final_signature is None else final_signature.to_dict(),
        example=None if sample is None else Path(sample),
        progress=progress,
    )


def _check_onnx_data(paths: list[Path]) -> None:
    """Refuse ONNX files whose external data is not among the files being registered.

    Raises:
        ModelError: An ONNX file names an external data location outside the version.
    """
    from modelreg.storage.tree import collect

    _, files = collect(paths)
    if any(f.relpath.lower().endswith(".onnx") for f in files):
        from modelreg.packaging import onnxfile

        onnxfile.check_external_files(((f.relpath, f.source) for f in files),
                                      "the model to register:")


def _resolve_signature(paths: list[Path], given: Any, infer: bool,
                       sample: Path | None) -> Signature | None:
    """Work out the signature to store: declared, inferred from ONNX, or from a sample."""
    onnx_files = [p for p in paths if p.is_file() and p.suffix.lower() == ".onnx"]
    if given is None and not infer and not onnx_files:
        return None  # nothing to declare or infer: the signature code need not be loaded
    from modelreg.signatures.model import load_signature_file, parse_signature

    declared: Signature | None
    if isinstance(given, dict):
        declared = parse_signature(given)
    elif isinstance(given, str | os.PathLike):
        declared = load_signature_file(Path(given))
    else:
        declared = given
    if len(onnx_files) == 1:
        from modelreg.packaging import onnxfile
        from modelreg.signatures.contradictions import signature_contradictions

        inferred = onnxfile.infer_signature(onnx_files[0])
        if declared is None:
            return inferred
        differences = signature_contradictions(declared, inferred)
        if differences:
            raise UsageError("the declared signature contradicts the ONNX graph: "
                             + "; ".join(differences))
        return declared
    if infer:
        if declared is not None:
            raise UsageError("give --signature or --infer-signature, not both")
        if sample is None:
            raise UsageError("--infer-signature needs an ONNX file or a --sample to infer from")
        return infer_signature(sample)
    return declared


def infer_signature(path: str | os.PathLike[str], *, fmt: str | None = None) -> Signature:
    """Infer a signature from an ONNX file or from sample data (CSV, JSON, JSONL).

    Args:
        path: The file.
        fmt: The sample's format, when its name does not tell.

    Returns:
        The inferred signature.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"{p} does not exist")
    if p.suffix.lower() == ".onnx":
        from modelreg.packaging import onnxfile

        return onnxfile.infer_signature(p)
    from modelreg.signatures.infer import infer_from_sample

    return infer_from_sample(p.read_bytes(), filename=p.name, fmt=fmt)


def signature(ref: str, *, registry: RegistryLike = None) -> Signature:
    """Return the signature of the version ``ref`` names.

    Raises:
        NotFound: The version has no signature.
    """
    return open_registry(registry).signature(ref)


def signature_diff(a: str, b: str, *, registry: RegistryLike = None) -> list[Change]:
    """Classify each difference from the signature of ``a`` to that of ``b``."""
    from modelreg.signatures.compat import diff_signatures

    reg = open_registry(registry)
    return diff_signatures(reg.show(a).signature, reg.show(b).signature)


def validate(ref: str, data: bytes | BinaryIO, *, registry: RegistryLike = None,
             filename: str | None = None, fmt: str | None = None, outputs: bool = False,
             allow_extra: bool = False, max_errors: int = 20) -> ValidationReport:
    """Check a payload against the signature of ``ref`` (its inputs, or ``outputs``).

    ``data`` is the payload's bytes, or a binary file opened for reading: JSON Lines and
    CSV are then checked as they are read, in constant memory, with the same report.
    """
    schema = signature(ref, registry=registry).schema_for(outputs=outputs, ref=ref)
    if not isinstance(data, bytes | bytearray | memoryview):
        from modelreg.signatures.stream import validate_stream

        return validate_stream(schema, data, filename=filename, fmt=fmt,
                               allow_extra=allow_extra, max_errors=max_errors)
    from modelreg.signatures.validate import validate_payload

    return validate_payload(schema, bytes(data), filename=filename, fmt=fmt,
                            allow_extra=allow_extra, max_errors=max_errors)


def export_onnx(ref: str, *, registry: RegistryLike = None, as_name: str | None = None,
                opset: int | None = None, sample: str | os.PathLike[str] | None = None,
                rtol: float | None = None, atol: float | None = None,
                dynamic_batch: bool = True, allow_pickle: bool | None = None,
                actor: str | None = None) -> ExportResult:
    """Convert a registered model to ONNX, prove parity, register it as a derived version.

    ``allow_pickle`` defaults to the store's ``allow_pickle`` setting (false).
    """
    from modelreg.packaging.exporting import export_onnx as _export

    reg = open_registry(registry)
    return _export(reg, ref, actor=resolve_actor(actor), as_name=as_name, opset=opset,
                   sample=None if sample is None else Path(sample), rtol=rtol, atol=atol,
                   dynamic_batch=dynamic_batch,
                   allow_pickle=reg.config.allow_pickle if allow_pickle is None else allow_pickle)


def predict(ref: str, data: bytes, *, registry: RegistryLike = None,
            filename: str | None = None, fmt: str | None = None) -> PredictResult:
    """Validate a payload and run the version's ONNX model on it (exit 1 if invalid)."""
    from modelreg.packaging.runtime import predict as _predict

    return _predict(open_registry(registry), ref, data, filename=filename, fmt=fmt)


def serve(ref: str, *, registry: RegistryLike = None, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 0, poll: float | None = None, max_body: int | None = None,
          drain: float | None = None, access_log: str | None = None,
          allow_remote: bool = False, started: Callable[[str], None] | None = None) -> None:
    """Serve a version over HTTP until SIGTERM, following its stage or alias (docs/serving.md).

    Args:
        ref: ``NAME@STAGE``, ``NAME@ALIAS`` (followed) or ``NAME@N`` (fixed).
        registry: The store.
        host: The address to listen on (loopback unless ``allow_remote``).
        port: The port (0: any free one; ``started`` is told which).
        workers: Threads running the model at once (0: one per CPU).
        poll: Seconds between two looks at the reference.
        max_body: The largest request body accepted, in bytes (else 413).
        drain: Seconds a SIGTERM waits for requests in flight.
        access_log: A file to append JSON-lines access records to, or ``-`` for stderr.
        allow_remote: Allow a non-loopback ``host``.
        started: Called with the server's URL once it accepts connections.
    """
    from modelreg.packaging import serving

    defaults = serving.ServeOptions()
    options = serving.ServeOptions(
        host=host, port=port, workers=workers,
        poll=defaults.poll if poll is None else poll,
        max_body=defaults.max_body if max_body is None else max_body,
        drain=defaults.drain if drain is None else drain,
        access_log=access_log, allow_remote=allow_remote)
    serving.serve(lambda: open_registry(registry), ref, options, started=started)


def ui(*, registry: RegistryLike = None, host: str = "127.0.0.1", port: int = 8080,
       allow_remote: bool = False, token: str | None = None,
       started: Callable[[str], None] | None = None) -> None:
    """Serve the web UI over the store until SIGTERM or Ctrl-C (docs/ui.md)."""
    from modelreg.packaging.ui import UiOptions, run_ui

    run_ui(lambda: open_registry(registry),
           UiOptions(host=host, port=port, allow_remote=allow_remote, token=token),
           started=started)


def bench(ref: str, *, registry: RegistryLike = None, batch_sizes: Sequence[int] = (1,),
          duration: float = 2.0, record: str | None = None,
          max_p95_ms: float | None = None, actor: str | None = None) -> BenchResult:
    """Measure ONNX Runtime latency; with ``record``, store the verdict as a check.

    The check passes when the p95 latency of every batch size is at most ``max_p95_ms``.
    """
    from modelreg.packaging.runtime import bench as _bench

    if record is not None and max_p95_ms is None:
        raise UsageError("--record needs --max-p95-ms, the threshold the check is judged by")
    reg = open_registry(registry)
    result = _bench(reg, ref, batch_sizes=list(batch_sizes), duration=duration)
    if record is not None and max_p95_ms is not None:
        worst = max(r.p95_ms for r in result.results)
        sizes = ", ".join(f"batch {r.batch_size}: p95 {r.p95_ms} ms"
                          for r in result.results)
        check(result.ref, record, passed=worst <= max_p95_ms, registry=reg, value=worst,
              details=f"{sizes}; limit {max_p95_ms} ms", actor=actor)
    return result


def export_mlflow(ref: str, dest: str | os.PathLike[str], *, registry: RegistryLike = None,
                  force: bool = False) -> MlflowExport:
    """Write an ONNX version as an MLflow model (a directory, or a zip if DEST ends .zip)."""
    from modelreg.packaging.mlflow_format import export_mlflow as _export

    return _export(open_registry(registry), ref, Path(dest), force=force)


def export_bundle(ref: str, dest: str | os.PathLike[str], *, registry: RegistryLike = None,
                  force: bool = False) -> BundleResult:
    """Write one self-describing zip: model files, manifest, signature, predict.py."""
    from modelreg.packaging.bundle import export_bundle as _export_bundle

    return _export_bundle(open_registry(registry), ref, Path(dest), force=force)


def import_mlflow(src: str | os.PathLike[str], *, registry: RegistryLike = None,
                  name: str | None = None, actor: str | None = None) -> RegisterResult:
    """Register an MLflow model directory: its files, signature, run id, flavors, example."""
    from modelreg.packaging.mlflow_format import import_mlflow as _import

    return _import(open_registry(registry), Path(src), name=name, actor=resolve_actor(actor))


def import_from_mlflow(uri: str, *, registry: RegistryLike = None,
                       actor: str | None = None) -> MlflowMigration:
    """Bring every model and version of the MLflow registry at ``uri`` into this store."""
    from modelreg.packaging.mlflow_registry import import_registry

    return import_registry(open_registry(registry), uri, actor=resolve_actor(actor))


def import_bundle(src: str | os.PathLike[str], *, registry: RegistryLike = None,
                  name: str | None = None, actor: str | None = None) -> RegisterResult:
    """Bring a bundle into this registry, verifying every digest and refusing unsafe entries."""
    from modelreg.packaging.bundle import import_bundle as _import_bundle

    return _import_bundle(open_registry(registry), Path(src), name=name,
                          actor=resolve_actor(actor))


def show(ref: str, *, registry: RegistryLike = None) -> VersionInfo:
    """Describe the version ``ref`` names (``NAME``, ``NAME@3``, ``NAME@latest`` …)."""
    return open_registry(registry).show(ref)


def list_models(*, registry: RegistryLike = None) -> list[ModelSummary]:
    """Summarise every model in the store."""
    return open_registry(registry).list_models()


def versions(name: str, *, registry: RegistryLike = None) -> list[VersionSummary]:
    """List every version of ``name``, oldest first."""
    return open_registry(registry).versions(name)


def history(name: str, *, registry: RegistryLike = None,
            limit: int | None = None) -> tuple[str, list[EventRecord]]:
    """Return the model's canonical name and its recorded events, newest first.

    ``limit`` keeps the newest ``limit`` events (at least 1), reading only those.
    """
    from modelreg.registry import events as _events

    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    return _events.history(open_registry(registry), name, limit)


def events(since: str | None = None, *,
           registry: RegistryLike = None) -> tuple[list[EventRecord], str]:
    """Return events across all models after cursor ``since`` (oldest first) and a new cursor."""
    from modelreg.registry import events as _events

    return _events.feed(open_registry(registry), since)


def promote(ref: str, to_stage: str, *, registry: RegistryLike = None,
            reason: str | None = None, actor: str | None = None,
            allow_breaking: bool = False) -> ChangeResult:
    """Move a version into ``to_stage`` under the store's policy.

    Into a stage whose policy has ``check_signature`` (production by default), a version
    whose signature breaks the current holder's is refused unless ``allow_breaking``; the
    override is recorded with the event.
    """
    from modelreg.registry import operations as _ops

    return _ops.promote(open_registry(registry), ref, to_stage, actor=resolve_actor(actor),
                        reason=reason, allow_breaking=allow_breaking)


def archive(ref: str, *, registry: RegistryLike = None, reason: str | None = None,
            actor: str | None = None) -> ChangeResult:
    """Move a version into the archive stage."""
    from modelreg.registry import operations as _ops

    return _ops.archive(open_registry(registry), ref, actor=resolve_actor(actor), reason=reason)


def approve(ref: str, *, registry: RegistryLike = None, stage: str | None = None,
            comment: str | None = None, actor: str | None = None) -> ChangeResult:
    """Record an approval of a version for ``stage``."""
    from modelreg.registry import operations as _ops

    return _ops.approve(open_registry(registry), ref, actor=resolve_actor(actor), stage=stage,
                        comment=comment)


def check(ref: str, name: str, *, passed: bool, registry: RegistryLike = None,
          value: Any = None, details: str | None = None,
          actor: str | None = None) -> ChangeResult:
    """Record a check result (a CI gate such as ``latency``) on a version."""
    from modelreg.registry import operations as _ops

    return _ops.check(open_registry(registry), ref, name, passed=passed,
                      actor=resolve_actor(actor), value=value, details=details)


def rollback(name: str, *, registry: RegistryLike = None, stage: str = "production",
             reason: str | None = None, actor: str | None = None) -> ChangeResult:
    """Put back the version that held ``stage`` before the current one."""
    from modelreg.registry import operations as _ops

    return _ops.rollback(open_registry(registry), name, actor=resolve_actor(actor), stage=stage,
                         reason=reason)


def edit(ref: str, *, registry: RegistryLike = None, description: str | None = None,
         set_tags: dict[str, str] | None = None, remove_tags: list[str] | None = None,
         actor: str | None = None) -> ChangeResult:
    """Change a version's description and tags (recorded as an ``edit`` event)."""
    from modelreg.registry import operations as _ops

    return _ops.edit(open_registry(registry), ref, actor=resolve_actor(actor),
                     description=description, set_tags=set_tags, remove_tags=remove_tags)


def alias_set(name: str, alias: str, version: int, *, registry: RegistryLike = None,
              actor: str | None = None) -> ChangeResult:
    """Point ``alias`` at ``version`` of ``name``."""
    from modelreg.registry import operations as _ops

    return _ops.alias_set(open_registry(registry), name, alias, version,
                          actor=resolve_actor(actor))


def alias_remove(name: str, alias: str, *, registry: RegistryLike = None,
                 actor: str | None = None) -> ChangeResult:
    """Remove ``alias`` from ``name``."""
    from modelreg.registry import operations as _ops

    return _ops.alias_remove(open_registry(registry), name, alias, actor=resolve_actor(actor))


def alias_list(name: str, *, registry: RegistryLike = None) -> tuple[str, dict[str, int]]:
    """Return the model's canonical name and its aliases."""
    from modelreg.registry import operations as _ops

    return _ops.alias_list(open_registry(registry), name)


def copy(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> CopyReport:
    """Copy a whole registry to another place, on any backend (a directory or ``s3://``).

    Objects first, every one verified, then each model's ref; DEST is created if missing.
    Run again after an interruption: what is there already is skipped.
    """
    from modelreg.registry.transfer import copy_store

    src = Registry.open(source)
    target, created = Registry.init(dest)
    return copy_store(src, target, dest_created=created)


def search(filter_text: str = "", *, registry: RegistryLike = None, model: str | None = None,
           order_by: str | None = None, limit: int | None = None) -> list[SearchHit]:
    """Versions across models that match a filter (docs/cli.md, search).

    Example: ``search("metrics.mae < 40 and stage = 'staging'", order_by="metrics.mae")``.
    """
    from modelreg.registry.search import search as _search

    return _search(open_registry(registry), filter_text, model=model, order_by=order_by,
                   limit=limit)


def diff(a: str, b: str, *, registry: RegistryLike = None) -> DiffResult:
    """Compare two versions: params, metrics, lineage, description/tags and files."""
    from modelreg.registry.diff import diff_versions

    reg = open_registry(registry)
    return diff_versions(reg.show(a), reg.show(b))


def pull(
    ref: str,
    dest: str | os.PathLike[str],
    *,
    registry: RegistryLike = None,
    force: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    """Write the files of ``ref`` under ``dest``, verifying each digest."""
    from modelreg.registry import pulling

    return pulling.pull(open_registry(registry), ref, Path(dest), force=force,
                        progress=progress)


def migrate(*, registry: str | os.PathLike[str] | None = None) -> MigrateReport:
    """Turn a format-1 store into format 2 in place, or finish an interrupted migration.

    Args:
        registry: The store or its project directory (default: discover it).
    """
    from modelreg.registry.migrating import migrate as _migrate
    from modelreg.storage.layout import check_owner, discover

    layout = discover(None if registry is None else str(registry), any_format=True)
    check_owner(layout)
    return _migrate(layout)


def fsck(*, registry: RegistryLike = None) -> FsckReport:
    """Verify every object, ref, history chain and manifest of the store."""
    from modelreg.registry.maintenance import fsck as _fsck

    return _fsck(open_registry(registry))


def gc(
    *, registry: RegistryLike = None, grace: float = 3600.0, dry_run: bool = False
) -> GcReport:
    """Remove unreferenced objects, temp files and stale locks older than ``grace`` seconds."""
    from modelreg.registry.maintenance import gc as _gc

    reg = open_registry(registry)
    if not dry_run:
        reg.check_owner()  # removing files is a change: not in someone else's store
    return _gc(reg, grace=grace, dry_run=dry_run)


# -- for the command line and scripts

if TYPE_CHECKING:
    from modelreg.packaging.mlflow_registry import MlflowMigration as MlflowMigration
    from modelreg.registry.contract import ContractReport as ContractReport
    from modelreg.registry.search import SearchHit as SearchHit
    from modelreg.registry.transfer import CopyReport as CopyReport


def version() -> str:
    """Return modelreg's version (``0.1.0``)."""
    from modelreg.version import __version__

    return __version__


def init_directory(directory: str | os.PathLike[str] | None = None,
                   registry: str | os.PathLike[str] | None = None) -> str | Path:
    """Return the project directory :func:`init` should make its store in.

    ``registry`` names the store as every other command takes it (a project directory or
    its ``.modelreg``); ``directory`` is the ``init DIRECTORY`` argument. With neither, the
    current directory.

    Raises:
        UsageError: Both are given and name different places (rather than a silent choice).
    """
    from modelreg.storage.layout import project_dir

    for url in (directory, registry):
        if url is not None and os.fspath(url).startswith("s3://"):
            if directory is not None and registry is not None and directory != registry:
                raise UsageError(f"init got two places for the store: -R {registry} and "
                                 f"DIRECTORY {directory}; give one of them")
            return os.fspath(url)
    if registry is None:
        return Path(".") if directory is None else Path(directory)
    wanted = project_dir(Path(registry))
    if directory is not None and project_dir(Path(directory)).resolve() != wanted.resolve():
        raise UsageError(
            f"init got two places for the store: -R {registry} and DIRECTORY {directory}; "
            "give one of them"
        )
    return wanted


def parse_value(text: str) -> Any:
    """Type a ``K=V`` value as the command line does: int, finite float, bool, else text."""
    from modelreg.registry.lineage import parse_value as _parse_value

    return _parse_value(text)


def parse_assignments(items: Sequence[str], option: str, *,
                      numeric: bool = False) -> dict[str, Any]:
    """Parse repeated ``K=V`` options (``--param``, ``--metric``) into typed values.

    Args:
        items: The raw option values.
        option: The option's name, for messages.
        numeric: Refuse values that are not numbers or booleans (metrics).

    Raises:
        UsageError: An item has no ``=``, a bad key, or (``numeric``) a non-numeric value.
    """
    from modelreg.registry.lineage import parse_assignments as _parse_assignments

    return _parse_assignments(list(items), option, numeric=numeric)


def parse_tags(items: Sequence[str], option: str = "--tag") -> dict[str, str]:
    """Parse repeated ``K=V`` tags: the key rules of :func:`parse_assignments`, values as text.

    Raises:
        UsageError: An item has no ``=`` or a bad key.
    """
    parse_assignments(items, option)
    return {k.strip(): v for k, _, v in (i.partition("=") for i in items)}


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read hyperparameters from a JSON or TOML file (``register --params-file``).

    Raises:
        NotFound: The file does not exist.
        UsageError: It is not a JSON object or TOML table, or holds values a manifest
            cannot store.
    """
    from modelreg.registry.lineage import load_params_file as _load_params_file

    return _load_params_file(Path(path))


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one).

    Missing parent directories are created; an existing file is replaced.
    """
    from modelreg.storage.atomic import write_atomic

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, data, dest.parent)


def signature_jsonschema(sig: Signature) -> dict[str, Any]:
    """Render a signature as one JSON Schema document (draft 2020-12)."""
    from modelreg.signatures.schema_json import signature_jsonschema as _jsonschema

    return _jsonschema(sig)


def check_contract(path: str | os.PathLike[str], *,
                   registry: RegistryLike = None) -> ContractReport:
    """Check a contract file: each pinned reference resolves, each example validates.

    Args:
        path: The contract file (``modelreg-contract.toml``).
        registry: The store (default: the contract's ``registry`` key, ``$MODELREG_DIR``, or
            the nearest store above the contract file).

    Returns:
        One verdict per reference and per example; a failed one carries its error.

    Raises:
        NotFound: The contract file does not exist, or no store is found.
        UsageError: The contract file is not valid.
    """
    from modelreg.registry.contract import check_contract as _check_contract

    return _check_contract(Path(path), registry=registry)
