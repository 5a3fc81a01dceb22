"""Model names and version references (``NAME``, ``NAME@3``, ``NAME@v3``, ``NAME@latest``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelreg.errors import UsageError

__all__ = ["MAX_NAME", "Ref", "check_model_name", "model_key", "parse_ref"]

MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_VERSION = re.compile(r"^v?([0-9]+)\Z")


def check_model_name(name: str) -> str:
    """Refuse a model name that is empty, too long, or could escape the store.

    Names are letters, digits, ``.``, ``_`` and ``-``, start with a letter or digit, hold at
    most 128 characters, have no ``..`` and do not end in ``.lock``.

    Args:
        name: What the user gave.

    Returns:
        The name unchanged.

    Raises:
        UsageError: The name is not allowed.
    """
    if not name:
        raise UsageError("model name is empty")
    if len(name) > MAX_NAME:
        raise UsageError(f"model name is {len(name)} characters long; the limit is {MAX_NAME}")
    if not _NAME.match(name) or ".." in name or name.lower().endswith(".lock"):
        raise UsageError(
            f"bad model name {name!r}: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit (no '..', no trailing '.lock')"
        )
    return name


def model_key(name: str) -> str:
    """Return the case-folded key a model is stored under (names are unique ignoring case)."""
    return check_model_name(name).lower()


@dataclass(frozen=True)
class Ref:
    """A parsed reference: a model name and what to pick in it."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.label or 'latest'}"


def parse_ref(text: str) -> Ref:
    """Parse ``NAME``, ``NAME@N``, ``NAME@vN``, ``NAME@latest`` or ``NAME@LABEL``.

    ``LABEL`` is a stage or an alias; resolving it is the registry's job.

    Args:
        text: The reference as typed.

    Returns:
        The parsed reference.

    Raises:
        UsageError: The reference is malformed.
    """
    name, sep, selector = text.partition("@")
    check_model_name(name)
    if not sep:
        return Ref(name)
    if not selector:
        raise UsageError(f"bad reference {text!r}: nothing after '@'")
    match = _VERSION.match(selector)
    if match:
        number = int(match.group(1))
        if number < 1:
            raise UsageError(f"bad reference {text!r}: versions start at 1")
        return Ref(name, version=number)
    if selector == "latest":
        return Ref(name)
    if not _NAME.match(selector):
        raise UsageError(f"bad reference {text!r}: {selector!r} is not a version, stage or alias")
    return Ref(name, label=selector)
