"""MLflow's side of W1 and W7, run by bench/peers.py with bench/.peers/mlflow's Python.

    setup DB MODELS PER_MODEL ALIAS   MODELS registered models of PER_MODEL versions each,
                                      ALIAS set on each model's last version
    alias DB NAME ALIAS               the W1 fresh process: resolve NAME@ALIAS, print it
    loop DB N                         W7: N `create_model_version` calls on one model after a
                                      warm-up; prints JSON with the rate and SQLite's settings
    tagged DB MODELS PER_MODEL        W10: MODELS models of PER_MODEL versions, each version
                                      tagged team=forecasting (one in three) or team=risk
    search DB FILTER                  W10's fresh process: search_model_versions(FILTER),
                                      every page; prints the number found

DB is a SQLite file used as both tracking and registry store, as `mlflow server
--backend-store-uri sqlite:///...` would. MLflow records a source URI per version and
copies no bytes; its durability is SQLite's (the journal mode and synchronous level in
force are printed by `loop`).
"""

from __future__ import annotations

import json
import sys
import time


def client(db: str):  # noqa: ANN201 - mlflow is only in the peer's environment
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def setup(db: str, models: int, per_model: int, alias: str) -> None:
    c = client(db)
    for m in range(models):
        name = f"model-{m}"
        c.create_registered_model(name)
        for v in range(per_model):
            mv = c.create_model_version(name, source=f"file:///artifacts/{name}/{v}")
        c.set_registered_model_alias(name, alias, mv.version)


def alias(db: str, name: str, alias_name: str) -> None:
    mv = client(db).get_model_version_by_alias(name, alias_name)
    print(f"{mv.name} version {mv.version} source {mv.source}")


def sqlite_settings(c) -> dict[str, object]:  # noqa: ANN001
    """The durability SQLite gives MLflow's registry store, read through its own engine."""
    with c._get_registry_client().store.engine.connect() as con:
        return {"journal_mode": con.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": con.exec_driver_sql("PRAGMA synchronous").scalar()}


def loop(db: str, n: int) -> None:
    c = client(db)
    c.create_registered_model("warm-up")
    for i in range(5):
        c.create_model_version("warm-up", source=f"file:///artifacts/warm-up/{i}")
    c.create_registered_model("w7")
    start = time.perf_counter()
    for i in range(n):
        c.create_model_version("w7", source=f"file:///artifacts/w7/{i}")
    elapsed = time.perf_counter() - start
    landed = len(c.search_model_versions("name='w7'", max_results=n + 10))
    print(json.dumps({"seconds": elapsed, "rate": n / elapsed, "landed": landed,
                      **sqlite_settings(c)}))


def tagged(db: str, models: int, per_model: int) -> None:
    c = client(db)
    for m in range(models):
        name = f"model-{m}"
        c.create_registered_model(name)
        for v in range(1, per_model + 1):
            team = "forecasting" if v % 3 == 0 else "risk"
            c.create_model_version(name, source=f"file:///artifacts/{name}/{v}",
                                   tags={"team": team})


def search(db: str, text: str) -> None:
    c = client(db)
    found, token = 0, None
    while True:
        page = c.search_model_versions(text, max_results=10_000, page_token=token)
        found += len(page)
        token = page.token
        if not token:
            break
    print(found)


def main() -> None:
    cmd, db, *args = sys.argv[1:]
    if cmd == "setup":
        setup(db, int(args[0]), int(args[1]), args[2])
    elif cmd == "alias":
        alias(db, args[0], args[1])
    elif cmd == "loop":
        loop(db, int(args[0]))
    elif cmd == "tagged":
        tagged(db, int(args[0]), int(args[1]))
    elif cmd == "search":
        search(db, args[0])
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
