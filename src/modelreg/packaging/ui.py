"""``modelreg ui``: a web UI over the store, with the same policy as the command line.

Pages (server-rendered with Jinja2; no JavaScript library, no CDN: the one small script and
the stylesheet ship in ``templates/ui/``):

- ``/``: the models, with the version in each stage;
- ``/models/NAME``: its versions with stage, aliases and metrics side by side (sortable), and
  a chart of one metric across versions (drawn as SVG on the server);
- ``/models/NAME/N``: a version's lineage, signature, files, checks and approvals, the
  model's history as a timeline, and forms to approve, promote, archive and roll back;
- ``/diff?a=REF&b=REF``: two versions compared.

Changes go through the registry's verbs (``registry.operations``), the ones the command line
uses, as the person running the UI (the configured actor), so the store's policy applies
exactly as on the command line; a refusal shows its reasons on
the page and changes nothing. Every form carries a CSRF token (an HMAC of the form's path
under a secret made at start-up), and a POST from another origin is refused. Pages poll
``/api/state`` and reload when the store changed, so a promotion made from the CLI shows
without a manual reload. The server binds to loopback; another address needs
``allow_remote`` and a token, which the browser presents once (``?token=``) and then keeps
in a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelregError, NotFound, PolicyDenied, UsageError
from modelreg.packaging.serving import LOOPBACK, bind

if TYPE_CHECKING:
    from modelreg.registry.core import Registry

__all__ = ["UiOptions", "build_app", "run_ui"]

_VERSION_LIMIT = 500
"""The newest versions a model page shows."""


@dataclass(frozen=True)
class UiOptions:
    """How ``modelreg ui`` runs."""

    host: str = "127.0.0.1"
    port: int = 8080
    allow_remote: bool = False
    token: str | None = None
    poll_ms: int = 2000


def _sign(secret: bytes, what: str) -> str:
    return hmac.new(secret, what.encode(), hashlib.sha256).hexdigest()[:32]


def _chart(points: list[tuple[int, float]], width: int = 640, height: int = 180) -> str:
    """An SVG line chart of (version, value) points, as markup (no script, no library)."""
    if not points:
        return ""
    pad = 30
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    span_x = (x1 - x0) or 1
    span_y = (y1 - y0) or 1

    def at(v: int, y: float) -> tuple[float, float]:
        return (pad + (v - x0) / span_x * (width - 2 * pad),
                height - pad - (y - y0) / span_y * (height - 2 * pad))

    coords = [at(v, y) for v, y in points]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>v{v}: {val:g}</title>'
                   f'</circle>' for (x, y), (v, val) in zip(coords, points, strict=True))
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="metric across versions">'
            f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{path}"/>'
            f'{dots}<text x="{pad}" y="{height - 8}">v{x0}</text>'
            f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">v{x1}</text>'
            f'<text x="2" y="{pad}">{y1:g}</text><text x="2" y="{height - pad}">{y0:g}</text>'
            f'</svg>')


def build_app(open_registry: Callable[[], Registry], options: UiOptions) -> Any:
    """The ASGI application (starlette + Jinja2) over the store."""
    import jinja2
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from modelreg.config import resolve_actor
    from modelreg.packaging.sources import require
    from modelreg.registry import events, operations
    from modelreg.registry.diff import diff_versions
    from modelreg.registry.search import search

    require("jinja2", "ui", "modelreg ui")
    here = os.path.join(os.path.dirname(__file__), "templates", "ui")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(here),
                             autoescape=jinja2.select_autoescape(["html"]))
    secret = secrets.token_bytes(32)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        html = env.get_template(template).render(
            request=request, poll_ms=options.poll_ms, csrf=lambda path: _sign(secret, path),
            actor=_actor(), **context)
        return HTMLResponse(html, status_code=status)

    def _actor() -> str:
        try:
            return resolve_actor(None)
        except ModelregError as exc:
            return f"(no identity: {exc})"

    def guarded(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if options.token is not None:
                given = request.query_params.get("token") or request.cookies.get("ui_token")
                if not given or not hmac.compare_digest(given, options.token):
                    return HTMLResponse("a token is needed (open the URL the command printed)",
                                        status_code=401)
            try:
                response: Response = await fn(request)
            except NotFound as exc:
                response = page(request, "error.html", 404, message=str(exc))
            except ModelregError as exc:
                response = page(request, "error.html", 400, message=str(exc))
            if options.token is not None and request.query_params.get("token"):
                response.set_cookie("ui_token", options.token, httponly=True, samesite="strict")
            return response

        return endpoint

    def state_mark() -> str:
        models = open_registry().list_models()
        text = "|".join(f"{m.name}:{m.latest}:{m.updated_at}:{sorted(m.stages.items())}"
                        for m in models)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def index(request: Request) -> Response:
        return page(request, "index.html", models=open_registry().list_models())

    async def model(request: Request) -> Response:
        reg = open_registry()
        name = request.path_params["name"]
        # Newest first, each with its metrics from the version index (search's way).
        hits = search(reg, "", model=name, limit=_VERSION_LIMIT, lineage=True)
        metric_names = sorted({k for h in hits for k in h.metrics})
        chosen = request.query_params.get("metric") or (metric_names[0] if metric_names
                                                          else None)
        points = [(h.version, float(h.metrics[chosen])) for h in reversed(hits)
                  if chosen in h.metrics and isinstance(h.metrics[chosen], int | float)]
        return page(request, "model.html", name=hits[0].name if hits else name,
                    infos=hits, metric_names=metric_names, chosen=chosen,
                    chart=_chart(points))

    def version_page(request: Request, status: int = 200, **extra: Any) -> Response:
        reg = open_registry()
        ref = f"{request.path_params['name']}@{request.path_params['version']}"
        info = reg.show(ref)
        _, timeline = events.history(reg, info.name, 200)
        others = [s.version for s in reg.versions(info.name) if s.version != info.version]
        config = reg.config
        return page(request, "version.html", status, info=info, events=timeline, others=others,
                    stages=[s for s in config.stages if s != info.stage],
                    exclusive=[s for s in config.stages if config.policy(s).exclusive], **extra)

    async def version(request: Request) -> Response:
        return version_page(request)

    async def act(request: Request) -> Response:
        path = request.url.path
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://" \
                f"{request.url.netloc}":
            return HTMLResponse("cross-origin request refused", status_code=403)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), _sign(secret, path)):
            return HTMLResponse("the form's CSRF token is missing or wrong; reload the page",
                                status_code=403)
        reg = open_registry()
        name, number = request.path_params["name"], request.path_params["version"]
        ref = f"{name}@{number}"
        action = request.path_params["action"]
        reason = str(form.get("reason") or "") or None
        stage = str(form.get("stage") or "")
        try:
            actor = resolve_actor(None)
            if action == "approve":
                operations.approve(reg, ref, actor=actor, stage=stage or None, comment=reason)
            elif action == "promote":
                operations.promote(reg, ref, stage, actor=actor, reason=reason)
            elif action == "archive":
                operations.archive(reg, ref, actor=actor, reason=reason)
            elif action == "rollback":
                operations.rollback(reg, name, actor=actor, stage=stage, reason=reason)
            else:
                raise UsageError(f"unknown action {action!r}")
        except PolicyDenied as exc:
            reasons = [d.message for d in exc.reasons] or [str(exc)]
            return version_page(request, 403, refused=reasons, attempted=action)
        except ModelregError as exc:
            return version_page(request, 400, refused=[str(exc)], attempted=action)
        return RedirectResponse(f"/models/{name}/{number}?done={action}", status_code=303)

    async def diff(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            raise UsageError("compare two versions: /diff?a=NAME@N&b=NAME@M")
        reg = open_registry()
        return page(request, "diff.html", diff=diff_versions(reg.show(a), reg.show(b)))

    async def state(request: Request) -> Response:
        return JSONResponse({"mark": state_mark()})

    routes = [
        Route("/", guarded(index)),
        Route("/models/{name}", guarded(model)),
        Route("/models/{name}/{version:int}", guarded(version)),
        Route("/models/{name}/{version:int}/{action}", guarded(act), methods=["POST"]),
        Route("/diff", guarded(diff)),
        Route("/api/state", guarded(state)),
        Mount("/static", StaticFiles(directory=os.path.join(here, "static")), name="static"),
    ]
    return Starlette(routes=routes)


def run_ui(open_registry: Callable[[], Registry], options: UiOptions,
           *, started: Callable[[str], None] | None = None) -> None:
    """Serve the UI until SIGTERM or Ctrl-C.

    Raises:
        UsageError: A non-loopback host without ``allow_remote`` and a token.
        ConflictError: The port is in use.
    """
    from modelreg.packaging.sources import require

    for module in ("starlette", "uvicorn", "jinja2", "multipart"):
        require(module, "ui", "modelreg ui")
    import uvicorn

    if options.host not in LOOPBACK and not (options.allow_remote and options.token):
        raise UsageError(f"--host {options.host} would open the store's UI (and its approve "
                         "and promote buttons) to other machines: add --allow-remote and "
                         "--token SECRET")
    open_registry()  # a missing store fails here, before the port is taken
    sock = bind(options.host, options.port)
    app = build_app(open_registry, options)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if started is not None:
                host = f"[{options.host}]" if ":" in options.host else options.host
                url = f"http://{host}:{sock.getsockname()[1]}/"
                started(url + (f"?token={options.token}" if options.token else ""))

    server = Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                   lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
