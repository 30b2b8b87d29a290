"""Search strategies: how a study picks the next configuration (docs/search.md).

- ``random``: Optuna's RandomSampler; the floor any strategy must beat.
- ``tpe``: Optuna's TPE as the vertical slice used it (independent per dimension,
  a random start of a third of the trial budget, at most 10).
- ``structured`` (the default): the space's structure first, then TPE. The
  configurations differ most by backend and precision (several times), then by
  threads (up to the core count), then by the rest (a few percent), so the study
  starts with each backend at each precision, everything else at the file's
  defaults, instead of random points; TPE, multivariate and grouped by the space's
  conditional structure (``group=True``: the backend decides which dimensions
  exist), then spends the remaining trials where the warm start says the optimum is. The warm start replaces
  TPE's random start rather than adding to it. benchmarks/search_efficiency.py
  compares the three on a measured grid.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from tuner.space import Space

STRATEGIES = ("structured", "tpe", "random")
DEFAULT_STRATEGY = "structured"
# TPE needs a few observations beyond the warm start to model the good region.
_STRUCTURED_MIN_STARTUP = 4


def warm_start(space: "Space") -> list[dict[str, Any]]:
    """The stock default; then every backend at its defaults; then every other
    precision of each backend. Everything else stays at the file's defaults (threads:
    every physical core), so each of these trials differs from another in one choice."""
    def at_defaults(backend: str, precision: Any | None) -> dict[str, Any]:
        config: dict[str, Any] = {"backend": backend}
        for dim in space.dimensions(backend):
            if not dim.active(config):
                continue
            if dim.name == "precision" and precision is not None:
                config[dim.name] = precision
            else:
                config[dim.name] = dim.default if dim.allows(dim.default) else dim.values()[0]
        return config

    configs: list[dict[str, Any]] = [space.default_config()]
    later: list[dict[str, Any]] = []
    for backend in space.backends:
        configs.append(at_defaults(backend, None))
        precision = next((d for d in space.dimensions(backend) if d.name == "precision"), None)
        later += [at_defaults(backend, value) for value in (precision.values() if precision else ())]
    unique: list[dict[str, Any]] = []
    for config in configs + later:
        if config not in unique:
            unique.append(config)
    return unique


def make_sampler(
    strategy: str, seed: int | None, trials: int | None = None, warm_start_size: int = 0,
) -> "optuna.samplers.BaseSampler":
    import optuna

    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy not in ("tpe", "structured"):
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    with warnings.catch_warnings():
        # group= and multivariate= are "experimental" in Optuna; they are what a
        # conditional space needs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if strategy == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, (trials or 30) // 3)))
        return optuna.samplers.TPESampler(
            seed=seed, group=True, multivariate=True,
            n_startup_trials=max(_STRUCTURED_MIN_STARTUP, warm_start_size),
        )
