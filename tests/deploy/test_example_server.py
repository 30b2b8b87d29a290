"""The example server of examples/fastapi_server, started with `tuner launch` on
loopback, answering /predict, and measured by its bounded load script."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_server"
WINNER = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "taskset", "numa_node": 0,
          "core_order": "first", "allocator": "jemalloc", "malloc_conf": "tuned", "openmp": "gnu",
          "omp_proc_bind": "unset", "omp_places": "unset", "omp_wait_policy": "passive"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def test_server_under_launch_answers_and_is_measured(tiny_bert_dir, deploy_env, store_winner):
    db = store_winner(tiny_bert_dir, WINNER)
    port = free_port()
    env = {**deploy_env, "TUNER_EXAMPLE_MODEL": str(tiny_bert_dir)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tuner", "launch", "--model", str(tiny_bert_dir), "--db", db, "--",
         sys.executable, "-m", "uvicorn", "server:app", "--app-dir", str(EXAMPLE), "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = get(port, "/health")
                break
            except OSError:
                time.sleep(0.5)
        assert health is not None, server.stdout.read() if server.poll() is not None else "server did not start"
        assert health["pid"] == server.pid  # launch exec'd into uvicorn
        assert health["config"] == WINNER and health["runtime_differences"] == []
        assert len(health["cpus"]) == 1
        answer = get(port, "/predict?query=where%20is%20the%20station")
        assert answer["dim"] == 32 and len(answer["embedding"]) == 32 and answer["inference_ms"] > 0
        load = subprocess.run([sys.executable, str(EXAMPLE / "load.py"), "--port", str(port), "--requests", "30",
                               "--warmup", "5", "--json"], capture_output=True, text=True, timeout=120, check=True)
        figures = json.loads(load.stdout)
        assert figures["requests"] == 30
        assert 0 < figures["inference_p50_ms"] <= figures["p50_ms"] <= figures["p99_ms"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_load_script_refuses_an_unbounded_run():
    proc = subprocess.run([sys.executable, str(EXAMPLE / "load.py"), "--requests", "1000000"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "bounded run" in proc.stderr
