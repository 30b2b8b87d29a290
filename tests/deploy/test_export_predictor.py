"""`tuner export` and `tuner.load_best`: the winner as files, and as a predictor that
checks it was started with the winner's runtime settings."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from cli_helpers import run_tuner

from tuner.hardware.libraries import find

ORT_WINNER = {"backend": "onnxruntime", "precision": "int8", "graph": "unfused", "quant_granularity": "per_channel",
              "reduce_range": False, "threads": 1, "binding": "taskset", "numa_node": 0, "core_order": "first",
              "allocator": "jemalloc", "malloc_conf": "default"}
TORCH_WINNER = {"backend": "torch", "precision": "fp32", "threads": 1, "binding": "none", "allocator": "tcmalloc",
                "openmp": "gnu", "omp_proc_bind": "unset", "omp_places": "unset", "omp_wait_policy": "passive"}


def tuner(*args, env, timeout=300, check=True):
    return run_tuner(*args, env=env, timeout=timeout, check=check)


def reference_embedding(model_dir, text: str, seq_len: int) -> np.ndarray:
    """fp32 eager PyTorch, mean-pooled: what every backend is guarded against."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    inputs = tokenizer([text], padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"][..., None].float()
    return ((hidden * mask).sum(1) / mask.sum(1))[0].numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_export_writes_the_int8_onnx_file_config_and_run_script(tiny_bert_dir, deploy_env, store_winner, tmp_path):
    db = store_winner(tiny_bert_dir, ORT_WINNER)
    out = tmp_path / "export"
    printed = tuner("export", "--model", str(tiny_bert_dir), "--db", db, "--out", str(out), env=deploy_env).stdout
    assert "model.onnx" in printed
    onnx_file = out / "model" / "model.onnx"
    assert onnx_file.is_file() and (out / "tokenizer" / "tokenizer.json").is_file()
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for node in graph.node)  # really int8
    data = json.loads((out / "config.json").read_text())
    assert data["config"] == ORT_WINNER and data["workload"] == {"seq_len": 16, "batch": 1}
    assert data["artifact"]["recipe"]["precision"] == "int8"
    assert data["launch"]["env"]["LD_PRELOAD"] == str(find("jemalloc"))
    script = out / "run.sh"
    assert os.access(script, os.X_OK)
    code = "import os, json; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ.get('LD_PRELOAD')]))"
    cpus, preload = json.loads(subprocess.run([str(script), sys.executable, "-c", code], capture_output=True,
                                              text=True, check=True, env=deploy_env).stdout)
    assert data["launch"]["prefix"] == ["taskset", "-c", str(cpus[0])] and len(cpus) == 1
    assert preload == str(find("jemalloc"))
    again = tuner("export", "--model", str(tiny_bert_dir), "--db", db, "--out", str(out), env=deploy_env, check=False)
    assert again.returncode == 2 and "--force" in again.stderr


def test_export_of_an_eager_winner_copies_the_model_folder(tiny_bert_dir, deploy_env, store_winner, tmp_path):
    db = store_winner(tiny_bert_dir, TORCH_WINNER)
    out = tmp_path / "export"
    tuner("export", "--model", str(tiny_bert_dir), "--db", db, "--out", str(out), env=deploy_env)
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer.json").is_file()
    assert "exec env -u MALLOC_CONF" in (out / "run.sh").read_text()


def test_load_best_under_launch_has_the_winner_and_no_differences(tiny_bert_dir, deploy_env, store_winner):
    db = store_winner(tiny_bert_dir, ORT_WINNER)
    code = ("import json, sys, warnings, tuner; warnings.simplefilter('error'); "
            f"p = tuner.load_best({str(tiny_bert_dir)!r}); "
            "e = p(['a first sentence', 'and a second one']); "
            "print(json.dumps({'shape': list(e.shape), 'config': p.config, 'seq_len': p.seq_len, "
            "'differences': p.runtime_differences}))")
    # No --db for the child: under `tuner launch` the configuration comes from TUNER_CONFIG.
    out = tuner("launch", "--model", str(tiny_bert_dir), "--db", db, "--", sys.executable, "-c", code,
                env=deploy_env).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"shape": [2, 32], "config": ORT_WINNER, "seq_len": 16, "differences": []}


def test_load_best_outside_launch_warns_and_still_predicts(tiny_bert_dir, store_winner):
    import tuner
    from tuner.deploy.predictor import RuntimeSettingsWarning

    db = store_winner(tiny_bert_dir, TORCH_WINNER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict = tuner.load_best(str(tiny_bert_dir), seq_len=16, db_url=db)
    # pytest runs with glibc malloc and no OMP_WAIT_POLICY: both differences are named.
    assert any("asked for the tcmalloc allocator" in d for d in predict.runtime_differences)
    assert any(d.startswith("OMP_WAIT_POLICY: asked for 'passive'") for d in predict.runtime_differences)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeSettingsWarning)]
    assert len(messages) == 1 and "tuner launch --model" in messages[0]
    text = "The quick brown fox jumps over the lazy dog."
    embedding = predict(text)
    assert embedding.shape == (32,)
    assert cosine(embedding, reference_embedding(tiny_bert_dir, text, 16)) > 0.9999
    assert predict([text, text]).shape == (2, 32)
    with pytest.raises(ValueError):
        predict([])


def test_run_script_starts_every_instance_of_a_throughput_winner(tmp_path):
    from tuner.deploy.export import run_script
    from tuner.deploy.lookup import BestConfig

    slots = [(["taskset", "-c", "0"], {"OMP_NUM_THREADS": "1", "TUNER_INSTANCE": "0"}),
             (["taskset", "-c", "1"], {"OMP_NUM_THREADS": "1", "TUNER_INSTANCE": "1"})]
    best = BestConfig(model="m", seq_len=16, batch=1, objective="throughput", config={}, metrics={}, speedup=None,
                      default_median_ms=None, prefix=slots[0][0], env=slots[0][1], unset=["LD_PRELOAD"],
                      instances=slots)
    script = tmp_path / "run.sh"
    script.write_text(run_script(best))
    script.chmod(0o755)
    code = "import os; print(os.environ['TUNER_INSTANCE'], sorted(os.sched_getaffinity(0)))"
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("two instances need two CPUs")
    out = subprocess.run([str(script), sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "LD_PRELOAD": ""}).stdout
    assert sorted(out.splitlines()) == ["0 [0]", "1 [1]"]
