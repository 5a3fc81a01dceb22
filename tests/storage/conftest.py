"""Fixtures shared by the storage tests."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Any:
    """A boto3 client on the loopback S3, for tests to set up and inspect buckets directly."""
    import boto3

    from tests.s3server import FAKE_CREDENTIALS

    return boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=s3_endpoint)


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
def s3_url(aws_env: str, s3_admin: Any) -> str:
    """A fresh bucket on the loopback S3; the store's URL, with a prefix, inside it."""
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/registry"
