"""``tuner serve``: a read-only dashboard and JSON API over the store (docs/dashboard.md,
docs/api.md). Loopback by default; any other address needs a token."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.cli.common import add_db_argument, int_between
from tuner.errors import UserError

DEFAULT_PORT = 8765


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="a read-only dashboard and JSON API of the trial history", description=__doc__
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any non-loopback address needs --token-file)",
    )
    p.add_argument(
        "--port",
        type=int_between(0, 65535),
        default=DEFAULT_PORT,
        help=f"TCP port, 0-65535 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="F",
        help="a file holding the token every request must present (Authorization: Bearer, or "
        "?token= once in a browser)",
    )
    add_db_argument(p)
    p.set_defaults(func=run)


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the token file {path} ({getattr(exc, 'strerror', None) or exc})") from None
    if len(token) < 16:
        raise UserError(
            f"the token in {path} is too short ({len(token)} characters); use at least 16, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > F`"
        )
    return token


def run(args: argparse.Namespace) -> int:
    from tuner.service.security import is_loopback

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port number (0-65535)")
    loopback = is_loopback(args.host)
    token = read_token(args.token_file) if args.token_file is not None else None
    if not loopback and token is None:
        raise UserError(
            f"--host {args.host} is not a loopback address: anyone who can reach it would read the "
            "database; pass --token-file F (a secret every request must present) or bind 127.0.0.1"
        )
    try:
        import uvicorn

        from tuner.service.app import create_app
    except ImportError as exc:
        raise UserError(f"tuner serve needs {exc.name}: pip install 'tuner[serve]'") from None
    from tuner.service.db import open_readonly

    store = open_readonly(args.db)
    try:
        app = create_app(store, token=token, loopback_only=token is None)
        config = uvicorn.Config(
            app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False
        )
        server = uvicorn.Server(config)
        _announce(server, args.host, store.where, token is not None)
        server.run()
    finally:
        store.close()
    return 0


def _announce(server: Any, host: str, where: str, with_token: bool) -> None:
    """Print the address once uvicorn has bound (the real port when --port 0)."""
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        port = None
        for s in getattr(server, "servers", []):
            for sock in s.sockets:
                port = sock.getsockname()[1]
                break
        shown = f"[{host}]" if ":" in host else host
        note = " (open it once with ?token=<token>)" if with_token else ""
        print(f"tuner serve: {where} read-only on http://{shown}:{port}/{note}", flush=True)

    server.startup = startup
