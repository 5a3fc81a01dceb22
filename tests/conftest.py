from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelreg.cli import app
from modelreg.registry import Registry


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests away from the developer's settings and stores."""
    monkeypatch.delenv("MODELREG_DIR", raising=False)
    monkeypatch.delenv("MODELREG_TRACEBACK", raising=False)
    monkeypatch.setenv("MODELREG_ACTOR", "tester@example.com")
    monkeypatch.setenv("MODELREG_USER_CONFIG", str(tmp_path / "no-user-config.toml"))


@pytest.fixture
def make_registry(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Registry]:
    def make() -> Registry:
        reg, created = Registry.init(tmp_path_factory.mktemp("project"))
        assert created
        return reg

    return make


@pytest.fixture
def registry(make_registry: Callable[[], Registry]) -> Registry:
    return make_registry()


@pytest.fixture
def project(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory holding a store, made the current directory."""
    root = registry.layout.root.parent
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(4096))
    return path


class Cli:
    """Runs the CLI in-process with separate stdout and stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str | os.PathLike[str], input: str | None = None):  # noqa: A002
        return self.runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture
def cli() -> Cli:
    return Cli()
