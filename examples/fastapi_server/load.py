"""A bounded load run against the example server on loopback: request latency as a
client sees it (HTTP + JSON + inference), one keep-alive connection per client.

    python examples/fastapi_server/load.py --port 8000 --requests 300 --concurrency 1

Prints p50/p90/p99 request latency, the server's own inference time and requests per
second; --json for scripts. Only 127.0.0.1 is allowed: this is a measurement tool,
not a load generator for other people's servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

QUERIES = [
    "How do I reset my password?",
    "The quarterly report shows revenue grew faster than expected in Europe.",
    "Which trains run from Lyon to Geneva on Sunday mornings?",
    "A transformer encoder maps each token to a contextual vector.",
    "Please send the signed contract back by Friday.",
    "Is it going to rain tomorrow afternoon?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def client(port: int, count: int, offset: int, out: list[tuple[float, float]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for i in range(count):
            query = urllib.parse.quote(QUERIES[(offset + i) % len(QUERIES)])
            started = time.perf_counter()
            conn.request("GET", f"/predict?query={query}")
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            out.append((elapsed, json.loads(body)["inference_ms"]))
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--requests", type=int, default=300, help="total requests (at most 10000)")
    parser.add_argument("--concurrency", type=int, default=1, help="clients at once (at most 16)")
    parser.add_argument("--warmup", type=int, default=20, help="requests sent first and not counted")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10000 or not 1 <= args.concurrency <= 16:
        parser.error("--requests must be 1..10000 and --concurrency 1..16 (a bounded run)")
    client(args.port, args.warmup, 0, [])
    results: list[tuple[float, float]] = []
    per_client = [args.requests // args.concurrency + (i < args.requests % args.concurrency)
                  for i in range(args.concurrency)]
    threads = [threading.Thread(target=client, args=(args.port, n, i * 7, results)) for i, n in enumerate(per_client)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if len(results) != args.requests:
        print(f"only {len(results)} of {args.requests} requests succeeded", file=sys.stderr)
        return 1
    latency = [r for r, _ in results]
    inference = [i for _, i in results]
    summary = {
        "requests": len(results), "concurrency": args.concurrency,
        "p50_ms": percentile(latency, 50), "p90_ms": percentile(latency, 90), "p99_ms": percentile(latency, 99),
        "mean_ms": statistics.fmean(latency), "inference_p50_ms": percentile(inference, 50),
        "requests_per_s": len(results) / wall,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['requests']} requests, {args.concurrency} client(s): request latency p50 "
              f"{summary['p50_ms']:.2f} ms, p90 {summary['p90_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms; "
              f"inference p50 {summary['inference_p50_ms']:.2f} ms; {summary['requests_per_s']:.1f} requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
