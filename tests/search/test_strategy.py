"""The search strategies on this machine's real space."""

from __future__ import annotations

import optuna
import pytest

from tuner.hardware import detect
from tuner.search.strategy import STRATEGIES, make_sampler, warm_start
from tuner.space import load_space


@pytest.fixture(scope="module")
def space():
    return load_space(detect())


def test_warm_start_is_the_default_then_each_backend_at_each_precision(space):
    configs = warm_start(space)
    assert configs[0] == space.default_config()
    assert len({str(sorted(c.items())) for c in configs}) == len(configs)  # no repeats
    for backend in space.backends:
        precision = next((d for d in space.dimensions(backend) if d.name == "precision"), None)
        wanted = set(precision.values()) if precision else {None}
        assert {c.get("precision") for c in configs if c["backend"] == backend} == wanted
    for config in configs:
        space.validate(config)  # every one is a real point of the space
        params = space.params_for(config)
        assert params["backend"] == config["backend"]


def test_every_strategy_samples_valid_configurations(space):
    for strategy in STRATEGIES:
        study = optuna.create_study(sampler=make_sampler(strategy, seed=1, trials=10, warm_start_size=3))
        for _ in range(5):
            trial = study.ask()
            config = space.sample(trial)
            space.validate(config)
            study.tell(trial, 1.0)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_sampler("grid", seed=1)
