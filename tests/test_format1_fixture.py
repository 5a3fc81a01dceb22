"""The format-1 store kept as a fixture (tests/fixtures/format1-store.tar.gz) reads as it did.

The store was written by modelreg's format-1 code (tests/fixtures/make_format1_store.sh) and
the JSON beside it is what that code printed. These tests hold the fixture and its expected
outputs to each other, so a migration to a later format has a faithful store to start from.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.helpers import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "format1-expected"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("format1")
    with tarfile.open(FIXTURES / "format1-store.tar.gz") as tar:
        tar.extractall(root, filter="tar")
    return root / ".modelreg"


@pytest.mark.parametrize(("args", "expected"), [
    (("history", "churn"), "history-churn.json"),
    (("history", "fraud"), "history-fraud.json"),
    (("versions", "churn"), "versions-churn.json"),
    (("versions", "fraud"), "versions-fraud.json"),
    (("show", "churn@1"), "show-churn-1.json"),
    (("show", "churn@2"), "show-churn-2.json"),
    (("show", "churn@3"), "show-churn-3.json"),
    (("show", "fraud@1"), "show-fraud-1.json"),
    (("show", "fraud@2"), "show-fraud-2.json"),
    (("list",), "list.json"),
])
def test_format1_fixture_reads_as_recorded(store: Path, args: tuple[str, ...],
                                           expected: str) -> None:
    done = run_cli(*args, "--json", registry=store)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((EXPECTED / expected).read_text())


def test_format1_fixture_is_whole(store: Path) -> None:
    done = run_cli("fsck", registry=store)
    assert done.returncode == 0, done.stderr
    assert "2 models, 5 versions, 20 events" in done.stdout + done.stderr
