"""onnxruntime_openvino: ONNX Runtime's OpenVINO execution provider, which lives in its
own environment (`tuner env create onnxruntime-openvino`, 1.4 GB). What can be
checked here is checked here; what needs the provider runs in the environment the user
built in the default cache folder (or ``$TUNER_TEST_ENVS_DIR``), as the ipex tests do,
and is skipped with the command to run where there is none."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from env_helpers import ready_env

from tuner.artifacts.cache import ArtifactCache
from tuner.backends import get_backend, unavailable_reason
from tuner.envs import env_for_backend, env_state
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, eval_inputs, make_inputs, resolve_model

EP = get_backend("onnxruntime_openvino")
ORT = get_backend("onnxruntime")
TORCH = get_backend("torch")


@pytest.fixture
def env_python(monkeypatch: pytest.MonkeyPatch) -> str:
    return str(ready_env("onnxruntime_openvino", monkeypatch).python)


def test_graphs_are_the_onnxruntime_recipes() -> None:
    fp32, int8 = EP.recipe({"precision": "fp32", "threads": 1}), EP.recipe({"precision": "int8", "threads": 1})
    assert fp32 == ORT.recipe({"precision": "fp32", "graph": "unfused"})
    assert int8 == ORT.recipe({"precision": "int8", "quantization": "static", "graph": "unfused",
                               "quant_granularity": "per_channel", "ffn_down": "fp32"})
    assert EP.provider_options({"precision": "int8", "threads": 2}) == {
        "device_type": "CPU", "precision": "FP32", "num_of_threads": "2", "num_streams": "1"}
    with pytest.raises(UnsupportedConfigError, match="onnxruntime_openvino cannot run precision='bf16'"):
        EP.recipe({"precision": "bf16", "threads": 1})


def test_it_refuses_an_onnxruntime_without_the_provider(tiny_bert_dir: Path, artifact_cache: ArtifactCache) -> None:
    import onnxruntime as ort

    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this interpreter's onnxruntime has the OpenVINO provider")
    ref = resolve_model(str(tiny_bert_dir))
    # Without the check, ONNX Runtime would run the CPU provider under this backend's name.
    with pytest.raises(UnsupportedConfigError, match="has no OpenVINOExecutionProvider; run `tuner env create"):
        EP.load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)


def test_pruned_until_its_environment_is_ready() -> None:
    decl = env_for_backend("onnxruntime_openvino")
    assert decl is not None
    reason = unavailable_reason("onnxruntime_openvino")
    if env_state(decl).status == "ready":
        assert reason is None
    else:
        assert reason is not None and "tuner env create onnxruntime-openvino" in reason


_IN_ENV = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort
    from pathlib import Path
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends import get_backend
    from tuner.model import ModelRef

    args = json.loads(sys.argv[1])
    ref = ModelRef(**args["model"])
    cache = ArtifactCache(Path(args["cache"]))
    backend = get_backend("onnxruntime_openvino")
    inputs = dict(np.load(args["inputs"]))
    batches = [{k.split("/", 1)[1]: v for k, v in inputs.items() if k.startswith(f"{i}/")} for i in range(args["n"])]
    out = {"version": ort.__version__}
    for precision in ("fp32", "int8"):
        predictor = backend.load(ref, {"precision": precision, "threads": 2}, cache)
        out[precision + "/providers"] = predictor.session.get_providers()
        out[precision + "/ops"] = sorted({n.op_type for n in __import__("onnx").load(
            str(Path(cache.path(backend.prepare(ref, {"precision": precision, "threads": 2}, cache))) / "model.onnx"),
            load_external_data=False).graph.node})
        for i, batch in enumerate(batches):
            np.save(f"{args['out']}/{precision}-{i}.npy", predictor.to_numpy(predictor.run(predictor.bind(batch))))
    print(json.dumps(out))
""")


def test_runs_in_its_environment_close_to_torch(env_python: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    python = env_python
    ref = resolve_model(str(tiny_bert_dir))
    batches = [*eval_inputs(ref, DEFAULT_EVAL_TEXTS[:4], 24), make_inputs(ref, 40, batch=2)]
    np.savez(tmp_path / "inputs.npz", **{f"{i}/{k}": v for i, b in enumerate(batches) for k, v in b.items()})
    args = {"model": {"model_id": ref.model_id, "path": ref.path, "content_hash": ref.content_hash, "task": ref.task},
            "cache": str(tmp_path / "artifacts"), "inputs": str(tmp_path / "inputs.npz"), "n": len(batches),
            "out": str(tmp_path)}
    done = subprocess.run([python, "-c", _IN_ENV, json.dumps(args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for precision in ("fp32", "int8"):
        assert report[precision + "/providers"][0] == "OpenVINOExecutionProvider"
    assert "QuantizeLinear" in report["int8/ops"] and "QuantizeLinear" not in report["fp32/ops"]

    torch = TORCH.load(ref, {"precision": "fp32", "threads": 1}, ArtifactCache(tmp_path / "main"))
    cosines = []
    for i, batch in enumerate(batches):
        want = torch.to_numpy(torch.run(torch.bind(batch)))
        fp32, int8 = np.load(tmp_path / f"fp32-{i}.npy"), np.load(tmp_path / f"int8-{i}.npy")
        assert fp32.shape == want.shape == int8.shape
        np.testing.assert_allclose(fp32, want, atol=1e-4)
        mask = batch["attention_mask"][..., None]
        pw, pg = (want * mask).sum(1).ravel(), (int8 * mask).sum(1).ravel()
        cosines.append(float(pw @ pg / np.linalg.norm(pw) / np.linalg.norm(pg)))
        assert np.abs(int8 - want).max() > 1e-4  # really quantized
    assert min(cosines) > 0.95


@pytest.mark.slow
def test_a_trial_runs_with_the_environments_interpreter(env_python: str, tiny_bert_dir: Path) -> None:
    """The whole path: `tuner measure` starts the worker with the environment's python."""
    done = subprocess.run(
        [sys.executable, "-m", "tuner", "measure", "--model", str(tiny_bert_dir), "--seq-len", "16",
         "--min-time", "0.2", "--wait", "--json", "--set", "backend=onnxruntime_openvino", "--set", "precision=int8",
         "--set", "threads=1"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["status"] == "ok" and result["stats"]["median"] > 0
    assert result["accuracy"]["cosine_min"] > 0.95
