"""W9: `modelreg serve` against a floor: a bare uvicorn app over the same ONNX session.

The floor (``python -m bench.serving MODEL.onnx PORT``) parses MLflow's
``dataframe_split`` JSON into a float array and runs the same ONNX bytes in ONNX Runtime with
one session, in a worker thread as a starlette app usually does; no validation, no follower,
no metrics. The load (``load``) is a separate
process of N threads, each on its own keep-alive connection, posting the same request for a
fixed time and recording each latency. Both servers are measured in one run, one after the
other with the same load, so the ratio is fair on a busy machine.

Budgets (issue 15): p50 at 1 client ≤ 1.3× the floor's; throughput while the stage moves
every second ≥ 0.8× steady state; ≥ 3× the throughput of `mlflow models serve` (measured by
``make bench-peers``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LOAD = r"""
import json, sys, threading, time, http.client
port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = sys.argv[4].encode()
lat, errors, lock = [], [0], threading.Lock()
def run():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    mine, bad = [], 0
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        resp = conn.getresponse(); resp.read()
        if resp.status != 200:
            bad += 1
        mine.append(time.perf_counter() - t0)
    with lock:
        lat.extend(mine); errors[0] += bad
threads = [threading.Thread(target=run) for _ in range(clients)]
start = time.perf_counter()
[t.start() for t in threads]; [t.join() for t in threads]
elapsed = time.perf_counter() - start
lat.sort()
print(json.dumps({"rps": len(lat) / elapsed, "p50": lat[len(lat) // 2],
                  "p99": lat[int(len(lat) * 0.99)], "n": len(lat), "errors": errors[0]}))
"""


def floor_app(model: Path) -> Any:
    """The floor: parse dataframe_split, run the session, answer predictions."""
    import numpy as np
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    session = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.float64 if "double" in session.get_inputs()[0].type else np.float32

    def invocations_sync(body: bytes) -> Any:
        doc = json.loads(body)
        x = np.asarray(doc["dataframe_split"]["data"], dtype=dtype)
        return session.run(None, {name: x})[0].tolist()

    async def invocations(request: Request) -> JSONResponse:
        import anyio

        body = await request.body()
        out = await anyio.to_thread.run_sync(invocations_sync, body)
        return JSONResponse({"predictions": out})

    return Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])


def main(argv: list[str]) -> None:
    """``MODEL PORT``: run the floor server."""
    import uvicorn

    model, port = argv
    uvicorn.run(floor_app(Path(model)), host="127.0.0.1", port=int(port), log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
