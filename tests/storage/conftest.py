"""Fixtures shared by the storage tests."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

# Child processes for crash and contention tests: fork where the platform has it.
MP = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
)


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tmp"
    d.mkdir()
    return d
