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
and that every example validates against the signature of the version it resolves to.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelreg.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_OK,
    IntegrityError,
    ModelregError,
    NotFound,
    UsageError,
)
from modelreg.registry.core import Registry
from modelreg.registry.names import check_model_name
from modelreg.storage.layout import discover

__all__ = ["ContractReport", "ContractResult", "check_contract", "load_contract"]

_SEVERITY = (EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_CHECK_FAILED)


@dataclass(frozen=True)
class ContractResult:
    """One line of the verdict: a reference or an example, and how it went."""

    kind: str
    subject: str
    ref: str
    ok: bool
    message: str
    exit_code: int = EXIT_OK

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
    def exit_code(self) -> int:
        """The most severe failure's exit code (integrity, then not found, then invalid)."""
        codes = {r.exit_code for r in self.results if not r.ok}
        return next((c for c in _SEVERITY if c in codes), EXIT_OK if not codes else max(codes))

    def lines(self) -> list[str]:
        """One human line per result."""
        return [f"{'ok  ' if r.ok else 'FAIL'} {r.kind} {r.subject} ({r.ref}): {r.message}"
                for r in self.results]

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
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from exc
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


def check_contract(path: Path, *, registry: str | os.PathLike[str] | None = None
                   ) -> ContractReport:
    """Verify a contract file against the registry.

    Args:
        path: The contract file.
        registry: The store (default: the contract's ``registry`` key, ``$MODELREG_DIR``, or
            the nearest store above the contract file).

    Returns:
        One result per reference and per example.
    """
    from modelreg import api

    where, pins, examples = load_contract(path)
    location = registry if registry is not None else where
    if location is not None or os.environ.get("MODELREG_DIR"):
        reg = Registry.open(location)
    else:
        reg = Registry(discover(None, start=path.resolve().parent))
    results: list[ContractResult] = []
    resolved: dict[str, str] = {}
    for name, pin in sorted(pins.items()):
        ref = f"{name}@{pin}"
        try:
            info = reg.show(ref)
        except ModelregError as exc:
            results.append(ContractResult("model", name, ref, False, exc.message, exc.exit_code))
            continue
        resolved[name] = info.ref
        results.append(ContractResult("model", name, ref, True, f"resolves to {info.ref}"))
    for ex in examples:
        ref = resolved.get(ex.model, f"{ex.model}@{pins.get(ex.model, 'latest')}")
        subject = str(ex.payload)
        try:
            data = ex.payload.read_bytes()
        except FileNotFoundError:
            results.append(ContractResult("example", subject, ref, False,
                                          "payload file does not exist", EXIT_NOT_FOUND))
            continue
        try:
            report = api.validate(ref, data, registry=reg, filename=ex.payload.name,
                                  fmt=ex.fmt, outputs=ex.outputs, allow_extra=ex.allow_extra)
        except (NotFound, UsageError, IntegrityError) as exc:
            results.append(ContractResult("example", subject, ref, False, exc.message,
                                          exc.exit_code))
            continue
        if report.ok == ex.expect_valid:
            verdict = "valid" if report.ok else "invalid, as expected"
            results.append(ContractResult("example", subject, ref, True, verdict))
        else:
            detail = ("; ".join(p.message for p in report.problems[:3]) if not report.ok
                      else "valid, but the contract expects it to be rejected")
            results.append(ContractResult("example", subject, ref, False, detail,
                                          EXIT_CHECK_FAILED))
    return ContractReport(str(path), results)
