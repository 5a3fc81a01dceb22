"""The error hierarchy: every expected failure is a ModelregError with an exit code.

Only ``modelreg.cli`` turns these into process exit codes; the library raises them and
never exits. Each class carries the exit code documented in docs/cli.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CONFLICT",
    "EXIT_INTEGRITY",
    "EXIT_INTERNAL",
    "EXIT_MODEL",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_POLICY",
    "EXIT_USAGE",
    "ConflictError",
    "Denial",
    "IntegrityError",
    "LockHeld",
    "ModelError",
    "ModelregError",
    "NotARegistry",
    "NotFound",
    "ObjectMissing",
    "PolicyDenied",
    "UnsupportedFormat",
    "UsageError",
    "VerdictNo",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_POLICY = 5
EXIT_INTEGRITY = 6
EXIT_MODEL = 7
EXIT_INTERNAL = 70


class ModelregError(Exception):
    """Root of every error modelreg raises on purpose."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class VerdictNo(ModelregError):
    """The answer is no: a payload fails its signature or a check failed."""

    exit_code = EXIT_CHECK_FAILED


class UsageError(ModelregError):
    """Bad arguments: a bad name, a malformed reference, an unreadable option value."""

    exit_code = EXIT_USAGE


class NotFound(ModelregError):
    """A registry, model, version, stage, alias or object does not exist."""

    exit_code = EXIT_NOT_FOUND


class NotARegistry(NotFound):
    """No ``.modelreg`` directory was found where one was expected."""


class ConflictError(ModelregError):
    """The state changed under the command, or a lock stayed held too long."""

    exit_code = EXIT_CONFLICT


class LockHeld(ConflictError):
    """A lock file was held by someone else for longer than the wait allows."""

    def __init__(self, message: str, lock_path: str) -> None:
        super().__init__(message)
        self.lock_path = lock_path


@dataclass(frozen=True)
class Denial:
    """One reason the policy refuses a change.

    ``rule`` names the kind of rule: ``transition`` (the move is not allowed from the
    current stage), ``actor`` (the actor may not move versions there), ``check`` (a required
    check has no result or failed), ``approval`` (too few approvals), ``four_eyes`` (the
    registrant may not approve), ``signature`` (the signature breaks the stage holder's),
    ``hook`` (a pre- hook vetoed it). ``message`` is the readable line.
    """

    rule: str
    message: str


class PolicyDenied(ModelregError):
    """The registry's policy refuses the action; ``reasons`` says which rules, one each."""

    exit_code = EXIT_POLICY

    def __init__(self, message: str, reasons: tuple[Denial, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


class IntegrityError(ModelregError):
    """Stored bytes do not match their digest, or the store is corrupt."""

    exit_code = EXIT_INTEGRITY

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ObjectMissing(IntegrityError):
    """An object that the store refers to is not there."""


class UnsupportedFormat(IntegrityError):
    """The store was written in a format version this modelreg does not know."""


class ModelError(ModelregError):
    """A model could not be loaded, converted or run."""

    exit_code = EXIT_MODEL
