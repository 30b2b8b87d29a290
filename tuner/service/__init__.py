"""``tuner serve``: a read-only dashboard and JSON API over the store.

The top layer: it reads the store (opened read-only, tuner.service.db), and uses
deploy, search and hardware helpers; nothing below imports it. FastAPI, uvicorn and
plotly load only when the app is built (``tuner.service.app.create_app``), so
importing this package, and every other CLI command, stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "open_readonly"]

if TYPE_CHECKING:
    from tuner.service.app import create_app
    from tuner.service.db import open_readonly


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tuner.service.app import create_app

        return create_app
    if name == "open_readonly":
        from tuner.service.db import open_readonly

        return open_readonly
    raise AttributeError(f"module 'tuner.service' has no attribute {name!r}")
