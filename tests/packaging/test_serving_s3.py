"""`modelreg serve` on a store in S3: moto's S3 on loopback, real processes, real clients.

Two Ridge models of scikit-learn's diabetes data are exported to ONNX in a local store and
registered, with their signatures and input examples, into a store on S3 (diabetes@1 and
@2). `modelreg -R s3://… serve diabetes@production` answers Triton's client and plain HTTP;
while one client keeps posting, `modelreg promote` (another process) moves production to
the other version, and the server swaps to it with no failed request.
"""

from __future__ import annotations

import http.client
import json
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.packaging.test_serving import launch, stop

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")
pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")
triton = pytest.importorskip("tritonclient.http")
np = pytest.importorskip("numpy")

ACTOR = "ci@example.com"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from tests.s3server import LoopbackServer, moto_app

    server = LoopbackServer(moto_app())
    yield server.url
    server.close()


def s3_env(endpoint: str, home: Path) -> dict[str, str]:
    from tests.s3server import FAKE_CREDENTIALS

    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "MODELREG_ACTOR": ACTOR}


class Models:
    """Two ONNX exports, each with its signature and example, and what each predicts."""

    def __init__(self, work: Path) -> None:
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge

        import modelreg

        data = load_diabetes()
        self.names = list(data.feature_names)
        self.rows: list[list[float]] = data.data[:3].tolist()
        reg, _ = modelreg.init(work / "local")
        sig = {"inputs": {n: "float" for n in self.names}, "outputs": {"target": "float"}}
        self.sample = work / "sample.json"
        self.sample.write_text(json.dumps([dict(zip(self.names, r, strict=True))
                                           for r in data.data[:5]]))
        self.exports: list[tuple[Path, dict[str, Any]]] = []
        self.expected: list[list[float]] = []
        for alpha in (0.5, 5.0):
            model = Ridge(alpha=alpha).fit(data.data, data.target)
            self.expected.append(model.predict(np.asarray(self.rows)).tolist())
            path = work / f"ridge-{alpha}.pkl"
            path.write_bytes(pickle.dumps(model))
            made = modelreg.register("diabetes", [path], registry=reg, signature=sig,
                                     sample=self.sample, git=False, actor=ACTOR)
            ref = modelreg.export_onnx(made.version.ref, registry=reg, allow_pickle=True,
                                       actor=ACTOR).result.version.ref
            pulled = work / f"onnx-{alpha}"
            modelreg.pull(ref, pulled, registry=reg)
            info = reg.show(ref)
            assert info.signature is not None
            self.exports.append((next(pulled.glob("*.onnx")), info.signature.to_dict()))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(tmp_path_factory.mktemp("serve-s3"))


def test_serve_follows_production_on_s3(endpoint: str, models: Models, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import modelreg

    env = s3_env(endpoint, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"serve-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket)
    url = f"s3://{bucket}/team/registry"
    done = run_cli("init", url, env=env)
    assert done.returncode == 0, done.stderr
    reg = modelreg.open_registry(url)
    for onnx, signature in models.exports:
        modelreg.register("diabetes", [onnx], registry=reg, signature=signature,
                          sample=models.sample, git=False, actor=ACTOR)
    for stage in ("staging", "production"):
        assert run_cli("-R", url, "promote", "diabetes@1", "--to", stage,
                       env=env).returncode == 0

    server = launch(env, "-R", url, "serve", "diabetes@production", "--port", "0",
                    "--poll", "0.2")
    port = server.port
    answers: list[tuple[Any, str | None, list[float] | None]] = []
    finished = threading.Event()

    def client() -> None:
        body = json.dumps({"dataframe_split": {"columns": models.names,
                                               "data": models.rows}})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not finished.is_set():
            try:
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                got = json.loads(resp.read())
                answers.append((resp.status, resp.getheader("modelreg-version"),
                                [r[0] for r in got["predictions"]] if resp.status == 200
                                else None))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, then asserted
                answers.append((repr(exc), None, None))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    load = threading.Thread(target=client)
    try:
        infer = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert infer.is_model_ready("diabetes")
        rows = np.asarray(models.rows)
        inputs = []
        for i, name in enumerate(models.names):
            tensor = triton.InferInput(name, [len(rows)], "FP64")
            tensor.set_data_from_numpy(rows[:, i].copy())
            inputs.append(tensor)
        result = infer.infer("diabetes", inputs)
        assert result.get_response()["model_version"] == "1"
        output = result.get_response()["outputs"][0]["name"]
        assert result.as_numpy(output).reshape(-1).tolist() == pytest.approx(
            models.expected[0], rel=1e-6)
        infer.close()

        load.start()
        promoted = run_cli("-R", url, "promote", "diabetes@2", "--to", "staging", env=env)
        assert promoted.returncode == 0, promoted.stderr
        promoted = run_cli("-R", url, "promote", "diabetes@2", "--to", "production", env=env)
        assert promoted.returncode == 0, promoted.stderr
        deadline = time.monotonic() + 20  # the poll, and the load of diabetes@2 from S3
        while not any(version == "2" for _, version, _ in answers[-5:]):
            assert time.monotonic() < deadline, "the server never swapped to diabetes@2"
            assert server.proc.poll() is None
            time.sleep(0.05)
        seen = len(answers)
        while len(answers) < seen + 20:  # a few more answers from the new version
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
    finally:
        finished.set()
        if load.is_alive():
            load.join(30)
        code = stop(server)
    assert code == 0
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures[:5]
    versions = [version for _, version, _ in answers]
    first_new = versions.index("2")
    assert first_new > 0  # the client was answered by @1 before the swap
    # One assignment swaps the version: every answer before it is @1's, every one after @2's.
    assert set(versions[:first_new]) <= {"1"} and set(versions[first_new:]) == {"2"}
    for _, version, predicted in answers:
        assert predicted == pytest.approx(models.expected[int(version or 0) - 1], rel=1e-6)
