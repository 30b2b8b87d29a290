"""The FastAPI application: the JSON API, the pages, their assets, and the errors.

Every route is a GET; nothing here writes, runs a command or opens a file other than
the package's own assets (tuner/service/static and Plotly's bundled plotly.min.js).
Errors are JSON for the API (``{"error": ..., "status": ...}``) and a short page for
the pages; never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tuner.service.db import ReadOnlyStore

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("tuner.service")


def plotly_js() -> Path:
    """plotly.min.js as the plotly Python package ships it (no CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed; pip install 'tuner[serve]'")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


def create_app(store: "ReadOnlyStore", token: str | None = None, loopback_only: bool = True) -> "FastAPI":
    """The dashboard over ``store``; ``token``: required of every request when given."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    from tuner._version import __version__
    from tuner.errors import StoreError
    from tuner.service import api, pages
    from tuner.service.security import Guard
    from tuner.service.service import NotFound, Service

    app = FastAPI(
        title="tuner",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Read-only JSON API over the tuner's store: machines, models, studies, trials, winners, "
        "replays, Pareto fronts. Field by field: docs/api.md.",
    )
    app.state.service = Service(store)
    app.include_router(api.router)
    app.include_router(pages.router)

    assets = {path.name: path for path in STATIC.iterdir() if path.is_file()}
    assets["plotly.min.js"] = plotly_js()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        path = assets.get(name)
        if path is None:
            raise NotFound(f"no asset {name!r}")
        return FileResponse(path, headers={"cache-control": "public, max-age=3600"})

    def error(request: Request, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            body: dict[str, Any] = {"error": message, "status": status}
            if detail is not None:
                body["detail"] = detail
            return JSONResponse(body, status_code=status)
        return HTMLResponse(pages.error_page(status, message), status_code=status)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error(request, 404, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            message = f"no such page or endpoint: {request.url.path}"
        response = error(request, exc.status_code, message)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(d['loc'][1:]) or d['loc'][0]}: {d['msg']}" for d in detail)
        return error(request, 422, f"invalid parameters: {where}", detail)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> Response:
        return error(request, 503, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.exception("error serving %s", request.url.path)
        return error(request, 500, f"internal error ({type(exc).__name__}); see the server's log")

    app.add_middleware(Guard, token=token, loopback_only=loopback_only)
    return app
