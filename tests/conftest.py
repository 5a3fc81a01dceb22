from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelreg.cli import app
from modelreg.registry import Registry

# -- scheduling under pytest-xdist (`make test` runs -n auto --dist loadgroup) ---------------

# Modules whose tests share an expensive module- or session-scoped set-up (a clean venv, ONNX
# exports, trained models, a long history): one worker runs all the tests of each, so the
# set-up is made once per session rather than once per worker.
SHARED_SETUP_MODULES = (
    "tests/packaging/test_bundle.py",
    "tests/packaging/test_onnxfile.py",
    "tests/packaging/test_runtime.py",
    "tests/packaging/test_serving.py",
    "tests/packaging/test_serving_s3.py",
    "tests/packaging/test_mlflow_format.py",
    "tests/packaging/test_ui.py",
    "tests/test_s3_store.py",
    "tests/test_s3_gc.py",
    "tests/test_s3_faults.py",
    "tests/packaging/test_converters.py",
    "tests/registry/test_builder.py",
    "tests/registry/test_gc_races.py",
    "tests/storage/test_s3.py",  # one moto server per worker that runs its tests
    "tests/test_shared_mount.py",
)
# The longest tests (they wait on pip, git or child processes), queued first, longest first,
# so that none of them starts near the end while the other workers have nothing left to do.
LONGEST_FIRST = (
    "tests/packaging/test_serving.py",  # the 60-second zero-drop run
    "tests/test_s3_store.py",
    "tests/test_s3_gc.py",
    "tests/packaging/test_mlflow_registry.py",
    "tests/packaging/test_mlflow_format.py",
    "tests/test_crash.py",
    "tests/registry/test_gc_races.py",
    "tests/test_s3_faults.py",
    "tests/packaging/test_exporting.py",
    "tests/storage/test_s3.py",
    "tests/test_precommit.py",
    "tests/test_lifecycle_processes.py",
    "tests/test_examples.py",
    "tests/test_concurrency.py",
)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadgroup, with each SHARED_SETUP_MODULES module as one group.

    pytest-xdist 3.8 tells a worker's groups by a suffix it writes into each xdist_group
    test's node id, which pytest 9.2 no longer lets it write (pytest-xdist issue 1386), so
    the groups are named here, in the scheduler, instead of by marks.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedSetupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return module if module in SHARED_SETUP_MODULES else super()._split_scope(nodeid)

    return SharedSetupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        return  # not an xdist worker: keep the usual order

    def rank(item: pytest.Item) -> int:
        module = _module(item.nodeid)
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept


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
