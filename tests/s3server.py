"""A real S3 for tests: moto's S3 served over loopback HTTP, one request at a time.

moto's own ``moto_server`` serves each request in a thread of its own, and its conditional
PUT checks the ETag and then stores, two steps with no lock between them
(``moto/s3/responses.py``, ``put_object``), so two threads can both pass the check: 8
threads x 25 ``If-Match`` increments of one key were once seen to give 200 successes and a
final value of 199 (the race does not show on every run). Served by one thread, requests
are handled one after the other, as S3 orders writes to one key. So every server here is
werkzeug's single-threaded one.

Besides the plain server, :class:`Faults` wraps the same moto application (the same buckets:
moto keeps its state in the process) in a WSGI layer that answers 500 to chosen requests,
before or after handing them to moto, closes the connection with no answer, answers late or
half way, or drops the conditional headers, served on a port of its own; clients see a real
HTTP endpoint misbehave, with nothing mocked.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def client_env(endpoint: str, scratch: Path) -> dict[str, str]:
    """The environment of a modelreg process that talks to ``endpoint`` and nothing else.

    Fake credentials, and no AWS config or credentials file of the machine's (they would
    name another endpoint, region or profile).
    """
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": str(scratch / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "MODELREG_ACTOR": "ci@example.com"}


def admin(endpoint: str) -> Any:
    """A plain boto3 client on ``endpoint`` (for set-up and for looking at keys)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def new_bucket(endpoint: str, stem: str = "store") -> str:
    """Create a bucket of a fresh name at ``endpoint``; return its name."""
    bucket = f"{stem}-{uuid.uuid4().hex[:16]}"
    admin(endpoint).create_bucket(Bucket=bucket)
    return bucket


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log on stderr
        pass


class LoopbackServer:
    """A WSGI app served by one thread on a free loopback port until :meth:`close`."""

    def __init__(self, app: WSGIApp) -> None:
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=False, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def moto_app() -> WSGIApp:
    """moto's S3 as a WSGI application (its state lives in this process)."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    app: WSGIApp = DomainDispatcherApplication(create_backend_app)
    return app


class Faults:
    """A WSGI layer over moto that misbehaves on request.

    ``fail_before(n)``: the next ``n`` requests get a 500 and never reach moto.
    ``fail_after(n)``: the next ``n`` requests reach moto (a write lands) but the client is
    told 500. ``drop_next(n, after=...)``: the next ``n`` requests get no answer at all, the
    connection closed before moto sees them or once it has done the work. ``stall_next(s)``:
    the next request reaches moto and its answer is held back ``s`` seconds (a client with a
    shorter read timeout gives up first). ``cut_next_body()``: the next answer comes half
    way. ``only``: when set, the faults fall only on the requests it accepts (method, path),
    and the others pass untouched. ``conditions``: ``"honour"`` (moto's own handling),
    ``"ignore"`` (``If-Match`` and ``If-None-Match`` are dropped, as by a server that does
    not know them), ``"ignore-on-delete"`` (dropped from DELETE requests only) or
    ``"reject"`` (a request carrying one is answered 501 NotImplemented).
    """

    def __init__(self, app: WSGIApp, *, conditions: str = "honour",
                 answered: Callable[[str, str, str], None] | None = None) -> None:
        self._app = app
        self.conditions = conditions
        self.answered = answered
        """Called with the method, path and status of each request moto answered, before
        the answer goes back: a test's chance to act "meanwhile" (on another endpoint)."""
        self.only: Callable[[str, str], bool] | None = None
        self._before = 0
        self._after = 0
        self._drop = 0
        self._drop_after = False
        self._stall = 0.0
        self._cut = False
        self.requests = 0
        self._lock = threading.Lock()

    def fail_before(self, n: int) -> None:
        with self._lock:
            self._before = n

    def fail_after(self, n: int) -> None:
        with self._lock:
            self._after = n

    def drop_next(self, n: int = 1, *, after: bool = False) -> None:
        with self._lock:
            self._drop, self._drop_after = n, after

    def stall_next(self, seconds: float) -> None:
        with self._lock:
            self._stall = seconds

    def cut_next_body(self) -> None:
        """The next answer promises its whole body (Content-Length) but half of it comes."""
        with self._lock:
            self._cut = True

    def reset(self) -> None:
        """No faults from now on, on any request."""
        with self._lock:
            self._before = self._after = self._drop = 0
            self._stall, self._cut, self.only = 0.0, False, None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        with self._lock:
            self.requests += 1
            if self.only is not None and not self.only(method, environ["PATH_INFO"]):
                before = after = drop = cut = False
                stall = 0.0
            else:
                before = self._before > 0
                after = not before and self._after > 0
                drop = not before and not after and self._drop > 0
                self._before -= before
                self._after -= after
                self._drop -= drop
                stall, self._stall = self._stall, 0.0
                cut, self._cut = self._cut, False
        conditional = {"HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH"} & environ.keys()
        if conditional and (self.conditions == "ignore" or (
                self.conditions == "ignore-on-delete" and method == "DELETE")):
            for name in conditional:
                del environ[name]
        if before:
            return _error(start_response, "500 Internal Server Error", b"InternalError")
        if conditional and self.conditions == "reject":
            return _error(start_response, "501 Not Implemented", b"NotImplemented")
        if after or (drop and self._drop_after):
            body = b"".join(self._app(environ, lambda *args, **kwargs: None))
            del body  # moto did the work; the client hears otherwise
            if after:
                return _error(start_response, "500 Internal Server Error", b"InternalError")
        if drop:
            environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError("dropped by the test")  # werkzeug lets it go quietly
        if cut:
            body = b"".join(self._app(environ, start_response))
            return [body[: len(body) // 2]]  # the server then closes the connection
        if self.answered is None and not stall:
            return self._app(environ, start_response)
        status: list[str] = []

        def record(code: str, *args: Any, **kwargs: Any) -> Any:
            status.append(code)
            return start_response(code, *args, **kwargs)

        body = b"".join(self._app(environ, record))
        time.sleep(stall)
        if self.answered is not None:
            self.answered(method, environ["PATH_INFO"], status[0])
        return [body]


def _error(start_response: Callable[..., Any], status: str, code: bytes) -> Iterator[bytes]:
    body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code + b"</Code>"
            b"<Message>injected by the test</Message></Error>")
    start_response(status,
                   [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    yield body
