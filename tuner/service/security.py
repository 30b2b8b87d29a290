"""Who may read the dashboard, and the headers every response carries.

- With a token (``--token-file``), every request presents it: an
  ``Authorization: Bearer <token>`` header, or the ``tuner_token`` cookie that a
  first visit with ``?token=<token>`` sets (the URL is then redirected without the
  token, so it does not stay in the address bar or the history). Compared in
  constant time (``hmac.compare_digest``).
- Without a token the server is on loopback only (the CLI refuses other hosts), and
  requests must name a loopback host in their Host header (localhost, 127.0.0.0/8,
  [::1]): a web page elsewhere cannot reach the dashboard through DNS rebinding.
- A Content-Security-Policy on every response: scripts and styles from this server
  only (Plotly sets inline styles, hence ``'unsafe-inline'`` for styles alone), no
  frames, no plug-ins, requests to this server only. No CORS headers are ever sent,
  so other origins cannot read the API from a browser.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "tuner_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback ranges (127.0.0.0/8, ::1)."""
    import ipaddress

    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_matches(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8765
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: the token or loopback check, then the security headers."""

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if self.loopback_only and not is_loopback(_host_name(headers.get("host", "")).lower()):
            await _json(
                send_with_headers,
                403,
                "this dashboard answers on loopback names only (localhost, "
                "127.0.0.1, [::1]); serve with --host and --token-file to reach it from elsewhere",
            )
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given_query = next((v for k, v in query if k == "token"), None)
            if given_query is not None:
                if not token_matches(given_query, self.token):
                    await _json(send_with_headers, 401, "wrong token", challenge=True)
                    return
                # Set the cookie once and drop the token from the URL.
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                # One leading slash: "//host/..." would send the browser to another host.
                path = b"/" + (scope.get("raw_path") or scope["path"].encode("utf-8")).lstrip(b"/")
                location = path + (b"?" + rest.encode("latin-1") if rest else b"")
                await _redirect(send_with_headers, location, self.token)
                return
            if not (
                token_matches(_bearer(headers.get("authorization")), self.token)
                or token_matches(_cookie(headers.get("cookie"), COOKIE), self.token)
            ):
                await _json(
                    send_with_headers,
                    401,
                    "this dashboard needs its token: send `Authorization: Bearer "
                    "<token>`, or open any page once with ?token=<token>",
                    challenge=True,
                )
                return
        await self.app(scope, receive, send_with_headers)


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(value: str | None, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    if not value:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(value)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def _json(send: Send, status: int, message: str, challenge: bool = False) -> None:
    import json

    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b'Bearer realm="tuner"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: bytes, token: str) -> None:
    from http.cookies import SimpleCookie

    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = token
    jar[COOKIE]["httponly"] = True
    jar[COOKIE]["samesite"] = "Strict"
    jar[COOKIE]["path"] = "/"
    cookie = jar[COOKIE].OutputString()
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location),
                (b"set-cookie", cookie.encode("latin-1", "replace")),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
