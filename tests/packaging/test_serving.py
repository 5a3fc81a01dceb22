"""`modelreg serve`: real server processes, real clients (Triton's HTTP client, plain HTTP).

One store for the module: two Ridge models on scikit-learn's diabetes data, each exported to
ONNX (diabetes@2 and diabetes@4), beside their pickles (diabetes@1 and @3, not servable).
Each test starts its own `modelreg serve` process on a free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")
http = pytest.importorskip("tritonclient.http")
np = pytest.importorskip("numpy")

ACTOR = "ci@example.com"


@dataclass
class Store:
    root: Path
    names: list[str]
    rows: list[list[float]]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    import modelreg

    root = tmp_path_factory.mktemp("serve")
    reg, _ = modelreg.init(root)
    # Production may be entered from any stage: the tests move it back and forth freely.
    reg.layout.config_file.write_text(
        '[transitions]\ndevelopment = ["staging", "production", "archived"]\n'
        'archived = ["staging", "production", "development"]\n')
    reg = modelreg.open_registry(reg.layout.root)
    data = load_diabetes()
    names = list(data.feature_names)
    sig = {"inputs": {n: "float" for n in names}, "outputs": {"target": "float"}}
    sample = root / "sample.json"
    sample.write_text(json.dumps([dict(zip(names, r, strict=True)) for r in data.data[:5]]))
    for alpha in (0.5, 5.0):
        model = Ridge(alpha=alpha).fit(data.data, data.target)
        path = root / f"ridge-{alpha}.pkl"
        path.write_bytes(pickle.dumps(model))
        made = modelreg.register("diabetes", [path], registry=reg, signature=sig,
                                 sample=sample, git=False, actor=ACTOR)
        modelreg.export_onnx(made.version.ref, registry=reg, allow_pickle=True, actor=ACTOR)
    for stage in ("staging", "production"):
        modelreg.promote("diabetes@2", stage, registry=reg, actor=ACTOR)
    return Store(reg.layout.root, names, data.data[:3].tolist())


def cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, registry=store.root, env={"MODELREG_ACTOR": ACTOR})


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    port: int


def start(store: Store, *args: str, ref: str = "diabetes@production") -> Server:
    return launch({"MODELREG_DIR": str(store.root), "MODELREG_ACTOR": ACTOR}, "serve", ref,
                  "--port", "0", "--poll", "0.2", *args)


def launch(env: dict[str, str], *args: str) -> Server:
    """Run ``modelreg ARGS`` (a serve command) and wait for the line naming its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "modelreg", *args],
                            env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    url = line.strip().rsplit(" ", 1)[1]
    # Keep reading the server's log so it never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return Server(proc, url, int(url.rsplit(":", 1)[1]))


@pytest.fixture
def server(store: Store) -> Iterator[Server]:
    s = start(store)
    yield s
    stop(s)


def stop(s: Server) -> int:
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
    try:
        return s.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        raise


def request(url: str, body: bytes | None = None, content_type: str = "application/json",
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def predicted(store: Store, ref: str) -> list[float]:
    payload = store.root.parent / "payload.json"
    payload.write_text(json.dumps([dict(zip(store.names, r, strict=True)) for r in store.rows]))
    done = run_cli("predict", ref, payload, registry=store.root, env={"MODELREG_ACTOR": ACTOR})
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    return [row[0] for row in next(iter(outputs.values()))]


def test_triton_client_speaks_to_it(store: Store, server: Server) -> None:
    client = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("diabetes")
    meta = client.get_model_metadata("diabetes")
    assert meta["versions"] == ["2"]
    assert [i["name"] for i in meta["inputs"]] == store.names
    rows = np.asarray(store.rows)
    expected = predicted(store, "diabetes@2")
    for binary in (True, False):
        inputs = []
        for i, name in enumerate(store.names):
            tensor = http.InferInput(name, [len(rows)], "FP64")
            tensor.set_data_from_numpy(rows[:, i].copy(), binary_data=binary)
            inputs.append(tensor)
        outputs = [http.InferRequestedOutput(meta["outputs"][0]["name"], binary_data=binary)]
        result = client.infer("diabetes", inputs, outputs=outputs)
        got = result.as_numpy(meta["outputs"][0]["name"]).reshape(-1).tolist()
        assert got == pytest.approx(expected, rel=1e-6)
        assert result.get_response()["model_version"] == "2"
    bad = http.InferInput("age", [1], "FP64")
    bad.set_data_from_numpy(np.asarray([1.0]))
    with pytest.raises(Exception, match="400"):
        client.infer("diabetes", [bad])
    client.close()


def test_invocations_takes_mlflow_payloads(store: Store, server: Server) -> None:
    expected = predicted(store, "diabetes@2")
    records = [dict(zip(store.names, r, strict=True)) for r in store.rows]
    bodies = [
        ({"dataframe_split": {"columns": store.names, "data": store.rows}}, "application/json"),
        ({"dataframe_records": records}, "application/json"),
        ({"instances": records}, "application/json"),
    ]
    for doc, kind in bodies:
        status, headers, body = request(server.url + "/invocations", json.dumps(doc).encode(),
                                        kind)
        assert status == 200, body
        assert headers["modelreg-version"] == "2"
        got = [row[0] for row in json.loads(body)["predictions"]]
        assert got == pytest.approx(expected, rel=1e-6)
    csv = ",".join(store.names) + "\n" + "\n".join(",".join(map(repr, r)) for r in store.rows)
    status, _, body = request(server.url + "/invocations", csv.encode(), "text/csv")
    assert status == 200, body
    assert [r[0] for r in json.loads(body)["predictions"]] == pytest.approx(expected, rel=1e-6)


def test_bad_requests_get_4xx_never_500(store: Store, server: Server) -> None:
    bad = {"dataframe_records": [{"age": "old", **{n: 0.1 for n in store.names[1:]}}]}
    status, _, body = request(server.url + "/invocations", json.dumps(bad).encode())
    assert status == 400
    assert 'row 1, column "age": expected float, got string "old"' in json.loads(body)["error"]
    assert request(server.url + "/invocations", b"{not json")[0] == 400
    assert request(server.url + "/invocations", b"{}")[0] == 400
    assert request(server.url + "/invocations", b"a,b", "application/x-whatever")[0] == 415
    assert request(server.url + "/v2/models/other")[0] == 404
    for path in ("/invocations", "/v2/models/diabetes/infer",
                 "/v2/models/diabetes/versions/2/infer"):
        status, headers, _ = request(server.url + path)  # a GET
        assert (status, headers.get("allow")) == (405, "POST"), path
    assert request(server.url + "/v2/models/diabetes/x/infer", b"{}")[0] == 404
    assert request(server.url + "/v2/models/diabetes/versions/9")[0] == 404
    infer = server.url + "/v2/models/diabetes/infer"
    assert request(infer, b'{"inputs": [{"name": "age"}]}')[0] == 400
    short = {"inputs": [{"name": "age", "shape": [3], "datatype": "FP64", "data": [1.0]}]}
    status, _, body = request(infer, json.dumps(short).encode())
    assert status == 400
    assert "holds 3 values" in json.loads(body)["error"]
    # A body over --max-body is refused from its declared length, before it is read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100000000\r\n\r\n[1,")
        assert conn.recv(4096).startswith(b"HTTP/1.1 413 ")
    status, _, body = request(server.url + "/metrics")
    assert status == 200
    assert b'modelreg_requests_total{code="400",route="invocations"}' in body
    assert b"modelreg_loaded_version 2.0" in body


def _version_answering(server: Server, store: Store) -> str:
    doc = {"dataframe_split": {"columns": store.names, "data": store.rows[:1]}}
    status, headers, body = request(server.url + "/invocations", json.dumps(doc).encode())
    assert status == 200, body
    return headers["modelreg-version"]


def _wait_for_version(server: Server, store: Store, version: str) -> None:
    deadline = time.monotonic() + 10
    while _version_answering(server, store) != version:
        assert time.monotonic() < deadline, f"never swapped to {version}"
        time.sleep(0.05)


def test_follows_the_stage_and_keeps_serving_through_a_bad_version(store: Store) -> None:
    s = start(store)
    try:
        assert _version_answering(s, store) == "2"
        assert cli(store, "promote", "diabetes@4", "--to", "production").returncode == 0
        _wait_for_version(s, store, "4")
        # A pickle cannot be served: the old version keeps answering, and says why.
        done = cli(store, "promote", "diabetes@3", "--to", "production", "--allow-breaking")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while True:
            _, _, ready = request(s.url + "/v2/models/diabetes/ready")
            if "error" in json.loads(ready):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "diabetes@3" in json.loads(ready)["error"]
        assert "modelreg export" in json.loads(ready)["error"]
        assert _version_answering(s, store) == "4"
        metrics = request(s.url + "/metrics")[2].decode()
        assert "modelreg_failed_loads_total 1.0" in metrics
        assert "modelreg_swaps_total 1.0" in metrics
        assert "modelreg_loaded_version 4.0" in metrics
        assert cli(store, "promote", "diabetes@2", "--to", "production",
                   "--allow-breaking").returncode == 0
        _wait_for_version(s, store, "2")
    finally:
        assert stop(s) == 0


def test_sigterm_turns_readiness_off_and_exits_0(store: Store) -> None:
    s = start(store, ref="diabetes@2")
    assert request(s.url + "/v2/health/ready")[0] == 200
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0


def test_refusals_and_their_exit_codes(store: Store) -> None:
    done = cli(store, "serve", "diabetes@1", "--port", "0")
    assert done.returncode == 7
    assert "modelreg export" in done.stderr
    done = cli(store, "serve", "diabetes@2", "--host", "0.0.0.0", "--port", "0")  # noqa: S104
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        done = cli(store, "serve", "diabetes@2", "--port", str(taken.getsockname()[1]))
    assert done.returncode == 4
    assert "in use" in done.stderr
    done = cli(store, "serve", "nosuch@production", "--port", "0")
    assert done.returncode == 3


def test_access_log_is_json_lines(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    s = start(store, "--access-log", str(log), ref="diabetes@2")
    try:
        _version_answering(s, store)
        request(s.url + "/v2/health/live")
    finally:
        assert stop(s) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["method"], e["path"], e["status"]) for e in lines] == [
        ("POST", "/invocations", 200), ("GET", "/v2/health/live", 200)]
    assert lines[0]["version"] == "2"


CLIENT = r"""
import json, sys, threading, time, http.client
port, seconds, body = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
results, lock = [], threading.Lock()
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.time()
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            row = (t0, time.time(), resp.status, resp.getheader("modelreg-version"))
        except Exception as exc:
            row = (t0, time.time(), repr(exc), None)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            results.append(row)
threads = [threading.Thread(target=client) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(results))
"""


def test_no_request_dropped_while_the_stage_moves(store: Store) -> None:
    """8 clients for 60 s while production moves 10 times: no failure, versions in order."""
    cli(store, "promote", "diabetes@2", "--to", "production", "--allow-breaking")
    s = start(store)
    seconds = float(os.environ.get("MODELREG_TEST_ZERO_DROP_SECONDS", "60"))
    doc = {"dataframe_split": {"columns": store.names, "data": store.rows}}
    load = subprocess.Popen([sys.executable, "-c", CLIENT, str(s.port), str(seconds),
                             json.dumps(doc)], stdout=subprocess.PIPE, text=True)
    # (moment the move began, moment it was committed, the version it put in production)
    timeline: list[tuple[float, float, str]] = [(0.0, 0.0, "2")]
    try:
        gap = seconds / 12
        for i in range(10):
            time.sleep(gap)
            target = "4" if i % 2 == 0 else "2"
            began = time.time()
            if i % 4 == 1:
                done = cli(store, "rollback", "diabetes", "--reason", "zero-drop test")
            else:
                done = cli(store, "promote", f"diabetes@{target}", "--to", "production")
            assert done.returncode == 0, done.stderr
            timeline.append((began, time.time(), target))
        out, _ = load.communicate(timeout=seconds + 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            load.kill()
        assert stop(s) == 0
    rows = json.loads(out)
    failures = [r for r in rows if r[2] != 200]
    assert not failures, failures[:5]
    assert len(rows) > 100
    swap_lag = 5.0  # poll interval, the load and warm-up of a version, on a busy machine

    def held(version: str, t0: float, t1: float) -> bool:
        for i, (began, _, v) in enumerate(timeline):
            until = timeline[i + 1][1] + swap_lag if i + 1 < len(timeline) else float("inf")
            if v == version and began <= t1 and t0 <= until:
                return True
        return False

    wrong = [r for r in rows if not held(r[3], r[0], r[1])]
    assert not wrong, wrong[:5]
    assert {r[3] for r in rows} == {"2", "4"}
