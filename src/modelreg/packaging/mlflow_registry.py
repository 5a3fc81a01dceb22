"""Moving off an MLflow registry: ``modelreg import --from-mlflow TRACKING_URI``.

Every registered model and version of an MLflow tracking server or store (``sqlite:///…``,
a file store, any URI MLflow accepts) is brought over with MLflow's own client: each
version's model directory is downloaded and registered like ``modelreg import DIR`` (files,
signature, input example, flavors), with its source run's params, metrics and git commit
(``mlflow.source.git.commit``) as lineage, its tags and description; then stages and
aliases are set through the store's policy. Versions keep their numbers where the model is
new here and MLflow's numbers run 1..N. Running it again registers nothing twice (an
identical version is recognised) and moves nothing that is already in place. What could not
be carried over is listed in the report, with why.

MLflow is imported only here (the ``mlflow`` extra).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelregError, UsageError
from modelreg.packaging.mlflow_format import import_mlflow

if TYPE_CHECKING:
    from modelreg.registry.core import Registry

__all__ = ["MlflowMigration", "import_registry"]

# MLflow's (deprecated) stages and where each lands here; "None" is no stage at all.
_STAGES = {"staging": "staging", "production": "production", "archived": "archived"}
_GIT_TAG = "mlflow.source.git.commit"


@dataclass
class MlflowMigration:
    """What ``import --from-mlflow`` carried over, and what it could not."""

    source: str
    models: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        """Note something that could not be carried over."""
        self.skipped.append({"what": what, "why": why})

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/cli.md, import)."""
        return {"source": self.source, "models": self.models, "created": self.created,
                "existing": self.existing, "stages": self.stages, "aliases": self.aliases,
                "skipped": self.skipped}


def _client(uri: str) -> Any:
    from modelreg.packaging.sources import require

    mlflow = require("mlflow", "mlflow", "moving an MLflow registry")
    # models:/ URIs (the downloads) resolve against MLflow's process-wide registry URI.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow, mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _all(search: Any, **kwargs: Any) -> list[Any]:
    found, token = [], None
    while True:
        page = search(max_results=200, page_token=token, **kwargs)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def _lineage(client: Any, run_id: str | None) -> tuple[Any, str | None]:
    from modelreg.registry.lineage import parse_value
    from modelreg.types import GitInfo, Lineage, RunInfo

    if not run_id:
        return Lineage(), None
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MLflow raises its own exception types for a deleted run
        return Lineage(run=RunInfo(id=run_id)), f"run {run_id} could not be read: {exc}"
    data = run.data
    commit = data.tags.get(_GIT_TAG)
    git = GitInfo(commit=commit, branch=data.tags.get("mlflow.source.git.branch"),
                  dirty=False, remote=data.tags.get("mlflow.source.git.repoURL")) if commit \
        else None
    # MLflow keeps params as text; numbers and booleans come back typed, as `--param` types.
    params = {k: parse_value(v) for k, v in data.params.items()}
    return Lineage(params=params, metrics=dict(data.metrics),
                   run=RunInfo(id=run_id, name=run.info.run_name), git=git), None


def import_registry(reg: Registry, uri: str, *, actor: str) -> MlflowMigration:
    """Bring every registered model and version of the MLflow registry at ``uri`` here.

    Raises:
        ModelError: MLflow is not installed (the message gives the pip command).
        UsageError: MLflow cannot open ``uri``.
    """
    from modelreg.registry import operations
    from modelreg.registry.names import check_model_name

    mlflow, client = _client(uri)
    report = MlflowMigration(uri)
    try:
        models = _all(client.search_registered_models)
    except Exception as exc:  # MLflow's errors for a URI it cannot open
        raise UsageError(f"MLflow could not open the registry at {uri}: {exc}") from exc
    for rm in sorted(models, key=lambda m: m.name):
        name = rm.name
        try:
            check_model_name(name)
        except UsageError as exc:
            report.skip(f"model {name!r}", str(exc))
            continue
        report.models.append(name)
        if rm.description:
            report.skip(f"{name}: description", "modelreg keeps descriptions per version")
        for key in (rm.tags or {}):
            report.skip(f"{name}: model tag {key}", "modelreg keeps tags per version")
        versions = sorted(_all(client.search_model_versions, filter_string=f"name='{name}'"),
                          key=lambda v: int(v.version))
        had = {v.version: v for v in _existing(reg, name)}
        numbers: dict[str, int] = {}
        for mv in versions:
            number = _one_version(reg, mlflow, client, mv, had, actor, report)
            if number is not None:
                numbers[str(mv.version)] = number
        for mv in versions:
            stage = _STAGES.get(str(mv.current_stage or "").lower())
            if stage is None or str(mv.version) not in numbers:
                continue
            _move(reg, operations, name, numbers[str(mv.version)], stage, actor, report)
        # A search leaves aliases out; the model read on its own has them.
        aliases = client.get_registered_model(name).aliases or {}
        for alias, version in sorted(aliases.items()):
            number = numbers.get(str(version))
            if number is None:
                report.skip(f"{name}: alias {alias}", f"its version {version} was not imported")
                continue
            try:
                operations.alias_set(reg, name, alias, number, actor=actor)
                report.aliases.append(f"{name}@{alias} -> {number}")
            except ModelregError as exc:
                report.skip(f"{name}: alias {alias}", str(exc))
    return report


def _existing(reg: Registry, name: str) -> list[Any]:
    try:
        return list(reg.versions(name))
    except ModelregError:
        return []


def _one_version(reg: Registry, mlflow: Any, client: Any, mv: Any, had: dict[int, Any],
                 actor: str, report: MlflowMigration) -> int | None:
    where = f"{mv.name} version {mv.version}"
    lineage, problem = _lineage(client, mv.run_id)
    if problem:
        report.skip(f"{where}: lineage", problem)
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    tags["mlflow.version"] = str(mv.version)
    if mv.source:
        tags["mlflow.source"] = str(mv.source)
    with tempfile.TemporaryDirectory(prefix="modelreg-mlflow-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{mv.name}/{mv.version}", dst_path=tmp,
                tracking_uri=report.source)
        except Exception as exc:  # an artifact store MLflow cannot reach
            report.skip(where, f"its files could not be downloaded: {exc}")
            return None
        try:
            result = import_mlflow(reg, Path(local), name=mv.name, actor=actor,
                                   lineage=lineage, tags=tags, description=mv.description)
        except ModelregError as exc:
            report.skip(where, str(exc))
            return None
    number = result.version.version
    (report.created if result.created else report.existing).append(f"{mv.name}@{number}")
    if result.created and number != int(mv.version) and not had:
        report.skip(f"{where}: number", f"registered as {mv.name}@{number} (MLflow's "
                                        "numbers have gaps; modelreg numbers versions 1..N)")
    return number


def _move(reg: Registry, operations: Any, name: str, version: int, stage: str, actor: str,
          report: MlflowMigration) -> None:
    ref = f"{name}@{version}"
    try:
        current = reg.show(ref).stage
        if current == stage:
            return
        config = reg.config
        if (not config.allowed(current, stage) and stage != "staging"
                and config.allowed(current, "staging") and config.allowed("staging", stage)):
            # The way a version reaches production here: through staging.
            operations.promote(reg, ref, "staging", actor=actor, allow_breaking=True,
                               reason=f"imported from MLflow (on the way to {stage})")
        operations.promote(reg, ref, stage, actor=actor, reason="imported from MLflow",
                           allow_breaking=True)
        report.stages.append(f"{ref} -> {stage}")
    except ModelregError as exc:
        report.skip(f"{ref}: stage {stage}", str(exc))
