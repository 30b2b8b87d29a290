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
  *neighbours*), and once a configuration's neighbours are measured, the changes
  that beat it combined, two or more at once (the knobs of one backend add up nearly
  independently). What a configuration computes is known from its accuracy figures:
  the dimensions whose change never altered them (threads, binding: runtime knobs)
  are learned, and a configuration that differs from one below the accuracy guard
  only in those is never proposed. When the local search has nothing left, TPE,
  multivariate and grouped by the space's conditional structure (``group=True``: the
  backend decides which dimensions exist), spends the rest of the budget. The warm
  start replaces TPE's random start rather than adding to it.
  benchmarks/search_efficiency.py compares the three on measured grids.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from tuner.vocabulary import STRATEGIES, Strategy, TrialStatus, config_key

if TYPE_CHECKING:
    import optuna

    from tuner.space import Space

# TPE needs a few observations beyond the warm start to model the good region.
_STRUCTURED_MIN_STARTUP = 4
# The local search explores around this many of the best configurations measured:
# on a noisy machine the best observed is often only lucky, the true optimum's
# neighbourhood among the next few.
LOCAL_CENTRES = 5
# Combinations are formed from at most this many of a centre's best changes (2^n).
MAX_COMBINED = 5


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


class Measured(NamedTuple):
    """What the local search knows of one measured configuration."""

    config: dict[str, Any]
    status: str  # "ok", "rejected" (below the accuracy guard), or a status that timed nothing
    value: float | None  # the objective's value where timed ("ok" and "rejected")
    numerics: Hashable | None = None  # its accuracy figures: equal ones mean the same computation


def change_effects(space: "Space", measured: list[Measured], better: Any) -> dict[tuple[str, Any], float]:
    """What each one-choice change did wherever the study measured both sides of it:
    (dimension, new value) -> the mean of log(after / before) over the passing
    configurations it was applied to (a timing below the accuracy guard counts: the
    guard does not change the speed); +inf for a change that made one fail, or be
    pruned as clearly slower. A change that turns dimensions on or off (int8 -> fp32
    drops the quantization knobs) counts where the other side is exactly that
    neighbour. The knobs of a backend add up nearly independently, so a change that
    helped (or hurt) one configuration is likely to do so elsewhere."""
    seen: dict[tuple[str, Any], list[float]] = {}
    for before, dim, value, after in _measured_pairs(space, measured):
        if before.status != TrialStatus.OK or not before.value:
            continue
        timed = after.status in (TrialStatus.OK, TrialStatus.REJECTED)
        ratio = _log_ratio(after.value, before.value, better) if timed and after.value else math.inf
        seen.setdefault((dim, value), []).append(ratio)
    return {change: sum(ratios) / len(ratios) for change, ratios in seen.items()}


def _measured_pairs(space: "Space", measured: list[Measured]) -> Iterator[tuple[Measured, str, Any, Measured]]:
    """(before, dimension, new value, after) for every one-choice change the study
    measured both sides of."""
    by_key = {config_key(m.config): m for m in measured}
    for before in measured:
        for dim, value, config in neighbours(space, before.config):
            after = by_key.get(config_key(config))
            if after is not None:
                yield before, dim, value, after


def _log_ratio(after: float, before: float, better: Any) -> float:
    """log(after / before), signed so that negative means ``after`` is better."""
    return math.log(after / before) * (1.0 if better(0.0, 1.0) else -1.0)


def numerics_neutral(space: "Space", measured: list[Measured]) -> set[str]:
    """The dimensions whose change never altered a configuration's accuracy figures
    where the study measured both sides (threads, binding, allocator: runtime knobs),
    learned rather than declared: a configuration that differs from one below the
    accuracy guard only in these computes the same numbers, and fails it too."""
    same: dict[str, bool] = {}
    for before, dim, _, after in _measured_pairs(space, [m for m in measured if m.numerics is not None]):
        same[dim] = same.get(dim, True) and after.numerics == before.numerics
    return {dim for dim, always in same.items() if always}


def _fails_guard(config: dict[str, Any], rejected: list[dict[str, Any]], neutral: set[str]) -> bool:
    """Whether ``config`` differs from a configuration below the accuracy guard only
    in numerics-neutral dimensions (a dimension only one side has is switched on by
    one that differs, and judged through it)."""
    return any(
        r["backend"] == config["backend"] and all(r[k] == config[k] or k in neutral for k in config.keys() & r.keys())
        for r in rejected
    )


def next_local(
    space: "Space", centres: list[tuple[dict[str, Any], float]], measured: list[Measured], better: Any
) -> dict[str, Any] | None:
    """The local search's next configuration, or None when it has nothing left.

    ``centres``: the best passing (configuration, value) so far, best first;
    ``measured``: everything measured; ``better(a, b)``: a beats b. For each centre
    in turn: an unmeasured neighbour whose change helped elsewhere or was never tried
    (change_effects); then the combinations of two or more of its changes that beat
    it, the most promising first. Only when no centre has either: the neighbour, of
    any centre, whose change hurt least elsewhere (a change that hurt one
    configuration by noise, or through an interaction, can still help another). A
    configuration that computes what one below the accuracy guard did (it differs
    only in numerics-neutral dimensions) is never proposed."""
    done = {config_key(m.config): m for m in measured}
    effects = change_effects(space, measured, better)
    neutral = numerics_neutral(space, measured)
    rejected = [m.config for m in measured if m.status == TrialStatus.REJECTED]
    hurt: list[tuple[float, int, dict[str, Any]]] = []  # (effect elsewhere, centre rank, configuration)
    for rank, (centre, centre_value) in enumerate(centres[:LOCAL_CENTRES]):
        near: dict[
            str, tuple[float, Any]
        ] = {}  # dimension -> (log ratio, value) of its change that beat the centre most
        fresh: list[tuple[float, int, dict[str, Any]]] = []  # (effect elsewhere, order, configuration)
        for dim, value, config in neighbours(space, centre):
            found = done.get(config_key(config))
            if found is None:
                if not _fails_guard(config, rejected, neutral):
                    fresh.append((effects.get((dim, value), 0.0), len(fresh), config))
            elif found.status == TrialStatus.OK and found.value:
                ratio = _log_ratio(found.value, centre_value, better)
                if ratio < 0.0 and (dim not in near or ratio < near[dim][0]):
                    near[dim] = (ratio, value)
        fresh.sort(key=lambda f: f[:2])
        if fresh and fresh[0][0] <= 0.0:
            return fresh[0][2]
        combined = _next_combination(space, centre, near, done, rejected, neutral)
        if combined is not None:
            return combined
        hurt += [(effect, rank, config) for effect, _, config in fresh]
    return min(hurt, key=lambda h: h[:2])[2] if hurt else None


def _next_combination(
    space: "Space",
    centre: dict[str, Any],
    near: dict[str, tuple[float, Any]],
    done: dict[str, Measured],
    rejected: list[dict[str, Any]],
    neutral: set[str],
) -> dict[str, Any] | None:
    """The unmeasured combination of two or more of ``near``'s changes with the lowest
    sum of measured log ratios (the knobs add up nearly independently)."""
    best = sorted(near.items(), key=lambda item: item[1][0])[:MAX_COMBINED]
    subsets = [s for size in range(2, len(best) + 1) for s in itertools.combinations(best, size)]
    subsets.sort(key=lambda s: sum(ratio for _, (ratio, _) in s))
    for subset in subsets:
        config = complete(space, {**centre, **{dim: value for dim, (_, value) in subset}})
        if config_key(config) not in done and not _fails_guard(config, rejected, neutral):
            return config
    return None


def make_sampler(
    strategy: str,
    seed: int | None,
    trials: int | None = None,
    warm_start_size: int = 0,
) -> "optuna.samplers.BaseSampler":
    import optuna

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == Strategy.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # group= and multivariate= are "experimental" in Optuna; they are what a
        # conditional space needs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if strategy == Strategy.TPE:
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, (trials or 30) // 3)))
        return optuna.samplers.TPESampler(
            seed=seed,
            group=True,
            multivariate=True,
            n_startup_trials=max(_STRUCTURED_MIN_STARTUP, warm_start_size),
        )
