"""IPEX in its own environment (`tuner env create ipex`, about 4 GB of downloads).

These tests use the environment the user built in the default cache folder (or
``$TUNER_TEST_ENVS_DIR``); where there is none they are skipped with that reason.
What always runs: outside the environment the backend says where it runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from env_helpers import ready_env

from tuner import envs
from tuner.backends import get_backend
from tuner.errors import UnsupportedConfigError
from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model


@pytest.fixture
def ipex_env(monkeypatch: pytest.MonkeyPatch) -> envs.EnvState:
    return ready_env("ipex", monkeypatch)


def test_outside_its_environment_it_says_where_it_runs(tiny_bert_dir: Path, artifact_cache) -> None:
    ref = resolve_model(str(tiny_bert_dir))
    with pytest.raises(UnsupportedConfigError, match="run in the ipex environment: `tuner env create ipex`"):
        get_backend("ipex").load(ref, {"precision": "fp32", "threads": 1}, artifact_cache)


def test_space_lists_ipex_once_built_with_its_note(ipex_env: envs.EnvState) -> None:
    from tuner.hardware import detect
    from tuner.space import load_space

    space = load_space(detect(), backends=["torch", "ipex"])
    assert "ipex" in space.backends
    assert "end-of-life" in space.notes["ipex"] and "AMD" in space.notes["ipex"]
    assert ipex_env.manifest["installed"]["torch"].startswith("2.8")
    assert ipex_env.manifest["installed"]["intel-extension-for-pytorch"].startswith("2.8")


@pytest.mark.slow
def test_ipex_trials_run_in_the_environment(ipex_env: envs.EnvState, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Whole trials, each a worker process started with the environment's python."""
    from tuner.hardware import detect
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    ref = resolve_model(str(tiny_bert_dir))
    runner = TrialRunner(ref, detect(), DEFAULT_EVAL_TEXTS[:4], cache_dir=tmp_path / "cache",
                         measure=S.MeasureSettings(warmup_calls=2, warmup_seconds=0.01, min_calls=5,
                                                   min_seconds=0.05, max_seconds=1.0, max_warmup_seconds=0.5))
    workload = S.Workload(seq_len=16)
    reference = runner.reference(workload)
    # Each worker imports torch 2.8 + IPEX (seconds): the three paths, not every combination.
    floors = [({"precision": "fp32", "graph": "eager"}, 0.9999), ({"precision": "bf16", "graph": "jit"}, 0.99),
              ({"precision": "int8"}, 0.9)]
    for recipe, floor in floors:
        config = {"backend": "ipex", **recipe, "threads": 1, "binding": "none"}
        result, _ = runner.run(workload, config, reference)
        assert result.status == S.OK, (config, result.reason, result.stderr_tail[-2000:])
        assert result.accuracy["cosine_min"] > floor, (config, result.accuracy)
        assert result.stats["median"] > 0 and result.effective["threads"] == 1
