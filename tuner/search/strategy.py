"""Search strategies: how a study picks the next configuration (docs/search.md).

- ``random``: Optuna's RandomSampler; the floor any strategy must beat.
- ``tpe``: Optuna's TPE as the vertical slice used it (independent per dimension,
  a random start of a third of the trial budget, at most 10).
- ``structured`` (the default): the space's structure first, then TPE. The
  configurations differ most by backend and precision (several times), then by
  threads (up to the core count), then by the rest (a few percent), so the study
  starts with each backend at each precision, everything else at the file's
  defaults, instead of random points (the warm start). Then a local search: the
  one-choice changes of the best configurations measured so far (their
  *neighbours*), and once a configuration's neighbours are measured, every change
  that beat it applied at once (the knobs of one backend add up nearly
  independently). When no best configuration has an unmeasured neighbour left, TPE,
  multivariate and grouped by the space's conditional structure (``group=True``: the
  backend decides which dimensions exist), spends the rest of the budget. The warm
  start replaces TPE's random start rather than adding to it.
  benchmarks/search_efficiency.py compares the three on measured grids.
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
# The local search explores around this many of the best configurations measured:
# on a noisy machine the best observed is often only lucky, the true optimum's
# neighbourhood among the next few.
LOCAL_CENTRES = 5


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


def _default(dim: Any) -> Any:
    return dim.default if dim.allows(dim.default) else dim.values()[0]


def complete(space: "Space", wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted``'s values on the dimensions that are active given them; a dimension
    a change activates (numa_memory once binding is numactl, say) takes its default."""
    backend = wanted["backend"]
    config: dict[str, Any] = {"backend": backend}
    for dim in space.dimensions(backend):
        if dim.active(config):
            value = wanted.get(dim.name, _default(dim))
            config[dim.name] = value if dim.allows(value) else _default(dim)
    return config


def neighbours(space: "Space", config: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(dimension, value, configuration) for every change of one active dimension of
    ``config``'s backend, in the space's dimension order (the recipe first: precision,
    graph, quantization; then session and runtime knobs)."""
    out = []
    for dim in space.dimensions(config["backend"]):
        if dim.name not in config:
            continue
        for value in dim.values():
            if value != config[dim.name]:
                out.append((dim.name, value, complete(space, {**config, dim.name: value})))
    return out


def change_effects(measured: list[tuple[dict[str, Any], str, float | None]],
                   better: Any) -> dict[tuple[str, Any], tuple[bool, float]]:
    """What each one-choice change did wherever the study measured both sides of it:
    (dimension, new value) -> (it only ever fell below the accuracy guard, the mean
    of log(after / before) over the passing configurations it was applied to; +inf
    for a change that made one fail or be pruned as clearly slower). The knobs of a
    backend add up nearly independently, so a change that helped (or hurt) one
    configuration is likely to do so elsewhere; accuracy is kept apart because it
    does not add up (7-bit weights pass unfused, fail fused)."""
    import math

    sign = 1.0 if better(0.0, 1.0) else -1.0  # lower is better: log ratios as measured
    seen: dict[tuple[str, Any], list[tuple[bool, float]]] = {}
    passing = [(c, v) for c, status, v in measured if status == "ok" and v]
    for before, before_value in passing:
        for after, status, after_value in measured:
            if after.get("backend") != before["backend"] or set(after) != set(before):
                continue
            changed = [k for k in after if k != "backend" and after[k] != before[k]]
            if len(changed) != 1:
                continue
            timed = status in ("ok", "rejected") and after_value
            ratio = sign * math.log(after_value / before_value) if timed else math.inf
            seen.setdefault((changed[0], after[changed[0]]), []).append((status == "rejected", ratio))
    return {change: (all(r for r, _ in runs), sum(x for _, x in runs) / len(runs)) for change, runs in seen.items()}


def next_local(space: "Space", centres: list[tuple[dict[str, Any], float]],
               measured: list[tuple[dict[str, Any], str, float | None]], key: Any, better: Any) -> dict[str, Any] | None:
    """The local search's next configuration, or None when it has nothing left.

    ``centres``: the best passing (configuration, value) so far, best first;
    ``measured``: (configuration, status, value) of everything measured; ``key``: the
    config key function; ``better(a, b)``: a beats b. For each centre in turn: an
    unmeasured neighbour, the changes that helped elsewhere first, those never tried
    next, those that hurt or broke a configuration last (change_effects); once all are
    measured, the centre with every change that beat it applied together (per
    dimension the best value)."""
    done = {key(config): (status, value) for config, status, value in measured}
    effects = change_effects(measured, better)
    for centre, centre_value in centres[:LOCAL_CENTRES]:
        changes: dict[str, tuple[Any, float]] = {}
        fresh = []
        for dim, value, config in neighbours(space, centre):
            found = done.get(key(config))
            if found is None:
                fresh.append((*effects.get((dim, value), (False, 0.0)), len(fresh), config))
                continue
            status, measured_value = found
            if status == "ok" and measured_value is not None and better(measured_value, centre_value):
                if dim not in changes or better(measured_value, changes[dim][1]):
                    changes[dim] = (value, measured_value)
        fresh.sort(key=lambda f: f[:3])
        # Changes that helped elsewhere or were never tried, then every change that
        # beat this centre at once, then the changes known to hurt or break.
        if fresh and not fresh[0][0] and fresh[0][1] <= 0.0:
            return fresh[0][3]
        if len(changes) >= 2:
            combined = complete(space, {**centre, **{dim: value for dim, (value, _) in changes.items()}})
            if key(combined) not in done:
                return combined
        if fresh:
            return fresh[0][3]
    return None


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
