"""`tuner serve` at fleet scale: the overview and a study's first page of trials.

    python benchmarks/serve_scale.py [--db /tmp/serve-scale.db] [--machines 100 --models 10 --trials 2000]

Builds (once; an existing file of that name is reused) a synthetic SQLite store of
machines x models x trials per study (tuner/service/synthetic.py: 2,000,000 trial
rows by default, executemany in large transactions), then serves it read-only with
a real uvicorn on 127.0.0.1 and times, over a keep-alive HTTP connection, after
one warm-up request each:

    overview page (HTML)       GET /
    overview API               GET /api/v1/overview
    study page (HTML)          GET /studies/<id>
    study's first trial page   GET /api/v1/studies/<id>/trials?limit=50
    ... filtered and sorted    GET /api/v1/studies/<id>/trials?status=ok&sort=median_ms&limit=50
    the study's plot columns   GET /api/v1/studies/<id>/series

printing the median and the slowest of ``--requests`` requests of each. The target
(issue 12) is under 200 ms for the overview and the first trial page.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

TARGET_MS = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(connection: http.client.HTTPConnection, path: str, n: int) -> tuple[list[float], int]:
    times, size = [], 0
    for i in range(n + 1):
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
        if i:  # the first request warms the caches (SQLite pages, the app's imports)
            times.append(elapsed)
        size = len(body)
    return times, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("/tmp/serve-scale.db"))
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--trials", type=int, default=2000, help="per study")
    parser.add_argument("--requests", type=int, default=15, help="timed requests per endpoint")
    parser.add_argument("--study", type=int, default=None, help="study to time (default: the middle one)")
    args = parser.parse_args()

    import uvicorn

    from tuner.service.app import create_app
    from tuner.service.db import open_readonly
    from tuner.service.synthetic import Shape, build

    if not args.db.exists():
        start = time.perf_counter()
        counts = build(args.db, Shape(machines=args.machines, models=args.models, trials=args.trials))
        print(f"built {args.db} in {time.perf_counter() - start:.0f} s: {counts}; "
              f"{args.db.stat().st_size / 2**30:.2f} GiB", flush=True)
    store = open_readonly(str(args.db))
    app = create_app(store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("GET", "/api/v1/studies?limit=1")
        response = connection.getresponse()
        total = int(__import__("json").loads(response.read())["total"])
        study = args.study or max(1, total // 2)
        paths = [
            ("overview page (HTML)", "/"),
            ("overview API", "/api/v1/overview"),
            ("study page (HTML)", f"/studies/{study}"),
            ("study's first trial page", f"/api/v1/studies/{study}/trials?limit=50"),
            ("... filtered and sorted", f"/api/v1/studies/{study}/trials?status=ok&sort=median_ms&limit=50"),
            ("the study's plot columns", f"/api/v1/studies/{study}/series"),
        ]
        print(f"{total} studies; timing study {study}, {args.requests} requests each after one warm-up "
              f"(uvicorn on 127.0.0.1, one keep-alive connection)")
        print(f"{'':28} {'median ms':>10} {'max ms':>8} {'bytes':>9}")
        worst = 0.0
        for label, path in paths:
            times, size = timed(connection, path, args.requests)
            median = statistics.median(times)
            if label.startswith(("overview", "study's first")):
                worst = max(worst, median)
            print(f"{label:28} {median:10.1f} {max(times):8.1f} {size:9d}", flush=True)
        print(f"target: overview and first trial page under {TARGET_MS:.0f} ms: "
              f"{'met' if worst < TARGET_MS else 'NOT met'} (slowest median {worst:.1f} ms)")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
