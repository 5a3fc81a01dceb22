"""Fixtures shared by the storage tests."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
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


# -- a real S3 on loopback (tests/s3server.py) ---------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3, single-threaded, on a free loopback port for the whole session."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from tests.s3server import LoopbackServer, moto_app

    server = LoopbackServer(moto_app())
    yield server.url
    server.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str) -> str:
    """Fake credentials and the loopback endpoint in the environment, nothing of the user's.

    Returns:
        The endpoint URL.
    """
    from tests.s3server import FAKE_CREDENTIALS

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


@pytest.fixture
def s3_url(aws_env: str) -> str:
    """A fresh bucket on the loopback S3; the store's URL, with a prefix, inside it."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:20]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/registry"
