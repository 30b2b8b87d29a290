"""Sampling with a real Optuna study, enqueueing known configs, and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from tuner.errors import UserError
from tuner.hardware import detect
from tuner.space import Space, load_space

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _score(config: dict[str, Any]) -> float:
    # Something for the sampler to chase that depends on every kind of key.
    return float(config["threads"] + (config["precision"] == "int8") * 3 + (config["backend"] == "onnxruntime")
            + (config.get("reduce_range") is True) + (config["binding"] == "numactl") * 0.5)


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=3), optuna.samplers.TPESampler(seed=3)])
def test_sample_gives_valid_configs(sampler: optuna.samplers.BaseSampler) -> None:
    space = load_space(detect(str(FIXTURES / "sapphire_rapids")), backends=["torch", "onnxruntime"])
    configs: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        config = space.sample(trial)
        assert space.validate(config) == config
        configs.append(config)
        return _score(config)

    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(objective, n_trials=120)
    assert {c["backend"] for c in configs} == set(space.backends) == {"torch", "onnxruntime"}
    assert {c["precision"] for c in configs if c["backend"] == "torch"} >= {"fp32", "int8"}
    assert any("quant_granularity" in c for c in configs)
    for trial, config in zip(study.trials, configs):
        # Namespaced per backend: the two precision dimensions have different choices.
        backend = config["backend"]
        assert trial.params["backend"] == backend
        assert trial.params[f"{backend}.precision"] == config["precision"]
        assert trial.params["threads"] == config["threads"]
        assert not any(p.startswith("onnxruntime." if backend == "torch" else "torch.") for p in trial.params)


def test_params_for_round_trips_through_enqueue() -> None:
    space = load_space(detect())
    every = list(space.configs())
    # A spread of a few hundred points: the grid has thousands (runtime knobs), and
    # Optuna's cost grows with the square of the trials.
    configs = every[:: max(1, len(every) // 300)] + [every[-1]]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for config in configs:
        study.enqueue_trial(space.params_for(config))
    sampled: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        sampled.append(space.sample(trial))
        return 0.0

    study.optimize(objective, n_trials=len(configs))
    assert sampled == configs


def test_default_enqueued_first() -> None:
    space = load_space(detect())
    study = optuna.create_study()
    study.enqueue_trial(space.params_for(space.default_config()))
    study.optimize(lambda trial: float(space.sample(trial)["threads"]), n_trials=1)
    assert study.trials[0].params == space.params_for(space.default_config())


@pytest.fixture(scope="module")
def clx() -> Space:
    return load_space(detect(str(FIXTURES / "cascade_lake_2s")), backends=["torch", "onnxruntime"])


ORT_INT8 = {"backend": "onnxruntime", "precision": "int8", "quantization": "dynamic", "graph": "fused",
            "quant_granularity": "per_channel", "graph_opt_level": "all", "inter_op_threads": 1, "intra_op_spinning": True,
            "reduce_range": False, "int8_kernel": "u8s8", "threads": 4, "binding": "none", "allocator": "system"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"precision": "fp16"}, 'precision="fp16" is not allowed for backend onnxruntime (allowed: fp32, int8)'),
        ({"threads": 9}, "threads=9 is not allowed for backend onnxruntime (allowed: 1..8)"),
        ({"threads": True}, "threads=true is not allowed"),
        ({"threads": "4"}, 'threads="4" is not allowed'),
        ({"reduce_range": 1}, "reduce_range=1 is not allowed for backend onnxruntime (allowed: false, true)"),
        ({"graph": None}, "graph=null is not allowed"),
        ({"backend": "tensorrt"}, 'unknown backend="tensorrt" (allowed: torch, onnxruntime)'),
        ({"omp_threads": 2}, "unknown key 'omp_threads' for backend onnxruntime"),
    ],
)
def test_validate_names_key_value_and_allowed(clx: Space, change: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as info:
        clx.validate({**ORT_INT8, **change})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_validate_gives_the_prune_reason(clx: Space) -> None:
    with pytest.raises(UserError, match=r'precision="bf16" is not allowed for backend torch on this machine: '
                                        r"no avx512_bf16 or amx_bf16 on this CPU \(allowed: fp32, int8\)"):
        clx.validate({"backend": "torch", "precision": "bf16", "threads": 2, "binding": "none"})


def test_validate_conditions(clx: Space) -> None:
    fp32 = {**ORT_INT8, "precision": "fp32"}
    with pytest.raises(UserError, match="quantization does not apply to backend onnxruntime unless "
                                        "precision = int8; remove it"):
        clx.validate(fp32)
    missing = dict(ORT_INT8)
    del missing["reduce_range"]
    with pytest.raises(UserError, match="missing 'reduce_range'"):
        clx.validate(missing)
    with pytest.raises(UserError, match="no 'backend' key"):
        clx.validate({"threads": 2})
    assert clx.validate(ORT_INT8) == ORT_INT8  # fills nothing in


def test_params_for_rejects_invalid(clx: Space) -> None:
    with pytest.raises(UserError):
        clx.params_for({"backend": "torch", "precision": "fp32"})
