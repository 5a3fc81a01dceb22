"""Contracts: a consuming repository's pinned model references and example payloads.

A repository that calls models keeps ``modelreg-contract.toml``::

    registry = "../models"          # optional, relative to this file

    [models]
    demand_forecaster = "production"
    eta = "7"

    [[examples]]
    model = "eta"
    payload = "payloads/eta.json"   # relative to this file
    # format = "json"; outputs = false; allow_extra = false; expect = "valid" | "invalid"

``modelreg contract check`` (and the pre-commit hook) verifies that every reference resolves
and that every example validates against the signature of the version it resolves to. This
module reports a verdict per reference and per example; a failed one carries the error that
made it fail, and the command line turns the worst of them into its exit code.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelreg.errors import IntegrityError, ModelregError, NotFound, UsageError, VerdictNo
from modelreg.registry.core import Registry
from modelreg.registry.names import check_model_name
from modelreg.storage.layout import discover

__all__ = ["ContractReport", "ContractResult", "check_contract", "load_contract"]


@dataclass(frozen=True)
class ContractResult:
    """One line of the verdict: a reference or an example, and how it went.

    ``error`` is None when the line is ok; otherwise the error that made it fail: the one
    resolving or validating raised, :class:`~modelreg.errors.NotFound` for a missing payload
    file, or :class:`~modelreg.errors.VerdictNo` for an example that does not behave as the
    contract expects.
    """

    kind: str
    subject: str
    ref: str
    message: str
    error: ModelregError | None = None

    @property
    def ok(self) -> bool:
        """True when the reference resolved, or the example behaved as expected."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": self.kind, "subject": self.subject, "ref": self.ref, "ok": self.ok,
                "message": self.message}


@dataclass(frozen=True)
class ContractReport:
    """The verdict on a whole contract file."""

    file: str
    results: list[ContractResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every reference resolved and every example behaved as expected."""
        return all(r.ok for r in self.results)

    @property
    def errors(self) -> list[ModelregError]:
        """The error of each failed result, in order."""
        return [r.error for r in self.results if r.error is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"file": self.file, "ok": self.ok, "results": [r.to_dict() for r in self.results]}


@dataclass(frozen=True)
class _Example:
    model: str
    payload: Path
    fmt: str | None
    outputs: bool
    allow_extra: bool
    expect_valid: bool


def _failed(kind: str, subject: str, ref: str, error: ModelregError) -> ContractResult:
    return ContractResult(kind, subject, ref, error.message, error)


def load_contract(path: Path) -> tuple[str | None, dict[str, str], list[_Example]]:
    """Read and check a contract file.

    Returns:
        The registry location (or None), the pinned references, and the examples.

    Raises:
        NotFound: The file does not exist.
        UsageError: It is not a valid contract.
    """
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise NotFound(f"contract file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc})") from exc
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise UsageError(f"{path}: not valid TOML ({exc})") from exc
    except RecursionError as exc:
        raise UsageError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"contract file {path} is a directory") from exc
    unknown = set(doc) - {"registry", "models", "examples"}
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)}")
    base = path.parent
    registry = doc.get("registry")
    if registry is not None and not isinstance(registry, str):
        raise UsageError(f"{path}: registry must be a path")
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise UsageError(f"{path}: [models] maps a model name to a version, stage or alias")
    pins: dict[str, str] = {}
    for name, pin in models.items():
        check_model_name(name)
        if isinstance(pin, bool) or not isinstance(pin, str | int):
            raise UsageError(f"{path}: models.{name} must be a version, stage or alias")
        pins[name] = str(pin)
    examples = []
    for i, ex in enumerate(doc.get("examples", [])):
        if not isinstance(ex, dict) or "model" not in ex or "payload" not in ex:
            raise UsageError(f"{path}: examples[{i}] needs model and payload")
        expect = ex.get("expect", "valid")
        if expect not in ("valid", "invalid"):
            raise UsageError(f"{path}: examples[{i}].expect must be valid or invalid")
        examples.append(_Example(check_model_name(str(ex["model"])), base / str(ex["payload"]),
                                 ex.get("format"), bool(ex.get("outputs", False)),
                                 bool(ex.get("allow_extra", False)), expect == "valid"))
    if registry is not None:
        registry = str(base / registry)
    return registry, pins, examples


def _open(path: Path, registry: Registry | str | os.PathLike[str] | None,
          where: str | None) -> Registry:
    """The store: ``registry``, else the contract's own, ``$MODELREG_DIR``, or above it."""
    if isinstance(registry, Registry):
        return registry
    location = registry if registry is not None else where
    if location is not None or os.environ.get("MODELREG_DIR"):
        return Registry.open(location)
    return Registry(discover(None, start=path.resolve().parent))


def _check_example(reg: Registry, ex: _Example, ref: str) -> ContractResult:
    """Validate one example payload against the signature of ``ref``."""
    from modelreg.signatures.validate import validate_payload

    subject = str(ex.payload)
    try:
        data = ex.payload.read_bytes()
    except FileNotFoundError:
        return _failed("example", subject, ref, NotFound("payload file does not exist"))
    try:
        schema = reg.signature(ref).schema_for(outputs=ex.outputs, ref=ref)
        report = validate_payload(schema, data, filename=ex.payload.name, fmt=ex.fmt,
                                  allow_extra=ex.allow_extra)
    except (NotFound, UsageError, IntegrityError) as exc:
        return _failed("example", subject, ref, exc)
    if report.ok == ex.expect_valid:
        return ContractResult("example", subject, ref,
                              "valid" if report.ok else "invalid, as expected")
    detail = ("; ".join(p.message for p in report.problems[:3]) if not report.ok
              else "valid, but the contract expects it to be rejected")
    return _failed("example", subject, ref, VerdictNo(detail))


def check_contract(path: Path, *, registry: Registry | str | os.PathLike[str] | None = None
                   ) -> ContractReport:
    """Verify a contract file against the registry.

    Args:
        path: The contract file.
        registry: The store (default: the contract's ``registry`` key, ``$MODELREG_DIR``, or
            the nearest store above the contract file).

    Returns:
        One result per reference and per example.

    Raises:
        NotFound: The contract file does not exist, or no store is found.
        UsageError: The contract file is not valid.
    """
    where, pins, examples = load_contract(path)
    reg = _open(path, registry, where)
    results: list[ContractResult] = []
    resolved: dict[str, str] = {}
    for name, pin in sorted(pins.items()):
        ref = f"{name}@{pin}"
        try:
            info = reg.show(ref)
        except ModelregError as exc:
            results.append(_failed("model", name, ref, exc))
            continue
        resolved[name] = info.ref
        results.append(ContractResult("model", name, ref, f"resolves to {info.ref}"))
    for ex in examples:
        ref = resolved.get(ex.model, f"{ex.model}@{pins.get(ex.model, 'latest')}")
        results.append(_check_example(reg, ex, ref))
    return ContractReport(str(path), results)
